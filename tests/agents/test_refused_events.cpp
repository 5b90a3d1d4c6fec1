// Claims, acks and releases are recorded fire-and-forget (Records::event): Redis holds the queue
// state, the database the record. A batch of them the database refuses (a full disk, an I/O
// error) is kept and written again until it commits, in order: before, it was logged and lost,
// and an acked item stayed `claimed` in the database for good.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "core/sender.hpp"
#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;

namespace {
struct RecordingSender : Sender {
  std::atomic<int> sent{0};
  void send(OutboundMessage m, Done done) override {
    ++sent;
    done(SendResult::sent("p-" + m.id));
  }
};

// The types of `id`'s events in the order they were inserted, space-separated.
std::string inserted_events(AgentDaemon& d, const std::string& id) {
  storage::Db db(d.dir.file("switchboard.db"), true);
  auto st = db.prepare(
      "SELECT coalesce(group_concat(type || ':' || actor, ' '), '') FROM (SELECT type, actor "
      "FROM events WHERE interaction_id=?1 ORDER BY seq)");
  st.bind(1, id);
  st.step();
  return st.text(0);
}

void refuse_event_inserts(AgentDaemon& d, bool on) {
  storage::Db db(d.dir.file("switchboard.db"));
  db.exec(on ? "CREATE TRIGGER full_disk BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, "
               "'disk full'); END"
             : "DROP TRIGGER full_disk");
}
}  // namespace

TEST_CASE("a claim, ack and release the database refuses are written again once it takes them") {
  LogCapture log("agents");
  {
    auto sender = std::make_shared<RecordingSender>();
    AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", sender); });
    std::string done = d.ingest("refused-1", "acked while the disk is full");
    std::string back = d.ingest("refused-2", "released while the disk is full");
    d.drained();
    refuse_event_inserts(d, true);
    CHECK(claimed_id(d.claim("alice-token", "general")) == done);
    CHECK(claimed_id(d.claim("alice-token", "general")) == back);
    CHECK(d.act("alice-token", done, "ack").status == 200);
    // Retried meanwhile (the first retry after 100 ms, then 200, 400, ...), refused each time.
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
    CHECK(d.rows("SELECT count(*) FROM events") == 0);
    CHECK(d.rows("SELECT count(*) FROM interactions WHERE state='queued'") == 2);
    // A reply must not be recorded ahead of the claim it follows: refused as on the full disk.
    auto reply = d.act("alice-token", back, "reply", R"({"text":"on its way"})");
    CHECK(reply.status == 503);
    CHECK(d.rows("SELECT count(*) FROM interactions WHERE direction='outbound'") == 0);
    CHECK(sender->sent == 0);
    CHECK(d.act("alice-token", back, "release").status == 200);

    refuse_event_inserts(d, false);  // the disk has room again
    REQUIRE(eventually([&] { return inserted_events(d, done) == "claim:alice finish:alice"; }));
    CHECK(inserted_events(d, back) == "claim:alice release:alice");
    CHECK(d.rows("SELECT count(*) FROM interactions WHERE id='" + done + "' AND state='done'") ==
          1);
    CHECK(d.rows("SELECT count(*) FROM interactions WHERE id='" + back + "' AND state='queued'") ==
          1);
    // Once each, and the agent's day goes on: what comes next is recorded behind them.
    CHECK(d.rows("SELECT count(*) FROM events") == 4);
    CHECK(claimed_id(d.claim("bob-token", "general")) == back);
    CHECK(d.act("bob-token", back, "reply", R"({"text":"on its way"})").status == 202);
    CHECK(d.act("bob-token", back, "ack").status == 200);
    REQUIRE(eventually([&] {
      return inserted_events(d, back) == "claim:alice release:alice claim:bob reply:bob finish:bob";
    }));
    CHECK(d.rows("SELECT count(*) FROM events") == 7);
    REQUIRE(eventually([&] { return sender->sent == 1; }));
  }
  auto failed = log.lines_with("agent events (claims, acks, releases) failed");
  REQUIRE(failed.size() == 1);  // once, not once per retry
  CHECK(failed[0].rfind("error ", 0) == 0);
  CHECK(log.lines_with("agent events the database refused are recorded now").size() == 1);
}

TEST_CASE(
    "refused events: once the database takes them again replies are stored while agents go on "
    "claiming and releasing") {
  LogCapture log("agents");
  auto sender = std::make_shared<RecordingSender>();
  AgentDaemon d(
      [](config::Config& c) {
        c.agents.push_back({"carol", "carol-token", {"general"}});
      },
      [&](App& app) { app.senders().add("api", "web-form", sender); });
  std::string held = d.ingest("steady-0", "answered after the disk is freed");
  for (int i = 1; i <= 30; ++i) {
    d.ingest("steady-" + std::to_string(i), "passed between bob and carol");
  }
  d.drained();
  refuse_event_inserts(d, true);
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == held);
  // Bob and carol claim and release as fast as they can (each takes what the other released):
  // events are gathered during every round trip of the writer's retry.
  std::atomic<bool> stop{false};
  std::atomic<int> cycles{0};
  auto churn = [&](const std::string& token) {
    HttpClient c(d.app->port());
    while (!stop) {
      auto r = d.claim(token, "general", 0, &c);
      if (r.status == 200) {
        d.act(token, claimed_id(r), "release", "{}", &c);
        ++cycles;
      }
    }
  };
  std::thread bob(churn, "bob-token"), carol(churn, "carol-token");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  refuse_event_inserts(d, false);
  REQUIRE(eventually([&] {
    return !log.lines_with("agent events the database refused are recorded now").empty();
  }));
  int at_recovery = cycles;
  int status = 0;
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (std::chrono::steady_clock::now() < until) {
    status = d.act("alice-token", held, "reply", R"({"text":"on its way"})").status;
    if (status == 202) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Bob and carol were at work all along: the events kept coming.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  bool churning = cycles > at_recovery;
  stop = true;
  bob.join();
  carol.join();
  CHECK(churning);
  CHECK(status == 202);
  REQUIRE(eventually([&] { return sender->sent == 1; }));
}
