#pragma once
// One call, one interaction: the fold the storage writer applies when a call event arrives
// for a call it already stores (SPEC section 3: "events may arrive twice and out of order").
//
// Rules, each chosen so that the result does not depend on delivery order where possible:
//  - Status only moves forward: queued < initiated < ringing < in-progress < final states
//    (completed, busy, no-answer, failed, canceled, voicemail, unknown). A late `ringing`
//    after `completed` changes nothing.
//  - Between two final states the one with the higher order_key wins (ties keep the stored
//    one). `unknown` is our own placeholder for calls closed after 4 hours without a final
//    event, so any provider final status replaces it, and it never replaces one.
//  - An event with an empty status ("no status change", e.g. Telnyx call.recording.saved)
//    only contributes its other fields.
//  - duration_s is the largest value seen (a call's duration only grows, and a ringing event
//    may carry 0), so it fills in whenever it arrives, from any event, in any order.
//  - recording_url, recording_id and direction fill in when still empty; the first one stored
//    stays.
//  - machine_detection: the result with the later machine_detection_at_ms wins (Telnyx sends a
//    second premium result after an iOS call screening); one without a time only fills an empty
//    slot.
//  - A call that completed with machine_detection "machine" or "machine_*" (answered by a
//    machine: the detection and the hangup are separate Telnyx events, and Twilio's asynchronous
//    AMD callback is separate from its status callbacks, in either order) is `voicemail`; a later
//    result that is not a machine makes it `completed` again. When the detection arrives after
//    the hangup the call was already queued as `completed`: the stored call is corrected (and a
//    claim answers it so, agents/claim_route.cpp), its queue entry and route are not.
//  - Child legs (Twilio <Dial>, channels/voice/twilio.hpp) are listed in `legs` by id, each
//    with its own status (forward only), duration and `to`; `answered_by`/`answered_at_ms` come
//    from the leg answered first. A leg never gives the call a final status: the channel passes
//    a leg's status on to the call only while it is not final.
//  - An inbound call that ended `completed` with legs listed, none of them answered (in-progress
//    or completed), is `no-answer`: nobody it dialled took it (the caller's own call ends
//    completed either way). A leg answered later makes it `completed` again. A call without legs
//    stays as its provider says.
//  - The same event delivered twice changes nothing.
#include <cstdint>
#include <optional>
#include <string_view>

#include "core/interaction.hpp"

namespace sb::voice {

bool is_final(std::string_view status);
// 0 queued, 1 initiated, 2 ringing, 3 in-progress, 4 final; -1 for "" and unknown words.
int status_rank(std::string_view status);

struct StoredCall {
  CallInfo info;
  std::int64_t order_key = 0;  // order key of the event that set info.status
};

struct FoldResult {
  StoredCall call;            // what to store now
  bool changed = false;       // differs from what was stored (write it)
  bool became_final = false;  // status is final now and was not before: queue the call now
};

// `stored` is nullopt for the first event of a call.
// An inbound call that is `no-answer` because no leg it dialled answered (fold rule above), as far
// as the legs known tell: a leg's answer may still come (Twilio posts the parent's and each leg's
// callbacks separately), so such a call is held back a short while before it is queued
// (Store::apply_call_event, CallEventInput::legs_follow).
bool missed_by_legs(const CallInfo& info);

FoldResult fold_call(const std::optional<StoredCall>& stored, const CallInfo& event,
                     std::int64_t order_key);

}  // namespace sb::voice
