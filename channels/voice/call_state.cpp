#include "channels/voice/call_state.hpp"

#include <algorithm>
#include <array>

namespace sb::voice {

namespace {

bool same_legs(const std::vector<CallLeg>& a, const std::vector<CallLeg>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const auto& x, const auto& y) {
    return x.id == y.id && x.to == y.to && x.status == y.status && x.duration_s == y.duration_s;
  });
}

bool same(const CallInfo& a, const CallInfo& b) {
  return a.status == b.status && a.direction == b.direction && a.duration_s == b.duration_s &&
         a.recording_url == b.recording_url && a.recording_id == b.recording_id &&
         a.answered_by == b.answered_by && a.answered_at_ms == b.answered_at_ms &&
         same_legs(a.legs, b.legs) && a.machine_detection == b.machine_detection &&
         a.machine_detection_at_ms == b.machine_detection_at_ms;
}

// Telnyx says "machine"; Twilio's AnsweredBy says machine_start, or machine_end_beep / _silence /
// _other once the greeting ended. (A fax that answered is not a voicemail.)
bool is_machine(std::string_view result) {
  return result == "machine" || result.starts_with("machine_");
}

// A completed call that a machine answered went to voicemail. The detection comes in an event of
// its own (Telnyx's call.machine.detection.ended, Twilio's AsyncAmdStatusCallback), before or
// after the hangup, or with the call's own status (Twilio's synchronous AMD): whichever comes
// second makes the call `voicemail`.
void voicemail_if_machine(CallInfo& info) {
  if (info.status == "completed" && is_machine(info.machine_detection)) {
    info.status = "voicemail";
  }
}

// A later detection result replaces an earlier one: Telnyx restarts premium detection when it
// hears an iOS call-screening tone, and the result after the screening is the call's. Results
// without a time only fill an empty slot; of two with the same time the first stays. A call made
// `voicemail` by a machine result that a later one overrules was completed after all.
void merge_machine_detection(CallInfo& info, const CallInfo& event) {
  if (event.machine_detection.empty()) {
    return;
  }
  bool later = event.machine_detection_at_ms > info.machine_detection_at_ms;
  if (!info.machine_detection.empty() && !later) {
    return;
  }
  bool was_machine = is_machine(info.machine_detection);
  info.machine_detection = event.machine_detection;
  info.machine_detection_at_ms = event.machine_detection_at_ms;
  if (was_machine && !is_machine(info.machine_detection) && info.status == "voicemail") {
    info.status = "completed";
  }
}

// A child leg's event into the call's list of legs: matched by id; its status only moves
// forward (a leg has one final callback, so two final words do not compete: the first stays);
// duration and `to` fill in like the call's own.
void merge_leg(std::vector<CallLeg>& legs, const CallLeg& event) {
  auto it =
      std::find_if(legs.begin(), legs.end(), [&](const CallLeg& l) { return l.id == event.id; });
  if (it == legs.end()) {
    legs.push_back(event);
    if (status_rank(event.status) < 0) {
      legs.back().status.clear();
    }
    return;
  }
  if (status_rank(event.status) > status_rank(it->status)) {
    it->status = event.status;
  }
  it->duration_s = std::max(it->duration_s, event.duration_s);
  if (it->to.empty()) {
    it->to = event.to;
  }
}

// Who answered: the leg answered first (the earliest known answer time) wins, whatever the
// delivery order; an answer without a time only fills an empty slot.
void merge_answer(CallInfo& info, const CallInfo& event) {
  if (event.answered_by.empty()) {
    return;
  }
  bool earlier = event.answered_at_ms > 0 &&
                 (info.answered_at_ms == 0 || event.answered_at_ms < info.answered_at_ms);
  if (info.answered_by.empty() || earlier) {
    info.answered_by = event.answered_by;
    info.answered_at_ms = event.answered_at_ms;
  }
}

// A leg that was answered but whose number came later than its answer (the <Dial> action
// callback lists the leg without it; the leg's own status callback may bring it before or after)
// still names who answered, once both are known. No time is known that way.
void answer_from_legs(CallInfo& info) {
  if (!info.answered_by.empty()) {
    return;
  }
  for (const auto& leg : info.legs) {
    if ((leg.status == "in-progress" || leg.status == "completed") && !leg.to.empty()) {
      info.answered_by = leg.to;
      return;
    }
  }
}

bool leg_answered(const CallInfo& info) {
  return !info.answered_by.empty() ||
         std::any_of(info.legs.begin(), info.legs.end(), [](const CallLeg& leg) {
           return leg.status == "in-progress" || leg.status == "completed";
         });
}

// Twilio <Dial>: the caller's own call ends `completed` whether or not anyone it dialled
// answered (TwiML answered it), so a missed call would never reach a "missed calls" rule. An
// inbound call that dialled legs none of which answered is `no-answer`; an answered leg makes it
// `completed` again, whichever comes first. A call that dialled nobody (an IVR) stays completed.
// (Only a call that TwiML answered has legs, so its own status is never the provider's no-answer.)
void missed_if_no_leg_answered(CallInfo& info) {
  if (info.direction != "inbound" || info.legs.empty()) {
    return;
  }
  bool answered = leg_answered(info);
  if (info.status == "completed" && !answered) {
    info.status = "no-answer";
  } else if (info.status == "no-answer" && answered) {
    info.status = "completed";
  }
}

// Whether an incoming status replaces the stored one.
bool status_wins(const StoredCall& stored, std::string_view status, std::int64_t order_key) {
  int new_rank = status_rank(status);
  if (new_rank < 0) {
    return false;  // no status in this event, or a word we do not know
  }
  int old_rank = status_rank(stored.info.status);
  if (new_rank != old_rank) {
    return new_rank > old_rank;
  }
  if (status == stored.info.status) {
    return false;
  }
  if (new_rank == 4) {
    if (stored.info.status == "unknown") {
      return true;
    }
    if (status == "unknown") {
      return false;
    }
    return order_key > stored.order_key;
  }
  return false;  // two different non-final statuses cannot share a rank
}

}  // namespace

bool missed_by_legs(const CallInfo& info) {
  return info.direction == "inbound" && info.status == "no-answer" && !info.legs.empty() &&
         !leg_answered(info);
}

bool is_final(std::string_view status) {
  return status_rank(status) == 4;
}

int status_rank(std::string_view status) {
  static constexpr std::array<std::string_view, 7> kFinal = {
      "completed", "busy", "no-answer", "failed", "canceled", "voicemail", "unknown"};
  if (status == "queued") {
    return 0;
  }
  if (status == "initiated") {
    return 1;
  }
  if (status == "ringing") {
    return 2;
  }
  if (status == "in-progress") {
    return 3;
  }
  if (std::find(kFinal.begin(), kFinal.end(), status) != kFinal.end()) {
    return 4;
  }
  return -1;
}

FoldResult fold_call(const std::optional<StoredCall>& stored, const CallInfo& event,
                     std::int64_t order_key) {
  FoldResult r;
  if (!stored) {
    r.call.info = event;
    if (status_rank(event.status) < 0) {
      r.call.info.status.clear();  // unknown words are not stored as a status
    }
    answer_from_legs(r.call.info);
    voicemail_if_machine(r.call.info);
    missed_if_no_leg_answered(r.call.info);
    r.call.order_key = order_key;
    r.changed = true;
    r.became_final = is_final(r.call.info.status);
    return r;
  }
  r.call = *stored;
  CallInfo& info = r.call.info;
  if (status_wins(*stored, event.status, order_key)) {
    info.status = event.status;
    r.call.order_key = order_key;
  }
  info.duration_s = std::max(info.duration_s, event.duration_s);
  if (info.recording_url.empty()) {
    info.recording_url = event.recording_url;
  }
  if (info.recording_id.empty()) {
    info.recording_id = event.recording_id;
  }
  if (info.direction.empty()) {
    info.direction = event.direction;
  }
  merge_machine_detection(info, event);
  voicemail_if_machine(info);
  for (const auto& leg : event.legs) {
    merge_leg(info.legs, leg);
  }
  merge_answer(info, event);
  answer_from_legs(info);
  missed_if_no_leg_answered(info);
  r.changed = !same(info, stored->info) || r.call.order_key != stored->order_key;
  r.became_final = is_final(info.status) && !is_final(stored->info.status);
  return r;
}

}  // namespace sb::voice
