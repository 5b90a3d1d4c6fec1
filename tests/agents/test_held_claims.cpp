// The claims an agent holds: extend keeps an item past claim_timeout, GET /v1/agent/claims lists
// what the agent holds (an agent app that restarted finds its work again).
#include <doctest/doctest.h>

#include <thread>

#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

namespace {
boost::json::array claims_of(AgentDaemon& d, const std::string& token) {
  auto r = d.get(token, "/v1/agent/claims");
  REQUIRE(r.status == 200);
  return parse(r.body).at("claims").as_array();
}
}  // namespace

// Before: an agent working an item longer than claim_timeout lost it to the next claim (and its
// ack answered 409); nothing restarted the clock.
TEST_CASE("extend: an item extended before its claim_timeout stays with its agent") {
  AgentDaemon d([](config::Config& c) { c.routing.claim_timeout = std::chrono::seconds(3); });
  std::string kept = d.ingest("ext-1", "a long answer");
  std::string lost = d.ingest("ext-2", "left alone");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == kept);
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == lost);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  auto e = d.act("alice-token", kept, "extend");
  REQUIRE(e.status == 200);
  auto body = parse(e.body);
  CHECK(body.at("status").as_string() == "held");
  CHECK(body.at("claim_timeout_ms").as_int64() == 3000);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  // 4 s after both claims: the one left alone is redelivered, the extended one is not.
  HttpResponse bob;
  REQUIRE(eventually([&] { return (bob = d.claim("bob-token", "general")).status == 200; }));
  CHECK(claimed_id(bob) == lost);
  CHECK(d.claim("bob-token", "general").status == 204);
  auto mine = claims_of(d, "alice-token");
  REQUIRE(mine.size() == 1);
  CHECK(mine[0].at("interaction_id").as_string() == kept);
  CHECK(mine[0].at("deliveries").as_int64() == 1);  // an extend is no new delivery
  CHECK(d.act("alice-token", kept, "ack").status == 200);
  // Not held (any more, or by someone else): 409 as for an ack.
  auto done = d.act("alice-token", kept, "extend");
  CHECK(done.status == 409);
  auto other = d.act("alice-token", lost, "extend");
  CHECK(other.status == 409);
  CHECK(error_message(other) ==
        "interaction " + lost + " is not held by agent alice: agent bob holds it");
  CHECK(d.act("bob-token", lost, "ack").status == 200);
}

TEST_CASE("GET /v1/agent/claims lists what the agent holds, with each interaction") {
  AgentDaemon d;
  std::string a = d.ingest("held-1", "first");
  std::string b = d.ingest("held-2", "second");
  std::string c = d.ingest("held-3", "third");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == a);
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == b);
  REQUIRE(claimed_id(d.claim("bob-token", "general")) == c);
  REQUIRE(d.act("alice-token", b, "release").status == 200);  // released: no longer hers

  auto mine = claims_of(d, "alice-token");
  REQUIRE(mine.size() == 1);
  const auto& held = mine[0].as_object();
  CHECK(held.at("interaction_id").as_string() == a);
  CHECK(held.at("queue").as_string() == "general");
  CHECK(held.at("priority").as_string() == "normal");
  CHECK(held.at("deliveries").as_int64() == 1);
  CHECK(held.at("expires_in_ms").as_int64() > 0);
  CHECK(held.at("interaction").at("id").as_string() == a);
  CHECK(held.at("interaction").at("subject").as_string() == "first");
  auto bobs = claims_of(d, "bob-token");
  REQUIRE(bobs.size() == 1);
  CHECK(bobs[0].at("interaction_id").as_string() == c);

  CHECK(d.act("alice-token", a, "ack").status == 200);
  CHECK(claims_of(d, "alice-token").empty());
  CHECK(d.get("", "/v1/agent/claims").status == 401);
  CHECK(d.get("test-token", "/v1/agent/claims").status == 401);  // an API token is not an agent's
}
