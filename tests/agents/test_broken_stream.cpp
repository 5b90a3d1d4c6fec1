// One stream key of a queue that is not a stream (an operator's `SET sb:q:general:urgent x`):
// the relay holds back only that stream's rows (tests/relay/held_test.cpp). The agent API must
// not let it block the rest either (DESIGN-NOTES invariant 4): the queue's other priorities are
// still claimed, and /v1/queues still lists every queue, naming the broken key.
#include <doctest/doctest.h>

#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

TEST_CASE("a broken stream key of one priority: claims from its queue get the other priorities") {
  AgentDaemon d;
  std::string id = d.ingest("broken-1", "waits in general, normal priority");
  d.drained();
  d.redis.cmd({"DEL", "sb:q:general:urgent"});
  REQUIRE(d.redis.cmd({"SET", "sb:q:general:urgent", "x"}) == "OK");

  auto r = d.claim("alice-token", "general");
  CHECK(claimed_id(r) == id);
  CHECK(d.act("alice-token", id, "release").status == 200);
  // A released item is found by the look for idle entries, which must step over the key too.
  auto again = d.claim("bob-token", "general");
  CHECK(claimed_id(again) == id);
  CHECK(d.act("bob-token", id, "ack").status == 200);
  CHECK(d.claim("bob-token", "general", 200).status == 204);
}

TEST_CASE("a broken stream key: /v1/queues lists every queue and names the key in its queue's") {
  AgentDaemon d;
  d.ingest("broken-2", "waits in general");
  d.drained();
  d.redis.cmd({"DEL", "sb:q:billing:high"});
  REQUIRE(d.redis.cmd({"SET", "sb:q:billing:high", "x"}) == "OK");

  auto r = d.get("alice-token", "/v1/queues");
  REQUIRE_MESSAGE(r.status == 200, r.body);
  bool general = false, billing = false;
  auto body = parse(r.body);
  for (const auto& q : body.at("queues").as_array()) {
    const auto& o = q.as_object();
    if (o.at("queue").as_string() == "general") {
      general = true;
      CHECK(o.at("depth").as_int64() == 1);
    }
    if (o.at("queue").as_string() == "billing") {
      billing = true;
      REQUIRE(o.contains("error"));
      std::string error(o.at("error").as_string());
      CHECK_MESSAGE(error.find("sb:q:billing:high") != std::string::npos, error);
      CHECK_MESSAGE(error.find("not a stream") != std::string::npos, error);
    }
  }
  CHECK(general);
  CHECK(billing);
  // Redis as a whole away is still a 503 for the route.
  d.redis.stop();
  auto down = d.get("alice-token", "/v1/queues");
  CHECK(down.status == 503);
  CHECK(error_message(down).find("redis") != std::string::npos);
  d.redis.start();
}

TEST_CASE("a transfer into a broken stream key: 503 naming the key, nothing moved, still held") {
  AgentDaemon d;
  std::string id = d.ingest("broken-3", "to be moved to billing");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  d.redis.cmd({"DEL", "sb:q:billing:high"});
  REQUIRE(d.redis.cmd({"SET", "sb:q:billing:high", "x"}) == "OK");

  auto r = d.act("alice-token", id, "transfer", R"({"queue":"billing","priority":"high"})");
  CHECK(r.status == 503);
  CHECK(parse(r.body).at("error").at("code").as_string() == "queue_unavailable");
  std::string message = error_message(r);
  CHECK_MESSAGE(message.find("sb:q:billing:high") != std::string::npos, message);
  CHECK_MESSAGE(message.find("nothing was moved") != std::string::npos, message);
  // Still alice's, in its place: another priority of billing takes it, and she can finish.
  CHECK(d.redis.xlen("sb:q:general:normal") == 1);
  auto moved = d.act("alice-token", id, "transfer", R"({"queue":"billing","priority":"normal"})");
  CHECK(moved.status == 200);
  CHECK(claimed_id(d.claim("bob-token", "billing")) == id);
  CHECK(d.act("bob-token", id, "ack").status == 200);
}

TEST_CASE("a dead-letter key that is not a stream: claims go on, the item is left as it was") {
  AgentDaemon d([](config::Config& c) {
    c.routing.claim_timeout = std::chrono::milliseconds(300);
    c.routing.max_deliveries = 1;
  });
  std::string id = d.ingest("broken-4", "times out, with nowhere to go");
  std::string next = d.ingest("broken-5", "waits behind it");
  d.drained();
  auto first = d.claim("alice-token", "general");
  CHECK(claimed_id(first) == id);  // alice vanishes
  std::string entry(parse(first.body).at("delivery").at("entry_id").as_string());
  REQUIRE(d.redis.cmd({"SET", "sb:dead:general", "x"}) == "OK");
  // Past claim_timeout the next claim's sweep meets `id`.
  REQUIRE(eventually([&] {
    return d.redis.cmd({"XPENDING", "sb:q:general:normal", "agents", "IDLE", "300", "-", "+",
                        "10"}) != "[]";
  }));

  // Before: the script took the entry for bob, then failed on the dead-letter key: 503 for every
  // claim of the batch, and bob's retry was handed `id` past max_deliveries.
  auto r = d.claim("bob-token", "general");
  CHECK(claimed_id(r) == next);
  auto again = d.claim("bob-token", "general");
  CHECK(again.status == 204);
  CHECK(d.claim("alice-token", "general").status == 204);
  // `id` is untouched: pending for alice, delivered once, nothing in the dead letters.
  auto alices = d.redis.cmd({"XPENDING", "sb:q:general:normal", "agents", "-", "+", "10", "alice"});
  CHECK_MESSAGE(alices.find(entry) != std::string::npos, alices);
  CHECK_MESSAGE(alices.find(",1]") != std::string::npos, alices);  // its delivery count
  auto bobs = d.redis.cmd({"XPENDING", "sb:q:general:normal", "agents", "-", "+", "10", "bob"});
  CHECK_MESSAGE(bobs.find(entry) == std::string::npos, bobs);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='dead_letter'") == 0);
  CHECK(d.act("bob-token", next, "ack").status == 200);
  // /v1/queues names the key in its queue's entry, as for a broken stream key.
  auto general = d.queue_stats("general");
  REQUIRE(general.contains("error"));
  CHECK_MESSAGE(
      std::string(general.at("error").as_string()).find("sb:dead:general") != std::string::npos,
      general);

  // The key fixed, the next sweep moves it to the dead letters as it should have.
  d.redis.cmd({"DEL", "sb:dead:general"});
  REQUIRE(eventually([&] {
    CHECK(d.claim("bob-token", "general").status == 204);
    return d.redis.xlen("sb:dead:general") == 1;
  }));
  CHECK(d.redis.xrange("sb:dead:general").at(0)["interaction_id"] == id);
  REQUIRE(eventually(
      [&] { return d.rows("SELECT count(*) FROM interactions WHERE state='dead'") == 1; }));
}
