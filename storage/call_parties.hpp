#pragma once
// Which party of a call is the customer. The customer is the remote party: `from` of an inbound
// call, `to` of an outbound one. Providers do not always say which a call is: Telnyx puts
// `direction` in call.initiated only (call.answered and call.hangup carry from/to but no
// direction), delivers out of order and may never deliver call.initiated; a PBX may leave it
// out. A channel hands such an event over with its parties as sent (Inbound::from = `from`,
// Inbound::to = {`to`}) and an empty CallInfo::direction; the store settles the direction here:
//  1. the call's own: stated by this event, or by an earlier one of the call (stored);
//  2. else this account's lines: a number that was our side of an earlier call with a stated
//     direction (table call_lines) is ours, so the other party is the customer. A customer's
//     number is never learned (a Telnyx transfer passes the caller's number on as the caller
//     ID of its outgoing leg), and an event that states the direction overrules one the lines
//     told (and the line that misled is forgotten);
//  3. else the customer records: `to` a known customer and `from` not: outbound; the reverse:
//     inbound (outbound calls usually go to customers we already know). Only customers named
//     firmly count: not one made by a call that rule 4 took for inbound (table
//     guessed_customers), whose `from` may have been our own line, unless something firm has
//     named it since: a call with a known direction (also a later event stating the direction
//     of the call that made it), any other interaction (a WhatsApp message, an ingest API post),
//     or the CRM (an external_id). Counted, our line made a customer by an outbound call took
//     every later caller's call for an outbound call to it;
//  4. else nothing. While the call is unfinished its caller waits (no customer record is made
//     for a number that may be our own); a call that ends this way is taken for inbound, the
//     common case for a support line; where a later event will state the direction (Telnyx's
//     call.initiated, CallEventInput::direction_follows) it is first held back from the queues
//     until an event tells, or until Store::release_held_calls (the daemon: 30 s after its
//     first event) takes it for inbound. A later event that states the direction still
//     corrects the stored call, but no longer its queue entry.
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/interaction.hpp"
#include "storage/sqlite.hpp"

namespace sb::storage {

// The parties of one event as the provider sent them (from, to), whatever the direction.
struct RawParties {
  std::optional<Identity> from, to;
};
RawParties raw_parties(const Inbound& in);
// The parties a stored call's payload names ("from", the first of "to"), as stored: for an event
// that names none (a PBX's `completed` with only call_id, a sweep's) of a call whose caller is
// not matched yet.
RawParties stored_parties(std::string_view payload);

// The customer and our line for a known direction ("inbound" or "outbound").
struct Parties {
  std::optional<Identity> customer, line;
};
Parties parties_for(const RawParties& raw, std::string_view direction);

struct Inferred {
  std::string direction;    // "inbound", "outbound" or "" (no evidence)
  bool from_lines = false;  // rule 2 (firm: stored with the call); else rule 3 or none
};

class CallLines {
 public:
  explicit CallLines(Db& db);
  // Rules 2 and 3 above; `is_customer` tells whether an identity belongs to a customer record
  // that rule 3 counts (the store's own lookup).
  Inferred infer_direction(const std::string& account, const RawParties& raw,
                           const std::function<bool(const Identity&)>& is_customer);
  // Remembers `line` as one of `account`'s numbers.
  void remember(const std::string& account, const Identity& line);
  // Forgets a number learned wrongly (the customer of a call that says so itself).
  void forget(const std::string& account, const Identity& line);
  bool is_line(const std::string& account, const Identity& id);

 private:
  Stmt find_line_, insert_line_, delete_line_;
};

}  // namespace sb::storage
