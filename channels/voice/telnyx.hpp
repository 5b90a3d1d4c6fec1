#pragma once
// Telnyx Call Control webhooks (API v2 JSON: {"data":{"event_type","occurred_at","payload"}}),
// https://developers.telnyx.com/api-reference/callbacks/call-hangup and siblings.
//
// Mapping onto the call event:
//  - external_id: payload.call_leg_id ("unique to the call and can be used to correlate webhook
//    events"), else call_control_id. call_leg_id is in every call event, call.recording.saved
//    included, which carries no call_control_id in the Telnyx schema; call_session_id is shared
//    by all legs of a session (an inbound leg and the leg it was transferred to), so it would
//    fold two calls with their own states into one.
//  - call.initiated -> initiated; call.answered -> in-progress; call.hangup -> by hangup_cause
//    (see telnyx_hangup_status); call.recording.saved -> no status change, recording_url (the
//    permanent public_recording_urls when enabled, else recording_urls, which expire after 10
//    minutes; mp3 before wav) and recording_id (to fetch fresh URLs: GET /v2/recordings/{id});
//    call.machine.detection.ended and
//    call.machine.premium.detection.ended -> no status change, machine_detection = payload.result
//    (human, machine, not_sure; premium: human_residence, human_business, machine, silence,
//    fax_detected, not_sure): "machine" makes the call `voicemail` once it completes, like
//    Twilio's AnsweredBy=machine_* (channels/voice/call_state.hpp). Every other event type
//    (call.machine.greeting.ended included: it follows a "machine" result) is verified and
//    answered 200 but stores nothing.
//  - direction: payload.direction incoming -> inbound, outgoing -> outbound. Only call.initiated
//    carries it (the API reference's call.answered and call.hangup payloads and the SDK models
//    have from/to but no direction), and it may arrive last or never: the other events go to
//    the store with an unknown direction and from/to as sent, and the store decides which party
//    is the customer (storage/call_parties.hpp), never taking our own number for the caller of
//    an outbound call it can tell.
//  - order_key and occurred_at: data.occurred_at (RFC 3339), in ms.
//  - duration_s on call.hangup of an answered call (normal_clearing, time_limit): end_time (or
//    occurred_at) minus payload.start_time; Telnyx sends no answer time, so this includes the
//    ringing time. 0 for calls that ended unanswered.
#include <string>
#include <string_view>

#include "channels/voice/webhook.hpp"

namespace sb::voice {

// hangup_cause (call_rejected, normal_clearing, originator_cancel, timeout, time_limit,
// user_busy, not_found, no_answer, unspecified) -> call status:
//   normal_clearing, time_limit -> completed   user_busy -> busy
//   timeout, no_answer -> no-answer            originator_cancel -> canceled
//   call_rejected -> busy (the callee declined, SIP 603: to the caller it is a busy line)
//   not_found -> failed                        unspecified and anything new -> unknown
std::string telnyx_hangup_status(std::string_view hangup_cause);

}  // namespace sb::voice
