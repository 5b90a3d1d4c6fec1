#pragma once
// The generic PBX webhook of SPEC section 3 (POST /webhooks/calls/{name}): our own signed JSON
// format, for any telephony system that can run a script or an HTTP hook on call events.
//
//   {"event":"ringing|answered|completed|missed|voicemail", "call_id":"...", "from":"...",
//    "to":"...", "direction":"inbound|outbound", "occurred_at":"RFC 3339", "duration_s":0,
//    "recording_url":"..."}
//   X-Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
//
// `event` and `call_id` are required; the rest optional. Without `direction` the call's
// direction is unknown until an event states it (the store decides the customer then, see
// storage/call_parties.hpp; a call that never says is taken for inbound).
// event -> status: ringing -> ringing, answered -> in-progress, completed -> completed,
// missed -> no-answer, voicemail -> voicemail. order_key: occurred_at in ms, else 0 (no order:
// the signature's t is renewed by a retry, so between two final statuses the first stays).
#include <optional>
#include <string>
#include <string_view>

#include "channels/voice/webhook.hpp"

namespace sb::voice {

std::optional<std::string> pbx_status(std::string_view event);

}  // namespace sb::voice
