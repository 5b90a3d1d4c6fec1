#include "channels/voice/call_state.hpp"

#include <algorithm>
#include <array>

namespace sb::voice {

namespace {

bool same(const CallInfo& a, const CallInfo& b) {
  return a.status == b.status && a.direction == b.direction && a.duration_s == b.duration_s &&
         a.recording_url == b.recording_url;
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
  if (info.direction.empty()) {
    info.direction = event.direction;
  }
  r.changed = !same(info, stored->info) || r.call.order_key != stored->order_key;
  r.became_final = is_final(info.status) && !is_final(stored->info.status);
  return r;
}

}  // namespace sb::voice
