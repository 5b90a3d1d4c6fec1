// One stream key of a queue that is not a stream (an operator's `SET sb:q:general:urgent x`):
// the relay holds back only that stream's rows (tests/relay/held_test.cpp). The agent API must
// not let it block the rest either (DESIGN-NOTES invariant 4): the queue's other priorities are
// still claimed, and /v1/queues still lists every queue, naming the broken key.
#include <doctest/doctest.h>

#include <boost/asio/post.hpp>
#include <thread>

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

// An ack's script run serves every ack, release and check of its io turn (QueueOps): one held
// entry whose stream was deleted (the README's fix for a broken key) or replaced by another
// type made the script raise (XPENDING: NOGROUP, WRONGTYPE), and every call batched with it was
// answered 503, its own holder on every retry.
TEST_CASE(
    "a held item's stream deleted or replaced: its ack is told so, an ack batched with it "
    "goes through") {
  for (bool replace : {false, true}) {
    CAPTURE(replace);
    AgentDaemon d;
    std::string x = d.ingest("gone-x", "held by alice, its stream goes");
    std::string z = d.ingest("gone-z", "held by alice too, transferred after");
    std::string y = d.ingest("gone-y", "held by bob in billing");
    d.drained();
    CHECK(claimed_id(d.claim("alice-token", "general")) == x);
    CHECK(claimed_id(d.claim("alice-token", "general")) == z);
    CHECK(claimed_id(d.claim("bob-token", "general")) == y);
    REQUIRE(d.act("bob-token", y, "transfer", R"({"queue":"billing","priority":"high"})").status ==
            200);
    CHECK(claimed_id(d.claim("bob-token", "billing")) == y);  // in sb:q:billing:high

    d.redis.cmd({"DEL", "sb:q:general:normal"});
    if (replace) {
      REQUIRE(d.redis.cmd({"SET", "sb:q:general:normal", "x"}) == "OK");
    }
    // Both acks reach the daemon while its io thread is held, so that they share a script run.
    HttpClient alices(d.app->port()), bobs(d.app->port());
    REQUIRE(alices.request("GET", "/healthz").status == 200);  // connected before the hold
    REQUIRE(bobs.request("GET", "/healthz").status == 200);
    boost::asio::post(d.app->io(),
                      [] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); });
    HttpResponse rx, ry;
    std::thread tx([&] { rx = d.act("alice-token", x, "ack", "{}", &alices); });
    std::thread ty([&] { ry = d.act("bob-token", y, "ack", "{}", &bobs); });
    tx.join();
    ty.join();
    CHECK_MESSAGE(ry.status == 200, ry.body);
    CHECK_MESSAGE(rx.status == 409, rx.body);
    std::string message = error_message(rx);
    CHECK_MESSAGE(message.find("sb:q:general:normal") != std::string::npos, message);
    CHECK_MESSAGE(message.find(replace ? "replaced by a key that is not a stream"
                                       : "was deleted") != std::string::npos,
                  message);
    // Not held by anyone from now on: a retry is a 409 too, not a 503.
    CHECK(d.act("alice-token", x, "ack").status == 409);
    // A transfer and a reply of an item held there are told the same.
    auto t = d.act("alice-token", z, "transfer", R"({"queue":"billing"})");
    CHECK_MESSAGE(t.status == 409, t.body);
    CHECK_MESSAGE(error_message(t).find("sb:q:general:normal") != std::string::npos, t.body);
    CHECK(d.redis.xlen("sb:q:billing:normal") == 0);  // nothing moved
    CHECK(d.redis.cmd({"HGET", "sb:held", x}) == "(nil)");
    CHECK(d.redis.cmd({"HGET", "sb:held", z}) == "(nil)");
    REQUIRE(eventually([&] {
      return d.rows("SELECT count(*) FROM interactions WHERE id='" + y + "' AND state='done'") == 1;
    }));
  }
}
