// The 4-hour sweep closes each stale call on its own: one call it cannot close (its stored
// payload unreadable) is reported and skipped, the others are closed as `unknown` and queued.
// The release of held calls (ended, direction unknown) reads those calls only.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "call_store.hpp"
#include "core/time.hpp"
#include "storage/schema.hpp"

using namespace sb;
using sb::voice::test::CallStore;

TEST_CASE("call sweep: one unreadable call does not keep the others open") {
  CallStore s;
  s.start();
  for (const char* id : {"CA-1", "CA-2", "CA-bad", "CA-3"}) {
    REQUIRE(s.event(id, "ringing", 1, "+14155550100").error.empty());
  }
  s.exec("UPDATE interactions SET payload = '{\"call\": [' WHERE external_id = 'CA-bad'");
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // all older than "now - 0"
  auto report = s.sweep_report(0);
  CHECK(report.error.empty());
  CHECK(report.closed == 3);
  REQUIRE(report.failed.size() == 1);  // reported with its account, call id and why
  CHECK(report.failed[0].rfind("voice CA-bad: ", 0) == 0);
  CHECK(report.failed[0].find("no readable \"call\"") != std::string::npos);
  CHECK(s.text("SELECT count(*) FROM outbox") == "3");
  CHECK(s.text("SELECT count(*) FROM interactions WHERE state = 'queued' AND "
               "json_extract(payload, '$.call.status') = 'unknown'") == "3");
  CHECK(s.text("SELECT state FROM interactions WHERE external_id = 'CA-bad'") == "pending_call");
  // The next sweep closes nothing twice, queues nothing twice, and leaves the bad call alone
  // for an hour instead of failing on it every minute.
  report = s.sweep_report(0);
  CHECK(report.closed == 0);
  CHECK(report.failed.empty());
  CHECK(s.text("SELECT count(*) FROM outbox") == "3");
  // A call that goes stale later is closed; the bad one still does not hold it back.
  REQUIRE(s.event("CA-4", "ringing", 1, "+14155550100").error.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK(s.sweep(0) == 1);
  CHECK(s.text("SELECT state FROM interactions WHERE external_id = 'CA-4'") == "queued");
}

namespace call_sweep_test {

namespace {

// A Telnyx-like call.hangup that does not say the direction, on an account with no lines known:
// held back until something tells, or until the release takes it for inbound.
CallEventInput undirected_hangup(const std::string& call_id) {
  CallEventInput ev;
  ev.call.channel = "voice";
  ev.call.account = "voice";
  ev.call.kind = "call";
  ev.call.external_id = call_id;
  ev.call.from = Identity{"phone", "+14155550100", "", ""};
  ev.call.to.push_back(Identity{"phone", "+13125550100", "", ""});
  ev.call.call = CallInfo{"completed", "", 30, ""};
  ev.order_key = 2;
  ev.direction_follows = true;
  return ev;
}

}  // namespace

// The release runs every 10 s on the writer. Calls still waiting for a final event stay pending
// for up to 4 hours, so there may be very many; the release reads the held ones only, not a
// payload of each pending call.
TEST_CASE("held calls: the release reads the held calls, not every pending one") {
  CallStore s;
  s.start();
  for (int i = 0; i < 300; ++i) {
    REQUIRE(s.event("CA-" + std::to_string(i), "ringing", 1, "+14155550101").error.empty());
  }
  REQUIRE(s.submit(undirected_hangup("held-1")).error.empty());
  CHECK(s.text("SELECT count(*) FROM outbox") == "0");
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // all older than "now - 0"
  auto r = s.release_report(0);
  CHECK(r.released == 1);
  CHECK(r.read == 1);
  CHECK(s.text("SELECT state FROM interactions WHERE external_id = 'held-1'") == "queued");
  CHECK(s.text("SELECT count(*) FROM interactions WHERE held = 1") == "0");
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
  r = s.release_report(0);
  CHECK(r.released == 0);
  CHECK(r.read == 0);
  // The pending calls are still the 4-hour sweep's.
  CHECK(s.sweep(0) == 300);
}

// The release runs every 10 s: a held call that cannot be queued (here a trigger refuses its
// update) is logged and left for a minute (doubling to an hour), not tried and logged at every
// release. The release takes the oldest first, at most 1,000: failing ones must not keep a later
// call held for good.
TEST_CASE("held calls: ones that cannot be queued wait, and do not hold back later ones") {
  CallStore s;
  s.start();
  constexpr int kBad = 1000;  // kMaxPerSweep
  std::atomic<int> left{kBad};
  std::atomic<int> failed{0};
  std::promise<void> all;
  for (int i = 0; i < kBad; ++i) {
    s.store->submit_call_event(undirected_hangup("bad-" + std::to_string(i)),
                               [&](std::vector<IngestOutcome> out) {
                                 if (out.size() != 1 || !out[0].error.empty()) {
                                   ++failed;
                                 }
                                 if (--left == 0) {
                                   all.set_value();
                                 }
                               });
  }
  all.get_future().wait();
  REQUIRE(failed == 0);
  s.exec(
      "CREATE TRIGGER refuse_bad BEFORE UPDATE ON interactions WHEN OLD.external_id LIKE 'bad-%' "
      "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(s.submit(undirected_hangup("held-late")).error.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // all older than "now - 0"
  auto r = s.release_report(0);
  CHECK(r.released == 0);  // the first 1,000 read are the failing ones
  CHECK(r.read == kBad);
  CHECK(s.text("SELECT state FROM interactions WHERE external_id = 'held-late'") == "pending_call");
  // The next release passes over the failing ones without reading them, and queues the later one.
  r = s.release_report(0);
  CHECK(r.released == 1);
  CHECK(r.read == 1);
  CHECK(s.text("SELECT state FROM interactions WHERE external_id = 'held-late'") == "queued");
  CHECK(s.text("SELECT count(*) FROM interactions WHERE held = 1") == std::to_string(kBad));
}

// The wait of a held call that cannot be queued, step by step on a clock of the test's: a
// minute, then twice as long after each failure, up to an hour; not tried a second before its
// wait is over, tried at it; once queued, no wait is kept for it.
TEST_CASE("held calls: the wait after a failure doubles from a minute to an hour") {
  CallStore s;
  std::atomic<std::int64_t> clock{now_ms() + 1000};  // past the call's received_at
  s.store->set_clock([&clock] { return clock.load(); });
  s.start();
  REQUIRE(s.submit(undirected_hangup("flaky")).error.empty());
  s.exec(
      "CREATE TRIGGER refuse_flaky BEFORE UPDATE ON interactions WHEN OLD.external_id = 'flaky' "
      "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
  std::string id = s.text("SELECT id FROM interactions WHERE external_id = 'flaky'");
  auto r = s.release_report(0);
  REQUIRE(r.read == 1);
  REQUIRE(r.released == 0);
  constexpr std::int64_t kMinute = 60 * 1000;
  std::vector<std::int64_t> waits;
  for (std::int64_t wait : {1, 2, 4, 8, 16, 32, 60, 60}) {
    waits.push_back(s.store->release_wait_ms(id) / kMinute);
    clock += wait * kMinute - 1000;
    r = s.release_report(0);
    CHECK(r.read == 0);  // a second early: passed over
    clock += 1000;
    r = s.release_report(0);
    CHECK(r.read == 1);  // its wait is over: tried, and refused again
    CHECK(r.released == 0);
  }
  CHECK(waits == std::vector<std::int64_t>{1, 2, 4, 8, 16, 32, 60, 60});
  CHECK(s.text("SELECT state FROM interactions WHERE external_id = 'flaky'") == "pending_call");
  // Whatever refused it is gone: queued at the end of its wait, and its wait forgotten.
  s.exec("DROP TRIGGER refuse_flaky");
  clock += 60 * kMinute;
  r = s.release_report(0);
  CHECK(r.released == 1);
  CHECK(s.text("SELECT state FROM interactions WHERE external_id = 'flaky'") == "queued");
  CHECK(s.store->release_wait_ms(id) == 0);
}

// A call held before the upgrade to schema 15 (pending, with a final status) is found by the
// release after it.
TEST_CASE("held calls: the upgrade marks the calls held before it") {
  sb::test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 14);
    auto row = [&](const std::string& id, const std::string& status) {
      auto st = db.prepare(
          "INSERT INTO interactions(id, channel, account, external_id, kind, direction, state, "
          "occurred_at, received_at, payload) VALUES (?1, 'voice', 'voice', ?1, 'call', "
          "'inbound', 'pending_call', 1, 1, ?2)");
      st.bind(1, id).bind(2, R"({"call":{"status":")" + status + R"("}})").run();
    };
    row("c-held", "completed");
    row("c-ringing", "ringing");
    row("c-new", "");
    storage::migrate(db);
  }
  storage::Db db(path, true);
  auto st = db.prepare("SELECT group_concat(id) FROM interactions WHERE held = 1");
  REQUIRE(st.step());
  CHECK(st.text(0) == "c-held");
}

// Twilio's and Telnyx's default call time limit is 4 hours, counted from the answer: a call that
// ran to the limit sends its `completed` seconds after 4 hours from its first event. The sweep
// counts from the last event, with 10 minutes to spare.
TEST_CASE("call sweep: counts from the last event, not the first") {
  CallStore s;
  s.start();
  constexpr std::int64_t kHourMs = 3600 * 1000;
  REQUIRE(s.event("CA-talking", "ringing", 1, "+14155550100").error.empty());
  REQUIRE(s.event("CA-silent", "ringing", 1, "+14155550101").error.empty());
  // Both began 4 h 5 min ago; the first was answered 4 h ago (its last event).
  s.exec(
      "UPDATE interactions SET received_at = received_at - 245 * 60000, "
      "last_event_at = last_event_at - 245 * 60000");
  REQUIRE(s.event("CA-talking", "in-progress", 2).error.empty());
  s.exec(
      "UPDATE interactions SET last_event_at = last_event_at - 4 * 3600000 "
      "WHERE external_id = 'CA-talking'");
  CHECK(s.sweep(storage::kStaleCallAfterMs) == 0);  // neither is 4 h 10 min past its last event
  CHECK(s.sweep(4 * kHourMs + 60 * 1000) == 1);     // the silent one is
  CHECK(s.text("SELECT state FROM interactions WHERE external_id = 'CA-silent'") == "queued");
  CHECK(s.text("SELECT state FROM interactions WHERE external_id = 'CA-talking'") ==
        "pending_call");
  // Its `completed` at the limit is the call's own.
  REQUIRE(s.event("CA-talking", "completed", 3).error.empty());
  CHECK(s.text("SELECT json_extract(payload, '$.call.status') FROM interactions WHERE "
               "external_id = 'CA-talking'") == "completed");
}

TEST_CASE("call sweep: the upgrade counts a pending call from its first event") {
  sb::test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 27);
    db.exec(
        "INSERT INTO interactions(id, channel, account, external_id, kind, direction, state, "
        "occurred_at, received_at, payload) VALUES ('c-1', 'voice', 'voice', 'c-1', 'call', "
        "'inbound', 'pending_call', 1, 1234, '{\"call\":{\"status\":\"ringing\"}}')");
    storage::migrate(db);
  }
  storage::Db db(path, true);
  auto st = db.prepare("SELECT last_event_at FROM interactions");
  REQUIRE(st.step());
  CHECK(st.int64(0) == 1234);
}

}  // namespace call_sweep_test
