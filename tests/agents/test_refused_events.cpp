// Claims, acks and releases are recorded fire-and-forget (Records::event): Redis holds the queue
// state, the database the record. A batch of them the database refuses (a full disk, an I/O
// error) is kept and written again until it commits, in order: before, it was logged and lost,
// and an acked item stayed `claimed` in the database for good.
#include <doctest/doctest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <thread>

#include "agents/records.hpp"
#include "core/sender.hpp"
#include "storage/sqlite.hpp"
#include "storage/writer.hpp"
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

void refuse_event_inserts(const std::string& path, bool on) {
  storage::Db db(path);
  db.exec(on ? "CREATE TRIGGER full_disk BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, "
               "'disk full'); END"
             : "DROP TRIGGER full_disk");
}

void refuse_event_inserts(AgentDaemon& d, bool on) {
  refuse_event_inserts(d.dir.file("switchboard.db"), on);
}

// Records on its own (no daemon): a writer on a fresh database with one interaction, "IN", and
// the io_context run by the test itself, one handler at a time, so that what the writer reports
// is handled exactly when the test says.
struct RecordsOnly {
  TempDir dir;
  std::string path = dir.file("sb.db");
  storage::Writer writer{path};
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work =
      boost::asio::make_work_guard(io);
  std::optional<agents::Records> records;

  RecordsOnly() {
    writer.start();
    storage::Db db(path);
    db.exec(
        "INSERT INTO interactions(id, channel, account, external_id, kind, direction, state, "
        "occurred_at, received_at, payload) VALUES "
        "('IN', 'api', 'web', 'in-1', 'message', 'inbound', 'queued', 1, 1, '{}')");
    records.emplace(io, writer, path);
  }
  ~RecordsOnly() {
    work.reset();
    records->flush_now();
    writer.stop();
  }

  // Records::settled() run to its end on the test's thread: "" or why it failed.
  std::string settled() {
    std::optional<std::string> out;
    boost::asio::co_spawn(io, records->settled(),
                          [&](std::exception_ptr, std::string err) { out = std::move(err); });
    while (!out) {
      io.run_one();
    }
    return *out;
  }

  std::int64_t events() {
    storage::Db db(path, true);
    auto st = db.prepare("SELECT count(*) FROM events");
    st.step();
    return st.int64(0);
  }
};

// A writer job that holds the writer thread until released: the jobs submitted meanwhile wait
// for a later transaction (or for the end of this one).
struct WriterHold {
  std::shared_ptr<std::promise<void>> started = std::make_shared<std::promise<void>>();
  std::shared_ptr<std::promise<void>> released = std::make_shared<std::promise<void>>();
  std::shared_future<void> release_seen = released->get_future().share();

  explicit WriterHold(storage::Writer& w) {
    w.submit(storage::Job{[started = started, r = release_seen](storage::Db&) {
                            started->set_value();
                            r.wait();
                          },
                          {}});
  }
  WriterHold(const WriterHold&) = delete;
  ~WriterHold() {
    if (!is_released) {
      release();  // a check that failed on the way: the writer must still stop
    }
  }
  void wait_started() { started->get_future().wait(); }
  void release() {
    is_released = true;
    released->set_value();
  }
  bool is_released = false;
};
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

TEST_CASE(
    "refused events: a retry that commits ends the recovery although events came while it was "
    "out") {
  // At the daemon's rates the retry's round trip is shorter than the gap between two claims, so
  // the test above passes either way: here events come during the retry every time, for sure.
  RecordsOnly r;
  refuse_event_inserts(r.path, true);
  r.records->event("IN", "alice", "claim", "{}", "claimed");
  r.io.run_one();  // flush: the batch goes to the writer
  r.io.run_one();  // refused: held, a retry in 100 ms
  refuse_event_inserts(r.path, false);

  WriterHold first(r.writer);
  r.io.run_one();  // the retry goes, and waits behind the hold
  r.records->event("IN", "alice", "finish", "{}", "done");
  r.io.run_one();  // flush: held behind the retry that is out
  first.release();
  REQUIRE(eventually([&] { return r.events() == 1; }));  // the retry committed
  // What the writer is handed from now on waits for the test to read the records' answer.
  WriterHold second(r.writer);
  r.io.run_one();  // the retry's report
  // The database takes writes again: a reply or a transfer is not refused. (Before, the events
  // gathered meanwhile went as a retry again, the records stayed "recovering" until one came
  // back with none gathered behind it, and with claims and acks coming all the time, never.)
  std::optional<std::string> settled;
  boost::asio::co_spawn(r.io, r.records->settled(),
                        [&](std::exception_ptr, std::string err) { settled = std::move(err); });
  r.io.run_one();  // settled() asks
  second.release();
  while (!settled) {
    r.io.run_one();
  }
  CHECK(*settled == "");
  CHECK(r.events() == 2);
  CHECK(r.settled() == "");
}

TEST_CASE(
    "refused events: a batch refused with its transaction that commits in the writer's "
    "one-by-one pass lets replies through") {
  RecordsOnly r;
  {
    // Refused while refuse_now holds a row: a failure of the moment, as a full disk freed.
    storage::Db db(r.path);
    db.exec(
        "CREATE TABLE refuse_now(x); CREATE TRIGGER momentary BEFORE INSERT ON events WHEN "
        "EXISTS (SELECT 1 FROM refuse_now) BEGIN SELECT RAISE(ABORT, 'disk full'); END");
  }
  WriterHold hold(r.writer);
  hold.wait_started();
  // In the events batch's transaction, ahead of it: the refusal's cause on its first run only.
  // The writer rolls the whole transaction back and runs it again with a savepoint per job:
  // the events batch commits then.
  auto runs = std::make_shared<int>(0);
  r.writer.submit(storage::Job{[runs](storage::Db& db) {
                                 if ((*runs)++ == 0) {
                                   db.exec("INSERT INTO refuse_now VALUES (1)");
                                 }
                               },
                               {}});
  r.records->event("IN", "alice", "claim", "{}", "claimed");
  r.io.run_one();  // flush: the batch goes to the writer, behind that job
  std::uint64_t reruns = r.writer.reruns();
  hold.release();
  r.io.run_one();  // its report: committed
  REQUIRE(r.writer.reruns() == reruns + 1);
  REQUIRE(*runs == 2);
  CHECK(r.events() == 1);
  // Nothing waits: a reply is not held back. (Before, the batch's refusal in the first pass
  // closed the gate on the writer's side and nothing opened it: every reply and transfer
  // failed until the next claim, ack or release.)
  CHECK(r.settled() == "");
}
