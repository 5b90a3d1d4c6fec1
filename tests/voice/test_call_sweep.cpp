// The 4-hour sweep closes each stale call on its own: one call it cannot close (its stored
// payload unreadable) is reported and skipped, the others are closed as `unknown` and queued.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "call_store.hpp"

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
