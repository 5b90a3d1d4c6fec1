// The call-state fold: what the storage writer does with each event of a call.
#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "channels/voice/call_state.hpp"

using namespace sb::voice;
using sb::CallInfo;

namespace {

CallInfo info(std::string status, std::int64_t duration = -1, std::string recording = "",
              std::string direction = "inbound") {
  CallInfo c;
  c.status = std::move(status);
  c.duration_s = duration;
  c.recording_url = std::move(recording);
  c.direction = std::move(direction);
  return c;
}

struct Event {
  CallInfo call;
  std::int64_t order_key;
};

struct Outcome {
  std::optional<StoredCall> stored;
  int writes = 0;
  int queued = 0;  // how many times the call became final
};

Outcome apply(const std::vector<Event>& events) {
  Outcome o;
  for (const auto& e : events) {
    FoldResult r = fold_call(o.stored, e.call, e.order_key);
    if (r.changed) {
      ++o.writes;
      o.stored = r.call;
    }
    if (r.became_final) {
      ++o.queued;
    }
  }
  return o;
}

}  // namespace

TEST_CASE("is_final and ranks") {
  for (auto s : {"completed", "busy", "no-answer", "failed", "canceled", "voicemail", "unknown"}) {
    CAPTURE(s);
    CHECK(is_final(s));
  }
  for (auto s : {"queued", "initiated", "ringing", "in-progress", "", "bogus"}) {
    CAPTURE(s);
    CHECK_FALSE(is_final(s));
  }
  CHECK(status_rank("queued") < status_rank("initiated"));
  CHECK(status_rank("initiated") < status_rank("ringing"));
  CHECK(status_rank("ringing") < status_rank("in-progress"));
  CHECK(status_rank("in-progress") < status_rank("completed"));
  CHECK(status_rank("") == -1);
}

TEST_CASE("fold: in order") {
  auto r = fold_call(std::nullopt, info("ringing"), 1);
  CHECK(r.changed);
  CHECK_FALSE(r.became_final);
  CHECK(r.call.info.status == "ringing");
  CHECK(r.call.order_key == 1);
  r = fold_call(r.call, info("in-progress"), 2);
  CHECK(r.changed);
  CHECK_FALSE(r.became_final);
  r = fold_call(r.call, info("completed", 42), 3);
  CHECK(r.changed);
  CHECK(r.became_final);
  CHECK(r.call.info.status == "completed");
  CHECK(r.call.info.duration_s == 42);
  CHECK(r.call.order_key == 3);
}

TEST_CASE("fold: reverse order, each twice: one call, completed, right duration, queued once") {
  Event ringing{info("ringing", 0), 1}, answered{info("in-progress"), 2},
      completed{info("completed", 42), 3};
  Outcome o = apply({completed, completed, answered, answered, ringing, ringing});
  REQUIRE(o.stored);
  CHECK(o.stored->info.status == "completed");
  CHECK(o.stored->info.duration_s == 42);
  CHECK(o.queued == 1);
  CHECK(o.writes == 1);  // the late and duplicate events changed nothing
}

TEST_CASE("fold: every delivery order of ringing, answered, completed twice each") {
  std::vector<int> order = {0, 0, 1, 1, 2, 2};
  std::vector<Event> events = {{info("ringing", 0), 1},
                               {info("in-progress"), 2},
                               {info("completed", 42, "https://rec/1"), 3}};
  int permutations = 0;
  do {
    std::vector<Event> seq;
    for (int i : order) {
      seq.push_back(events[static_cast<std::size_t>(i)]);
    }
    Outcome o = apply(seq);
    REQUIRE(o.stored);
    CHECK(o.stored->info.status == "completed");
    CHECK(o.stored->info.duration_s == 42);
    CHECK(o.stored->info.recording_url == "https://rec/1");
    CHECK(o.stored->order_key == 3);
    CHECK(o.queued == 1);
    ++permutations;
  } while (std::next_permutation(order.begin(), order.end()));
  CHECK(permutations == 90);
}

TEST_CASE("fold: a duplicate changes nothing") {
  auto first = fold_call(std::nullopt, info("completed", 42), 3);
  auto again = fold_call(first.call, info("completed", 42), 3);
  CHECK_FALSE(again.changed);
  CHECK_FALSE(again.became_final);
}

TEST_CASE("fold: a late state never goes back") {
  auto done = fold_call(std::nullopt, info("no-answer", 0), 5).call;
  for (auto s : {"queued", "initiated", "ringing", "in-progress"}) {
    CAPTURE(s);
    auto r = fold_call(done, info(s), 9);  // even with a higher order key
    CHECK_FALSE(r.changed);
    CHECK(r.call.info.status == "no-answer");
  }
}

TEST_CASE("fold: between two final states the higher order_key wins") {
  auto a = fold_call(std::nullopt, info("no-answer"), 5).call;
  auto r = fold_call(a, info("completed"), 7);
  CHECK(r.changed);
  CHECK_FALSE(r.became_final);  // already final: not queued again
  CHECK(r.call.info.status == "completed");
  CHECK(r.call.order_key == 7);

  auto b = fold_call(std::nullopt, info("completed"), 7).call;
  r = fold_call(b, info("no-answer"), 5);
  CHECK_FALSE(r.changed);
  CHECK(r.call.info.status == "completed");

  r = fold_call(b, info("busy"), 7);  // a tie keeps what is stored
  CHECK_FALSE(r.changed);
}

TEST_CASE("fold: `unknown` (closed after 4 hours) yields to a real final status") {
  auto closed = fold_call(fold_call(std::nullopt, info("ringing"), 1).call, info("unknown"), 1);
  CHECK(closed.became_final);
  auto r = fold_call(closed.call, info("completed", 30), 0);
  CHECK(r.changed);
  CHECK_FALSE(r.became_final);
  CHECK(r.call.info.status == "completed");
  auto done = fold_call(std::nullopt, info("busy"), 1).call;
  r = fold_call(done, info("unknown"), 99);
  CHECK_FALSE(r.changed);
  CHECK(r.call.info.status == "busy");
}

TEST_CASE("fold: fields fill in whenever they arrive") {
  SUBCASE("recording after hangup") {
    auto done = fold_call(std::nullopt, info("completed", 42), 3).call;
    auto r = fold_call(done, info("", -1, "https://rec/1", ""), 4);
    CHECK(r.changed);
    CHECK_FALSE(r.became_final);
    CHECK(r.call.info.status == "completed");
    CHECK(r.call.info.recording_url == "https://rec/1");
    CHECK(r.call.order_key == 3);  // the key of the event that set the status
    // The first recording stays.
    CHECK_FALSE(fold_call(r.call, info("", -1, "https://rec/2", ""), 5).changed);
  }
  SUBCASE("recording first: no status yet") {
    auto r = fold_call(std::nullopt, info("", -1, "https://rec/1", ""), 4);
    CHECK(r.changed);
    CHECK_FALSE(r.became_final);
    CHECK(r.call.info.status == "");
    r = fold_call(r.call, info("ringing"), 1);  // an earlier event, delivered later
    CHECK(r.call.info.status == "ringing");
    CHECK(r.call.info.recording_url == "https://rec/1");
  }
  SUBCASE("duration from an earlier event delivered later") {
    auto done = fold_call(std::nullopt, info("completed"), 3).call;
    auto r = fold_call(done, info("in-progress", 42), 2);
    CHECK(r.changed);
    CHECK(r.call.info.status == "completed");
    CHECK(r.call.info.duration_s == 42);
  }
  SUBCASE("direction from the first event that knows it") {
    auto hangup = fold_call(std::nullopt, info("completed", 10, "", ""), 3).call;
    auto r = fold_call(hangup, info("initiated", -1, "", "outbound"), 1);
    CHECK(r.changed);
    CHECK(r.call.info.direction == "outbound");
    CHECK(r.call.info.status == "completed");
  }
  SUBCASE("an unknown status word is not stored") {
    auto r = fold_call(std::nullopt, info("bogus"), 1);
    CHECK(r.call.info.status == "");
    CHECK_FALSE(r.became_final);
  }
}

namespace {

// What channels/voice/twilio.cpp hands over for an event of a <Dial> child leg.
CallInfo leg_event(std::string id, std::string leg_status, std::string call_status,
                   std::string answered_by = "", std::int64_t answered_at = 0,
                   std::int64_t duration = -1) {
  CallInfo c;
  c.status = std::move(call_status);
  c.answered_by = std::move(answered_by);
  c.answered_at_ms = answered_at;
  c.legs.push_back({std::move(id), "+14155550166", std::move(leg_status), duration});
  return c;
}

}  // namespace

TEST_CASE("fold: child legs are listed by id, their status only moves forward") {
  auto call = fold_call(std::nullopt, info("in-progress"), 0).call;
  auto r = fold_call(call, leg_event("CA-leg1", "completed", "", "+14155550166", 5000, 40), 0);
  CHECK(r.changed);
  CHECK_FALSE(r.became_final);
  CHECK(r.call.info.status == "in-progress");
  REQUIRE(r.call.info.legs.size() == 1);
  CHECK(r.call.info.legs[0].status == "completed");
  CHECK(r.call.info.legs[0].duration_s == 40);
  // The leg's ringing, delivered late, goes nowhere; the leg's in-progress gives the exact
  // answer time, earlier than the estimate.
  auto late = fold_call(r.call, leg_event("CA-leg1", "ringing", "ringing"), 0);
  CHECK_FALSE(late.changed);
  r = fold_call(r.call, leg_event("CA-leg1", "in-progress", "in-progress", "+14155550166", 4000),
                0);
  CHECK(r.changed);
  CHECK(r.call.info.legs[0].status == "completed");
  CHECK(r.call.info.answered_at_ms == 4000);
  // A second leg is added; its later answer does not replace the first.
  r = fold_call(r.call, leg_event("CA-leg2", "completed", "", "+14155550167", 9000, 10), 0);
  REQUIRE(r.call.info.legs.size() == 2);
  CHECK(r.call.info.answered_by == "+14155550166");
  CHECK(r.call.info.answered_at_ms == 4000);
  // The same leg event again changes nothing.
  CHECK_FALSE(fold_call(r.call, leg_event("CA-leg2", "completed", "", "+14155550167", 9000, 10), 0)
                  .changed);
  // The parent's own final event still ends the call, legs kept.
  auto end = fold_call(r.call, info("completed", 70), 3);
  CHECK(end.became_final);
  CHECK(end.call.info.legs.size() == 2);
}

// Telnyx reports answering machine detection in an event of its own, with no status: a completed
// call a machine answered is voicemail in every delivery order, and a person's answer stays
// completed.
TEST_CASE("fold: a completed call a machine answered is voicemail, in any order") {
  for (std::string result : {"machine", "human"}) {
    CAPTURE(result);
    CallInfo detection = info("", -1, "", "");
    detection.machine_detection = result;
    std::vector<int> order = {0, 1, 2, 3};
    std::vector<Event> events = {{info("initiated", -1, "", "outbound"), 1},
                                 {info("in-progress", -1, "", ""), 2},
                                 {detection, 3},
                                 {info("completed", 30, "", ""), 4}};
    do {
      std::vector<Event> seq;
      for (int i : order) {
        seq.push_back(events[static_cast<std::size_t>(i)]);
      }
      Outcome o = apply(seq);
      REQUIRE(o.stored);
      CHECK(o.stored->info.status == (result == "machine" ? "voicemail" : "completed"));
      CHECK(o.stored->info.machine_detection == result);
      CHECK(o.queued == 1);
    } while (std::next_permutation(order.begin(), order.end()));
  }
}

// Telnyx restarts premium detection when it hears an iOS call-screening tone, and a second
// call.machine.premium.detection.ended follows: the result reached later (its occurred_at) is the
// call's, whatever the delivery order, and the call is voicemail only when that one is a machine.
TEST_CASE("fold: the later machine-detection result wins, in any order") {
  struct Case {
    std::string first, second, status;
  };
  for (const Case& c : std::initializer_list<Case>{{"machine", "human_residence", "completed"},
                                                   {"human_residence", "machine", "voicemail"},
                                                   {"not_sure", "machine", "voicemail"}}) {
    CAPTURE(c.first);
    CAPTURE(c.second);
    CallInfo early = info("", -1, "", "");
    early.machine_detection = c.first;
    early.machine_detection_at_ms = 5000;
    CallInfo late = early;
    late.machine_detection = c.second;
    late.machine_detection_at_ms = 9000;
    std::vector<int> order = {0, 1, 2, 3};
    std::vector<Event> events = {{info("in-progress", -1, "", "outbound"), 1000},
                                 {early, 5000},
                                 {late, 9000},
                                 {info("completed", 30, "", ""), 20000}};
    do {
      std::vector<Event> seq;
      for (int i : order) {
        seq.push_back(events[static_cast<std::size_t>(i)]);
      }
      Outcome o = apply(seq);
      REQUIRE(o.stored);
      CHECK(o.stored->info.machine_detection == c.second);
      CHECK(o.stored->info.machine_detection_at_ms == 9000);
      CHECK(o.stored->info.status == c.status);
      CHECK(o.queued == 1);
    } while (std::next_permutation(order.begin(), order.end()));
  }
  // A result without a time (Twilio's AMD callback has none) only fills an empty slot; the same
  // result delivered again changes nothing.
  CallInfo timed = info("", -1, "", "");
  timed.machine_detection = "human";
  timed.machine_detection_at_ms = 5000;
  CallInfo untimed = info("", -1, "", "");
  untimed.machine_detection = "machine_start";
  auto r = fold_call(StoredCall{info("completed", 30), 4}, timed, 0);
  CHECK_FALSE(fold_call(r.call, untimed, 0).changed);
  CHECK_FALSE(fold_call(r.call, timed, 0).changed);
  r = fold_call(StoredCall{info("completed", 30), 4}, untimed, 0);
  CHECK(r.call.info.status == "voicemail");  // Twilio's machine_* words are machines too
  CHECK(r.call.info.machine_detection == "machine_start");
}

// Twilio <Dial>: the caller's own call ends completed whether or not anyone it dialled answered.
// An inbound call whose legs (a ring group of two here) none answered is no-answer, and an answer
// makes it completed, whatever the order of the call's and the legs' events; a call that dialled
// nobody stays completed, and an outbound one is left as its provider says.
TEST_CASE("fold: an inbound call none of whose legs answered is no-answer, in any order") {
  struct Case {
    std::string leg1, leg2, status;
  };
  for (const Case& c : std::initializer_list<Case>{{"no-answer", "canceled", "no-answer"},
                                                   {"busy", "failed", "no-answer"},
                                                   {"ringing", "no-answer", "no-answer"},
                                                   {"canceled", "completed", "completed"},
                                                   {"in-progress", "canceled", "completed"}}) {
    CAPTURE(c.leg1);
    CAPTURE(c.leg2);
    std::vector<int> order = {0, 1, 2, 3};
    CallInfo leg2 = leg_event("CA-leg2", c.leg2, "");
    leg2.legs[0].to = "+14155550167";
    std::vector<Event> events = {{info("in-progress"), 1},
                                 {leg_event("CA-leg1", c.leg1, ""), 0},
                                 {leg2, 0},
                                 {info("completed", 45), 2}};
    do {
      std::vector<Event> seq;
      for (int i : order) {
        seq.push_back(events[static_cast<std::size_t>(i)]);
      }
      Outcome o = apply(seq);
      REQUIRE(o.stored);
      CHECK(o.stored->info.status == c.status);
      CHECK(o.stored->info.legs.size() == 2);
      CHECK(o.queued == 1);
      CHECK(missed_by_legs(o.stored->info) == (c.status == "no-answer"));
    } while (std::next_permutation(order.begin(), order.end()));
  }
  // No legs: as the provider says.
  auto ivr = fold_call(std::nullopt, info("completed", 20), 2);
  CHECK(ivr.call.info.status == "completed");
  CHECK_FALSE(missed_by_legs(ivr.call.info));
  // The legs of an outbound call do not make it missed: its customer answered it.
  auto out = fold_call(std::nullopt, info("completed", 20, "", "outbound"), 2);
  out = fold_call(out.call, leg_event("CA-leg1", "no-answer", ""), 0);
  CHECK(out.call.info.status == "completed");
  // The provider's own no-answer of a call without legs is not held for any.
  CHECK_FALSE(missed_by_legs(fold_call(std::nullopt, info("no-answer"), 2).call.info));
}
