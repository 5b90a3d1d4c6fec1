// The claims an agent holds: extend keeps an item past claim_timeout, GET /v1/agent/claims lists
// what the agent holds (an agent app that restarted finds its work again).
#include <doctest/doctest.h>

#include <thread>

#include "storage/sqlite.hpp"
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

// Before: past 100 entries of a priority the list was cut silently, and every payload was read
// and sent, up to a MiB of text each, in one answer built on the io thread.
TEST_CASE(
    "GET /v1/agent/claims says truncated past 100 entries of a priority or 4 MiB of payloads") {
  AgentDaemon d;
  std::vector<std::string> ids;
  for (int n = 0; n < 5; ++n) {
    ids.push_back(d.ingest("big-" + std::to_string(n), "long mail " + std::to_string(n)));
  }
  d.drained();
  for (const auto& id : ids) {
    REQUIRE(claimed_id(d.claim("alice-token", "general")) == id);
  }
  auto whole = d.get("alice-token", "/v1/agent/claims");
  REQUIRE(whole.status == 200);
  CHECK_FALSE(parse(whole.body).contains("truncated"));
  {
    // Email bodies of 1.5 MB each: three pass the 4 MiB budget.
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec(
        "UPDATE interactions SET payload = json_set(payload, '$.text', "
        "replace(hex(zeroblob(750000)), '0', 'x')) WHERE external_id LIKE 'big-%'");
  }
  auto r = d.get("alice-token", "/v1/agent/claims");
  REQUIRE(r.status == 200);
  auto body = parse(r.body);
  CHECK(body.at("truncated").as_bool());
  auto mine = body.at("claims").as_array();
  REQUIRE(mine.size() == 5);
  for (std::size_t n = 0; n < mine.size(); ++n) {
    CHECK(mine[n].at("interaction_id").as_string() == ids[n]);
    CHECK(mine[n].at("interaction").is_null() == (n >= 3));
  }
  CHECK(r.body.size() < 5u * 1024 * 1024);

  // bob holds 101 entries of one priority (claimed in Redis at once): 100 are listed.
  d.redis.cmd({"XGROUP", "CREATE", "sb:q:general:high", "agents", "0", "MKSTREAM"});  // or has
  for (int n = 0; n < 101; ++n) {
    d.redis.cmd({"XADD", "sb:q:general:high", "*", "interaction_id", "F" + std::to_string(n)});
  }
  d.redis.cmd({"XREADGROUP", "GROUP", "agents", "bob", "COUNT", "101", "STREAMS",
               "sb:q:general:high", ">"});
  auto bobs = parse(d.get("bob-token", "/v1/agent/claims").body);
  CHECK(bobs.at("truncated").as_bool());
  auto listed = bobs.at("claims").as_array();
  REQUIRE(listed.size() == 100);
  CHECK(listed[0].at("interaction_id").as_string() == "F0");
  CHECK(listed[99].at("interaction_id").as_string() == "F99");
}
