// A transfer whose reply is lost after Redis ran it (the connection drops in between): the agent
// is answered 503 and retries, as a 503 asks. Redis moved the item; the database must follow:
// the interaction's queue, priority and payload, the conversation's sticky queue, and one
// transfer event on the timeline.
#include <doctest/doctest.h>

#include <memory>

#include "tests/agents/fixture.hpp"
#include "tests/agents/reply_cutter.hpp"

using namespace sb;
using namespace sb::test;

namespace {
std::function<void(config::Config&)> through(std::unique_ptr<ReplyCutter>& cutter) {
  return [&cutter](config::Config& c) {
    cutter = std::make_unique<ReplyCutter>(c.redis.port);
    c.redis.port = cutter->port();
    c.redis.url = "redis://127.0.0.1:" + std::to_string(cutter->port()) + "/0";
  };
}

long long count(AgentDaemon& d, const std::string& where) {
  return d.rows("SELECT count(*) FROM " + where);
}

constexpr const char* kToBilling = R"({"queue":"billing","priority":"high"})";
}  // namespace

TEST_CASE("a transfer's reply is lost after Redis ran it: the retry records the transfer once") {
  std::unique_ptr<ReplyCutter> cutter;  // outlives the daemon
  AgentDaemon d(through(cutter));
  std::string id = d.ingest("transfer-lost-1", "moved, but the answer never arrives",
                            "ann@example.com", "order-77");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  REQUIRE(eventually(
      [&] { return count(d, "interactions WHERE id='" + id + "' AND state='claimed'") == 1; }));

  cutter->cut_reply_to("transferred:");  // the transfer script's marker key
  auto r = d.act("alice-token", id, "transfer", kToBilling);
  REQUIRE(cutter->cut());
  CHECK(r.status == 503);
  CHECK(d.redis.xlen("sb:q:billing:high") == 1);  // Redis ran it
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);

  auto again = d.act("alice-token", id, "transfer", kToBilling);
  REQUIRE(again.status == 200);
  CHECK(parse(again.body).at("status").as_string() == "transferred");
  CHECK(d.redis.xlen("sb:q:billing:high") == 1);  // nothing added twice
  // The record follows Redis.
  REQUIRE(eventually([&] {
    return count(d, "interactions WHERE id='" + id +
                        "' AND queue='billing' AND priority='high' AND state='queued' AND "
                        "json_extract(payload, '$.queue')='billing'") == 1;
  }));
  CHECK(count(d, "events WHERE type='transfer' AND actor='alice'") == 1);
  // A further retry (its 200 lost on the way, say) records nothing more.
  CHECK(d.act("alice-token", id, "transfer", kToBilling).status == 200);
  // Sticky routing: the conversation's next message follows it to billing, which also tells
  // that the retry's record is committed (the writer runs jobs in order).
  std::string next =
      d.ingest("transfer-lost-2", "and another thing", "ann@example.com", "order-77");
  d.drained();
  CHECK(count(d, "interactions WHERE id='" + next + "' AND queue='billing'") == 1);
  CHECK(count(d, "events WHERE type='transfer'") == 1);
  // bob (billing) gets it from its new queue with the payload saying so.
  auto bob = d.claim("bob-token", "billing");
  CHECK(claimed_id(bob) == id);
  CHECK(parse(bob.body).at("interaction").at("queue").as_string() == "billing");
}

TEST_CASE(
    "a transfer's reply is lost and another agent claims it before the retry: 200, recorded") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter));
  std::string id = d.ingest("transfer-lost-3", "moved, then taken before the retry");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);

  cutter->cut_reply_to("transferred:");
  CHECK(d.act("alice-token", id, "transfer", kToBilling).status == 503);
  REQUIRE(cutter->cut());
  CHECK(claimed_id(d.claim("bob-token", "billing")) == id);

  // Her retry: the transfer did happen; bob holding it since does not undo that.
  auto again = d.act("alice-token", id, "transfer", kToBilling);
  CHECK(again.status == 200);
  REQUIRE(
      eventually([&] { return count(d, "events WHERE type='transfer' AND actor='alice'") == 1; }));
  // bob's claim stays the state; the queue is the one bob works it in.
  CHECK(count(d, "interactions WHERE id='" + id +
                     "' AND queue='billing' AND priority='high' AND state='claimed'") == 1);
  CHECK(d.act("bob-token", id, "ack").status == 200);
  // A transfer by someone who never did one is still refused, naming the holder.
  std::string other = d.ingest("transfer-lost-4", "held by alice");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == other);
  auto refused = d.act("bob-token", other, "transfer", kToBilling);
  CHECK(refused.status == 409);
  CHECK(error_message(refused).find("alice holds it") != std::string::npos);
}
