// A queue dropped from the config (no rule, agent or default_queue names it after a reload or a
// restart) while items wait or are held in it. New messages no longer go there, but those
// already there stay in sb:q:billing:*, where no agent may claim. After a restart the daemon
// used to know only the configured queues: the queue left /v1/queues and /metrics, and the
// periodic pass no longer dead-lettered its timed-out items. Now the database says which such
// queues hold open items: they stay known, and each is logged at warn with what to do.
#include <doctest/doctest.h>

#include "agents/records.hpp"
#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;

namespace {
// A subject with "refund" goes to billing, at high; bob works billing (test_config).
void with_billing(config::Config& c) {
  config::Rule r;
  r.name = "refunds";
  r.queue = "billing";
  r.priority = "high";
  r.when.subject_matches = "refund";
  c.routing.rules.push_back(r);
}

// Nothing names billing: no rule, and bob works general only.
void without_billing(config::Config& c) {
  c.routing.rules.clear();
  for (auto& a : c.agents) {
    std::erase(a.queues, "billing");
  }
}

// The recovery: `agent` works billing again.
void give_billing(config::Config& c, const std::string& agent) {
  for (auto& a : c.agents) {
    if (a.id == agent) {
      a.queues.push_back("billing");
    }
  }
}

bool listed(AgentDaemon& d, const std::string& queue) {
  auto r = d.get("alice-token", "/v1/queues");
  REQUIRE(r.status == 200);
  auto body = parse(r.body);
  for (const auto& q : body.at("queues").as_array()) {
    if (q.at("queue").as_string() == queue) {
      return true;
    }
  }
  return false;
}

long long open_in_billing(AgentDaemon& d) {
  return d.rows(
      "SELECT count(*) FROM interactions WHERE queue = 'billing' "
      "AND state IN ('queued', 'claimed')");
}

constexpr const char* kWarning = "[agents] queue billing is no longer in the config but holds ";
}  // namespace

TEST_CASE("a restart without a queue that holds items keeps it listed and warns") {
  LogCapture log("agents");  // outlives the daemon
  AgentDaemon d(with_billing);
  std::string held = d.ingest("drop-1", "refund for order 1");
  std::string waiting = d.ingest("drop-2", "refund for order 2");
  d.drained();
  REQUIRE(claimed_id(d.claim("bob-token", "billing")) == held);

  d.restart(without_billing);
  auto warned = log.lines_with(kWarning);
  REQUIRE(warned.size() == 1);
  CHECK(warned[0] ==
        "warning [agents] queue billing is no longer in the config but holds 2 items (1 held): "
        "add it back to an agent's queues; that agent can claim them, then finish or transfer "
        "each");
  auto stats = d.queue_stats("billing");
  CHECK(stats.at("depth").as_int64() == 1);
  CHECK(stats.at("claimed").as_int64() == 1);
  auto metrics = d.http->request("GET", "/metrics").body;
  CHECK(metrics.find("switchboard_queue_depth{queue=\"billing\"} 1\n") != std::string::npos);
  CHECK(metrics.find("switchboard_queue_claimed{queue=\"billing\"} 1\n") != std::string::npos);

  // Authorisation does not loosen for a dropped queue: nobody may claim there, nor act on what
  // is held there, its holder included.
  CHECK(d.claim("bob-token", "billing").status == 403);
  CHECK(d.act("bob-token", held, "ack").status == 403);
  CHECK(d.act("alice-token", held, "transfer", R"({"queue":"general"})").status == 403);

  // The recovery: billing is bob's again. He claims what waits there, transfers it to a
  // configured queue, and finishes the item he held. The queue is named again: no warning.
  auto fresh = d.app->config();
  give_billing(fresh, "bob");
  REQUIRE(d.app->reload(fresh).empty());
  CHECK(log.lines_with(kWarning).size() == 1);
  REQUIRE(claimed_id(d.claim("bob-token", "billing")) == waiting);
  CHECK(d.act("bob-token", waiting, "transfer", R"({"queue":"general"})").status == 200);
  CHECK(d.act("bob-token", held, "ack").status == 200);
  REQUIRE(eventually([&] { return open_in_billing(d) == 0; }));

  // Empty, billing is left out again: after a restart it is gone, with no warning.
  d.restart(without_billing);
  CHECK(!listed(d, "billing"));
  CHECK(listed(d, "general"));
  CHECK(log.lines_with(kWarning).size() == 1);
}

TEST_CASE("a reload that drops a queue holding items warns at once and keeps it listed") {
  LogCapture log("agents");
  AgentDaemon d(with_billing);
  d.ingest("drop-3", "refund for order 3");
  d.drained();
  auto fresh = d.app->config();
  without_billing(fresh);
  REQUIRE(d.app->reload(fresh).empty());
  auto warned = log.lines_with(kWarning);
  REQUIRE(warned.size() == 1);
  CHECK(warned[0].find("holds 1 item (0 held): add it back") != std::string::npos);
  CHECK(d.queue_stats("billing").at("depth").as_int64() == 1);
  // Every reload says it again while the items are there.
  REQUIRE(d.app->reload(fresh).empty());
  CHECK(log.lines_with(kWarning).size() == 2);
}

TEST_CASE("the periodic pass dead-letters a timed-out item of a queue a restart dropped") {
  // With claim_timeout 2 s the pass comes every 200 ms.
  auto quick = [](config::Config& c) {
    c.routing.claim_timeout = std::chrono::seconds(2);
    c.routing.max_deliveries = 1;
  };
  AgentDaemon d([&](config::Config& c) {
    with_billing(c);
    quick(c);
  });
  std::string id = d.ingest("drop-4", "refund for order 4");
  d.drained();
  REQUIRE(claimed_id(d.claim("bob-token", "billing")) == id);
  d.restart([&](config::Config& c) {
    without_billing(c);
    quick(c);
  });
  // Nobody claims from billing now: only the pass moves the item, once bob's claim timed out.
  REQUIRE(
      eventually([&] { return d.redis.xlen("sb:dead:billing") == 1; }, std::chrono::seconds(10)));
  REQUIRE(eventually(
      [&] { return d.rows("SELECT count(*) FROM interactions WHERE state = 'dead'") == 1; }));
  CHECK(d.queue_stats("billing").at("dead_letters").as_int64() == 1);
}

TEST_CASE("an item held in a dropped queue is delivered again once an agent has the queue") {
  auto quick = [](config::Config& c) { c.routing.claim_timeout = std::chrono::seconds(2); };
  AgentDaemon d([&](config::Config& c) {
    with_billing(c);
    quick(c);
  });
  std::string id = d.ingest("drop-5", "refund for order 5");
  d.drained();
  REQUIRE(claimed_id(d.claim("bob-token", "billing")) == id);
  d.restart([&](config::Config& c) {
    without_billing(c);
    quick(c);
  });
  auto fresh = d.app->config();
  give_billing(fresh, "alice");
  REQUIRE(d.app->reload(fresh).empty());
  // bob's claim times out 2 s after it was made: alice's waiting claim gets the item then.
  auto r = d.claim("alice-token", "billing", 10000);
  CHECK(claimed_id(r) == id);
  CHECK(parse(r.body).at("delivery").at("deliveries").as_int64() == 2);
  CHECK(d.act("alice-token", id, "ack").status == 200);
}

TEST_CASE("the look for dropped queues reads the open interactions' index, not the whole table") {
  AgentDaemon d;
  storage::Db db(d.dir.file("switchboard.db"), true);
  auto st = db.prepare(std::string("EXPLAIN QUERY PLAN ") + agents::kOpenItemsQuery);
  std::string plan;
  while (st.step()) {
    plan += st.text(3) + "\n";
  }
  CHECK_MESSAGE(plan.find("USING INDEX interactions_by_queued_seq") != std::string::npos, plan);
}
