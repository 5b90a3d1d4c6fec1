// Long-poll claims whose HTTP client went away: an agent's client that gave up before wait_ms
// (its own read timeout), or a closed laptop. Nobody reads the answer, so the claim must not
// take an item for it.
#include <doctest/doctest.h>

#include <thread>

#include "tests/agents/fixture.hpp"
#include "tests/agents/raw_claim.hpp"

using namespace sb;
using namespace sb::test;

namespace {
// Sends a claim on a connection of its own and closes it without reading the answer.
void abandoned_claim(std::uint16_t port, const std::string& token, const std::string& queue,
                     int wait_ms) {
  RawClaim claim(port, token, queue, wait_ms);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the claim is waiting now
}
}  // namespace

TEST_CASE("a waiting claim whose client hung up takes no item: the next waiting agent gets it") {
  AgentDaemon d;
  abandoned_claim(d.app->port(), "alice-token", "general", 20000);

  HttpClient bob(d.app->port());
  std::string got;
  std::thread waiter([&] {
    auto r = d.claim("bob-token", "general", 3000, &bob);
    got = r.status == 200 ? claimed_id(r) : std::to_string(r.status) + " " + r.body;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // bob waits behind alice
  std::string id = d.ingest("hung-up-1", "arrives after alice's client hung up");
  waiter.join();
  CHECK(got == id);
  // Nobody else holds it: only bob's claim is on record.
  REQUIRE(
      eventually([&] { return d.rows("SELECT count(*) FROM events WHERE type='claim'") >= 1; }));
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='claim' AND actor='alice'") == 0);
  CHECK(d.act("bob-token", id, "ack").status == 200);
}

// SIGHUP while claims wait: they serve the agents configured now, not those of when they began.
namespace {
struct WaitingClaim {
  HttpClient client;
  HttpResponse answer;
  std::chrono::steady_clock::time_point answered;
  std::thread thread;
  WaitingClaim(AgentDaemon& d, const std::string& token, const std::string& queue)
      : client(d.app->port()) {
    thread = std::thread([this, &d, token, queue] {
      answer = d.claim(token, queue, 20000, &client);
      answered = std::chrono::steady_clock::now();
    });
  }
  ~WaitingClaim() {
    if (thread.joinable()) {
      thread.join();
    }
  }
};
}  // namespace

TEST_CASE("SIGHUP reload removes an agent: its waiting claim answers 401 at once, takes nothing") {
  AgentDaemon d;
  WaitingClaim alice(d, "alice-token", "general");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // alice waits
  auto fresh = test_config(d.dir, d.redis.port());
  fresh.agents = {{"bob", "bob-token", {"general", "billing"}}};
  auto reloaded = std::chrono::steady_clock::now();
  REQUIRE(d.app->reload(fresh).empty());
  // Work arrives right after the reload: it is not alice's to take any more.
  std::string id = d.ingest("after-reload-1", "arrives after alice was removed");
  alice.thread.join();
  CHECK(alice.answer.status == 401);
  CHECK(error_message(alice.answer).find("reload") != std::string::npos);
  // At once, not after wait_ms (20 s here); the bound leaves room for a loaded machine.
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(alice.answered - reloaded);
  MESSAGE("waiting claim answered " << took.count() << " ms after the reload");
  CHECK(took < std::chrono::milliseconds(3000));
  d.drained();
  CHECK(claimed_id(d.claim("bob-token", "general")) == id);
  REQUIRE(
      eventually([&] { return d.rows("SELECT count(*) FROM events WHERE type='claim'") == 1; }));
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='claim' AND actor='alice'") == 0);
}

TEST_CASE("SIGHUP reload changes a token and a queue list: waiting claims answer 401 and 403") {
  AgentDaemon d;
  WaitingClaim alice(d, "alice-token", "general");
  WaitingClaim bob(d, "bob-token", "billing");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto fresh = test_config(d.dir, d.redis.port());
  fresh.agents = {{"alice", "alice-token", {"vip"}},
                  {"bob", "bob-new-token", {"general", "billing"}}};
  auto reloaded = std::chrono::steady_clock::now();
  REQUIRE(d.app->reload(fresh).empty());
  std::string id = d.ingest("after-reload-2", "for general, after the reload");
  alice.thread.join();
  bob.thread.join();
  CHECK(alice.answer.status == 403);
  CHECK(error_message(alice.answer).find("vip") != std::string::npos);  // names its queues now
  CHECK(bob.answer.status == 401);
  CHECK(alice.answered - reloaded < std::chrono::milliseconds(3000));
  CHECK(bob.answered - reloaded < std::chrono::milliseconds(3000));
  d.drained();
  CHECK(d.claim("bob-token", "general").status == 401);
  CHECK(claimed_id(d.claim("bob-new-token", "general")) == id);
}
