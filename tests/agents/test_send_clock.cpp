// The send loop's deadlines are wall-clock times (sends.next_attempt_at). A clock set back after a
// retry was scheduled leaves the row due far ahead: the loop brings it forward to the longest
// wait it schedules (SendPolicy), so a clock step delays a reply by that much at most. The loop
// on its own here (a small policy: the default's hour is too long to wait for).
#include <doctest/doctest.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <thread>

#include "agents/records.hpp"
#include "agents/send_loop.hpp"
#include "core/sender.hpp"
#include "core/time.hpp"
#include "http/metrics.hpp"
#include "storage/sqlite.hpp"
#include "storage/writer.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using namespace sb::test;

namespace {
struct CountingSender : Sender {
  std::atomic<int> sent{0};
  void send(OutboundMessage m, Done done) override {
    ++sent;
    done(SendResult::sent("p-" + m.id));
  }
};

// A reply to one interaction, its send pending and due at `next_attempt_at`.
void pending_send(const std::string& path, std::int64_t next_attempt_at) {
  storage::Db db(path);
  db.exec(
      "INSERT INTO interactions(id, channel, account, external_id, kind, direction, state, "
      "occurred_at, received_at, payload) VALUES "
      "('IN', 'api', 'web', 'in-1', 'message', 'inbound', 'done', 1, 1, '{}'), "
      "('OUT', 'api', 'web', 'out-1', 'message', 'outbound', 'done', 1, 1, '{\"text\":\"hi\"}')");
  auto st = db.prepare(
      "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
      "next_attempt_at, created_at, updated_at) VALUES ('OUT', 'IN', 'api', 'web', 'pending', 1, "
      "?1, 1, 1)");
  st.bind(1, next_attempt_at).run();
}
}  // namespace

TEST_CASE("send clock: a retry due a day ahead (the clock set back) is attempted within the cap") {
  TempDir dir;
  const std::string path = dir.file("sb.db");
  storage::Writer writer(path);
  writer.start();
  // Scheduled a second ahead, then the clock went back a day: stored, it is a day and a second
  // ahead of the clock now.
  pending_send(path, now_ms() + 24LL * 3600 * 1000 + 1000);

  boost::asio::io_context io;
  agents::Records records(io, writer, path);
  SenderRegistry senders;
  auto counting = std::make_shared<CountingSender>();
  senders.add("api", "web", counting);
  Metrics metrics;
  agents::SendPolicy policy;
  policy.first_backoff = std::chrono::milliseconds(200);
  policy.max_backoff = std::chrono::milliseconds(500);
  policy.max_provider_wait = std::chrono::milliseconds(1500);  // the longest wait: the cap
  agents::SendLoop loop(io, records, senders, metrics, policy);
  auto work = boost::asio::make_work_guard(io);
  std::thread t([&] { io.run(); });
  auto started = std::chrono::steady_clock::now();
  loop.start();

  // Before: due in a day; it waited that long.
  bool sent = eventually(
      [&] {
        storage::Db db(path, true);
        auto st = db.prepare("SELECT count(*) FROM sends WHERE state='sent'");
        return st.step() && st.int64(0) == 1;
      },
      std::chrono::milliseconds(6000));
  auto waited = std::chrono::steady_clock::now() - started;
  loop.stop();
  work.reset();
  io.stop();
  t.join();
  records.flush_now();
  writer.stop();
  CHECK(sent);
  CHECK(counting->sent == 1);
  // Brought forward to the cap from now, not sent at once: the wait the provider may have named
  // is kept up to the longest one.
  CHECK(waited >= std::chrono::milliseconds(1300));
}

TEST_CASE("send clock: the look for replies due too late reads the index range past the cap") {
  test::TempDir dir;
  const std::string path = dir.file("plan.db");
  storage::Writer writer(path);  // creates and migrates
  storage::Db db(path);
  auto st = db.prepare(std::string("EXPLAIN QUERY PLAN SELECT 1 FROM sends WHERE ") +
                       agents::kSendsDueTooLate);
  std::string plan;
  while (st.step()) {
    plan += st.text(3) + "\n";
  }
  CHECK_MESSAGE(
      plan.find("USING INDEX sends_due (state=? AND next_attempt_at>?)") != std::string::npos,
      plan);
}
