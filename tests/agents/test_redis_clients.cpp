// Acceptance 4 of issue 3: a plain Redis client in the `agents` group reads entries with the
// SPEC section 4 fields, and its XACK is honoured by the daemon's queue counts.
#include <doctest/doctest.h>

#include <thread>

#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

namespace {
boost::json::object general(AgentDaemon& d) {
  return d.queue_stats("general");
}
}  // namespace

TEST_CASE(
    "redis-cli as a consumer: XREADGROUP sees the SPEC fields, its XACK shows in /v1/queues") {
  AgentDaemon d;
  std::string id = d.ingest("cli-1", "read me with redis-cli");
  std::string other = d.ingest("cli-2", "and me through the API");
  d.drained();
  CHECK(general(d).at("depth").as_int64() == 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  CHECK(general(d).at("oldest_waiting_ms").as_int64() >= 150);
  CHECK(general(d).at("oldest_waiting_ms").as_int64() < 60'000);

  auto read = d.redis.cmd({"XREADGROUP", "GROUP", "agents", "bob", "COUNT", "1", "STREAMS",
                           "sb:q:general:normal", ">"});
  for (const char* f : {"interaction_id", "conversation_id", "customer_id", "channel", "kind",
                        "priority", "payload"}) {
    CHECK_MESSAGE(read.find(std::string(f) + ",") != std::string::npos, f << " in " << read);
  }
  CHECK(read.find(id) != std::string::npos);
  auto q = general(d);
  CHECK(q.at("depth").as_int64() == 1);
  CHECK(q.at("claimed").as_int64() == 1);

  // The daemon hands out the other one only: redis-cli's bob holds the first.
  CHECK(claimed_id(d.claim("alice-token", "general")) == other);
  CHECK(d.claim("alice-token", "general").status == 204);
  CHECK(general(d).at("claimed").as_int64() == 2);

  auto entry = d.redis.xrange("sb:q:general:normal").at(0);
  REQUIRE(entry["interaction_id"] == id);
  CHECK(d.redis.cmd({"XACK", "sb:q:general:normal", "agents", entry["_id"]}) == "1");
  q = general(d);
  CHECK(q.at("claimed").as_int64() == 1);
  CHECK(q.at("depth").as_int64() == 0);
  auto metrics = d.http->request("GET", "/metrics").body;
  CHECK(metrics.find("switchboard_queue_claimed{queue=\"general\"} 1") != std::string::npos);
  CHECK(metrics.find("switchboard_queue_depth{queue=\"general\",priority=\"normal\"} 0") !=
        std::string::npos);
  // The item redis-cli acknowledged is not the daemon's to finish.
  CHECK(d.act("alice-token", id, "ack").status == 409);
  CHECK(d.act("alice-token", other, "ack").status == 200);
  CHECK(general(d).at("claimed").as_int64() == 0);
}
