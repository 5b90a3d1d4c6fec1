#pragma once
// The one door into durable storage for every channel (SPEC "a 2xx means committed",
// DESIGN-NOTES invariants 1-3). A channel hands in normalised interactions; the writer thread
// stores them in one transaction together with the cursor update, then calls `done`.
//
//   raw payload -> channel parser -> Inbound -> Pipeline::submit -> [writer thread:
//   dedupe -> customer match -> conversation -> rules -> interaction row + outbox row + cursor]
//   -> COMMIT -> done(outcomes) -> relay -> Redis
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/interaction.hpp"

namespace sb {

struct IngestOutcome {
  std::string id;          // interaction id (the existing one for a duplicate)
  bool duplicate = false;  // (channel, account, external_id) was already stored
  std::string error;       // non-empty: this item was not stored (the rest of the batch was)
  bool created = false;    // a new interaction row was written (calls: the first event)
};

// A poller's position (IMAP last UID, Mastodon since_id, Telegram offset, ...), keyed by
// (account, scope); scope is channel-defined, e.g. "INBOX" or "mentions".
struct CursorUpdate {
  std::string account;
  std::string scope;
  std::string value;
};

// A provider's report on one of our outbound messages (WhatsApp `statuses[]`): matched to the
// send by (channel, account, provider_id), the id the provider gave when we sent it.
struct ProviderStatus {
  std::string channel;
  std::string account;
  std::string provider_id;
  std::string status;  // provider vocabulary: sent | delivered | read | failed
  std::string error;   // the provider's message, for failed
  std::int64_t at_ms = 0;
};

// A call event folds into one interaction per (channel, account, external_id = provider call id).
// See channels/voice.
struct CallEventInput {
  Inbound call;                // kind "call"; call->status is the event's status
  std::int64_t order_key = 0;  // provider sequence number or event time, to order events
  // An event of a child leg (Twilio <Dial>), folded into its parent's interaction: `call` has
  // external_id = the parent's call id, no parties, and in call->legs the one leg it is about;
  // it never names or changes the parent's customer, direction or lines, but for an outbound
  // call whose callee is not a customer (click-to-call: our agent first, then the customer as
  // the leg; Store::apply_call_event), whose customer is the leg's callee.
  bool child_leg = false;
  // The provider states the call's direction in another of its events (Telnyx: call.initiated
  // only), which may come later. Until one does, a call that ends with no other way to tell
  // its customer from our line is held back from the queues (Store::apply_call_event). False
  // where nothing later will tell (a PBX that leaves the direction out): taken for inbound.
  bool direction_follows = false;
  // The provider tells of the legs the call dialled in requests of their own, which may come
  // after the call's own final event (Twilio <Dial>: each leg's status callbacks, the <Dial
  // action> request). A call that ends `no-answer` because no leg known answered
  // (CallFold::awaits_legs) is held back from the queues until the next release of held calls
  // but one, so that the answer of a leg whose callback comes late still makes it completed.
  bool legs_follow = false;
};

class Pipeline {
 public:
  using Done = std::function<void(std::vector<IngestOutcome>)>;
  virtual ~Pipeline() = default;

  // Stores `items` (deduplicated) and applies `cursor`, all in one transaction. `done` runs on
  // the writer thread after COMMIT with one outcome per item, or after a failed transaction with
  // every outcome's error set and at least one outcome: a failed cursor-only commit (no items)
  // reports one, so a caller that looks for an error finds it. Keep it short: post to your own
  // executor.
  virtual void submit(std::vector<Inbound> items, std::optional<CursorUpdate> cursor,
                      Done done) = 0;

  // Folds a call event into its call's interaction (created on first event); queues the call
  // once, when its status becomes final. Same `done` contract, one outcome.
  virtual void submit_call_event(CallEventInput event, Done done) = 0;

  // Applies provider reports to the sends they name: `failed` makes the send failed with the
  // provider's message; every report is an event on the outbound interaction (its timeline shows
  // delivered / read). One outcome per report: id = the outbound interaction, or an error
  // "unknown message" when no send has that provider id.
  virtual void submit_provider_statuses(std::vector<ProviderStatus> statuses, Done done) = 0;

  // The committed cursor value, if any. Thread-safe; reads its own connection.
  virtual std::optional<std::string> cursor(const std::string& account,
                                            const std::string& scope) = 0;
  // When that cursor was last written (Unix ms; nullopt while there is none): the poller's last
  // commit. Everything it had read by then was stored. Thread-safe; reads its own connection.
  virtual std::optional<std::int64_t> cursor_written_at(const std::string& account,
                                                        const std::string& scope) = 0;

  // Of `ids`, those a reply stored here went (or goes) out with (the email Message-ID of
  // sends.planned_id): a copy of our own mail read back from a mailbox we poll (Sent Items,
  // Gmail's All Mail, a Bcc) is found by it. Thread-safe; reads its own connection; throws on
  // a database error.
  virtual std::vector<std::string> sent_here(const std::vector<std::string>& ids) = 0;
};

}  // namespace sb
