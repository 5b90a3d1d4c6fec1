// Stalls (core/stalls.hpp): a stage that holds work back for over 250 ms is counted by stage in
// /metrics and logged, so that a latency spike can be tied to its cause. The counters are
// process-wide: each check compares with the count before.
#include <doctest/doctest.h>

#include <signal.h>

#include <boost/asio/post.hpp>
#include <thread>

#include "core/stalls.hpp"
#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

namespace {

bool counted(Stall stage, std::uint64_t before) {
  return eventually([&] { return stalls(stage) > before; }, std::chrono::seconds(10));
}

}  // namespace

TEST_CASE("stalls: a long transaction, a held io loop and rows waiting for Redis, by stage") {
  AgentDaemon d;
  d.ingest("warm", "first");
  d.drained();

  auto writer = stalls(Stall::writer);
  d.app->writer().submit(storage::Job{
      [](storage::Db&) { std::this_thread::sleep_for(std::chrono::milliseconds(400)); }, {}});
  CHECK(counted(Stall::writer, writer));

  auto io = stalls(Stall::io);
  boost::asio::post(d.app->io(),
                    [] { std::this_thread::sleep_for(std::chrono::milliseconds(400)); });
  CHECK(counted(Stall::io, io));

  auto relay = stalls(Stall::relay);
  d.redis.stop();
  d.ingest("while-down", "waits in the outbox");
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  d.redis.start();
  d.drained();
  CHECK(counted(Stall::relay, relay));

  auto metrics = d.http->request("GET", "/metrics");
  REQUIRE(metrics.status == 200);
  for (const char* stage : {"io", "writer", "relay", "claim", "redis"}) {
    CHECK(metrics.body.find(std::string("switchboard_stalls_total{stage=\"") + stage + "\"}") !=
          std::string::npos);
  }
  CHECK(metrics.body.find("# TYPE switchboard_writer_queue_jobs gauge") != std::string::npos);
  // Counts kept elsewhere and read at scrape time are still counters.
  CHECK(metrics.body.find("# TYPE switchboard_stalls_total counter") != std::string::npos);
  CHECK(metrics.body.find("# TYPE switchboard_writer_commits_total counter") != std::string::npos);
  CHECK(metrics.body.find("# TYPE switchboard_writer_jobs_total counter") != std::string::npos);
}

TEST_CASE(
    "stalls: a waiting claim woken by the relay is none, one that finds work on its "
    "re-check is one") {
  AgentDaemon d;
  auto claims = stalls(Stall::claim);
  auto relay = stalls(Stall::relay);

  // The relay's entry wakes the waiting claim: no stall of either stage.
  HttpClient agent(d.app->port());
  std::string got;
  std::thread waiter([&] {
    auto r = d.claim("bob-token", "general", 5000, &agent);
    got = r.status == 200 ? claimed_id(r) : r.body;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string id = d.ingest("relayed", "wakes bob");
  waiter.join();
  CHECK(got == id);
  CHECK(stalls(Stall::claim) == claims);
  CHECK(stalls(Stall::relay) == relay);

  // An entry another producer adds wakes nobody: the claim finds it on its re-check (every
  // 1 s here), after it sat there.
  std::thread waiter2([&] {
    auto r = d.claim("bob-token", "general", 5000, &agent);
    got = r.status == 200 ? claimed_id(r) : r.body;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // bob waits again
  d.redis.cmd({"XADD", "sb:q:general:normal", "*", "interaction_id", "outside-1", "conversation_id",
               "c", "customer_id", "u", "channel", "api", "kind", "message", "priority", "normal",
               "payload", R"({"id":"outside-1"})"});
  waiter2.join();
  CHECK(got == "outside-1");
  CHECK(stalls(Stall::claim) == claims + 1);
}

TEST_CASE("stalls: a timed-out item that a waiting claim takes on its re-check is no claim stall") {
  // claim_timeout 400 ms: waiting claims look again every 200 ms, and find items held longer.
  AgentDaemon d(
      [](config::Config& c) { c.routing.claim_timeout = std::chrono::milliseconds(400); });
  auto claims = stalls(Stall::claim);
  std::string id = d.ingest("held", "alice takes it and vanishes");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == id);

  // Bob waits; nothing wakes him: his re-check finds alice's item once it timed out. Its entry
  // id is as old as the item, yet it is a redelivery, not an entry that sat unseen.
  auto r = d.claim("bob-token", "general", 5000);
  REQUIRE(r.status == 200);
  CHECK(claimed_id(r) == id);
  CHECK(parse(r.body).at("delivery").at("deliveries").as_int64() == 2);
  CHECK(stalls(Stall::claim) == claims);
}

TEST_CASE("stalls: the agents' Redis answering a claim late is a redis stall") {
  AgentDaemon d;
  auto before = stalls(Stall::redis);  // the count is the process's: other cases may add to it
  CHECK(d.claim("alice-token", "general").status == 204);  // quick: no stall
  CHECK(stalls(Stall::redis) == before);

  d.redis.signal(SIGSTOP);  // Redis hangs for 400 ms
  HttpResponse r;
  std::thread claim([&] { r = d.claim("alice-token", "general"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  d.redis.signal(SIGCONT);
  claim.join();
  CHECK(r.status == 204);
  CHECK(stalls(Stall::redis) == before + 1);
}
