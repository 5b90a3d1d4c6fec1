#pragma once
// The interaction JSON of SPEC section 5, built once when an interaction is stored and kept in
// interactions.payload; the Redis `payload` field and the API answers are that text.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/fwd.hpp>

#include "core/interaction.hpp"

namespace sb::storage {

struct StoredMeta {
  std::string id;
  std::string conversation_id;
  std::string customer_id;  // "" for withheld callers
  std::string customer_name;
  std::string customer_tier;
  bool customer_is_new = false;
  std::int64_t received_at_ms = 0;
  std::string queue;
  std::string priority;
};

// The payload text (serialised JSON) of a new interaction.
// `flags`: the store's, after the channel's Inbound::flags ("reply_to_differs").
std::string interaction_json(const Inbound& in, const StoredMeta& m,
                             const std::vector<std::string>& flags = {});
// The "call" object as JSON text, as interaction_json writes it.
std::string call_text(const CallInfo& c);
// The "from" identity and the "customer" object (from m.customer_*) as interaction_json
// writes them.
std::string identity_text(const Identity& id);
std::string customer_text(const StoredMeta& m);
// Whether an identity (type, canonical value) is the channel's own: our support address, a
// mailbox we poll (Sender::own_identity).
using OwnIdentity = std::function<bool(std::string_view type, std::string_view value)>;
// Whom an answer to `parent` (an interaction as JSON) goes to: an inbound message's reply_to
// (email: RFC 5322 3.6.2, a web form's mail comes From a no-reply address), else its from; an
// outbound message's first `to` (a follow-up to our own reply). Identities that are `ours` are
// passed over: an answer mailed to our own address comes back in as a new message, a loop (a
// Reply-To naming our support address, mail we sent ourselves). nullptr when it names no one
// else. The reply route records it as the answer's `to`, and the email sender sends there.
const boost::json::object* reply_recipient(const boost::json::object& parent,
                                           const OwnIdentity& ours = nullptr);
// Appends `s` as a JSON string (quoted and escaped as RFC 8259 section 7 requires).
void append_json_string(std::string& out, std::string_view s);

}  // namespace sb::storage
