// Acceptance 3 of issue 3: an agent that claims and vanishes; the item comes back after
// claim_timeout to another agent; after max_deliveries it is in the dead-letter stream.
#include <doctest/doctest.h>

#include <thread>

#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

TEST_CASE("a vanished agent's item is redelivered after claim_timeout, then dead-lettered") {
  AgentDaemon d([](config::Config& c) {
    c.routing.claim_timeout = std::chrono::milliseconds(400);
    c.routing.max_deliveries = 2;
  });
  std::string id = d.ingest("lost-1", "nobody finishes me");
  d.drained();

  // Delivery 1: alice claims and vanishes.
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  CHECK(d.claim("bob-token", "general").status == 204);  // held: not handed out twice
  CHECK(d.queue_stats("general").at("claimed").as_int64() == 1);

  // Delivery 2: bob is waiting and gets it once alice's claim times out.
  auto t0 = std::chrono::steady_clock::now();
  auto r = d.claim("bob-token", "general", 5000);
  auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(claimed_id(r) == id);
  CHECK(parse(r.body).at("delivery").at("deliveries").as_int64() == 2);
  CHECK(waited >= std::chrono::milliseconds(250));
  CHECK(waited < std::chrono::milliseconds(2500));
  // alice no longer holds it: her ack is refused, naming the holder.
  auto late = d.act("alice-token", id, "ack");
  CHECK(late.status == 409);
  CHECK(error_message(late).find("bob") != std::string::npos);

  // bob vanishes too. max_deliveries (2) reached, so past claim_timeout it goes to the dead
  // letters instead of a third delivery (moved by the daemon's periodic sweep, or by a claim's),
  // never counted as waiting again: no claim would take it.
  auto third = d.claim("alice-token", "general", 1500);
  CHECK(third.status == 204);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:dead:general") == 1; }));
  CHECK(d.queue_stats("general").at("depth").as_int64() == 0);
  CHECK(d.queue_stats("general").at("claimed").as_int64() == 0);
  auto dead = d.redis.xrange("sb:dead:general").at(0);
  CHECK(dead["interaction_id"] == id);
  CHECK(dead["dead_from"] == "sb:q:general:normal");
  CHECK(dead["deliveries"] == "2");
  CHECK(!dead["payload"].empty());
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);

  auto metrics = d.http->request("GET", "/metrics").body;
  CHECK(metrics.find("switchboard_dead_letters_total{queue=\"general\"} 1") != std::string::npos);
  CHECK(metrics.find("switchboard_dead_letters{queue=\"general\"} 1") != std::string::npos);
  CHECK(metrics.find("switchboard_queue_claimed{queue=\"general\"} 0") != std::string::npos);
  // Recorded on the interaction.
  REQUIRE(eventually(
      [&] { return d.rows("SELECT count(*) FROM interactions WHERE state='dead'") == 1; }));
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='claim'") == 2);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='dead_letter'") == 1);
  // Its last holder's late ack is told where it went, not to claim it (it cannot be claimed).
  auto gone = d.act("bob-token", id, "ack");
  CHECK(gone.status == 409);
  CHECK_MESSAGE(error_message(gone).find("moved to sb:dead:general") != std::string::npos,
                error_message(gone));
}

TEST_CASE(
    "a dead letter whose record fails to commit stays reported in Redis until it is recorded") {
  AgentDaemon d([](config::Config& c) {
    c.routing.claim_timeout = std::chrono::milliseconds(300);
    c.routing.max_deliveries = 1;
  });
  std::string id = d.ingest("dead-1", "times out while the disk is full");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);  // alice vanishes
  REQUIRE(eventually(
      [&] { return d.rows("SELECT count(*) FROM interactions WHERE state='claimed'") == 1; }));
  {
    // Recording it as dead fails (a full disk, say) while this trigger exists.
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec(
        "CREATE TRIGGER full_disk BEFORE UPDATE OF state ON interactions WHEN "
        "NEW.state = 'dead' BEGIN SELECT RAISE(ABORT, 'disk full'); END");
  }
  // bob's waiting claim moves it to the dead letters once alice's claim times out.
  CHECK(d.claim("bob-token", "general", 1000).status == 204);
  REQUIRE(d.redis.xlen("sb:dead:general") == 1);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='dead_letter'") == 0);
  // Not recorded, so Redis still lists it for the next claim to report (before: forgotten at
  // once, and never recorded), with its queue and its dead-letter entry: "<queue> <entry id>".
  std::string noted = d.redis.cmd({"HGET", "sb:dead-unrecorded", id});
  CHECK_MESSAGE(noted.rfind("general ", 0) == 0, noted);
  CHECK(d.redis.cmd({"XRANGE", "sb:dead:general", "-", "+"}).find(noted.substr(8)) !=
        std::string::npos);
  {
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec("DROP TRIGGER full_disk");
  }
  REQUIRE(eventually([&] {
    CHECK(d.claim("bob-token", "general").status == 204);
    return d.rows("SELECT count(*) FROM interactions WHERE state='dead'") == 1;
  }));
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='dead_letter' AND actor='switchboard'") ==
        1);
  REQUIRE(eventually([&] { return d.redis.cmd({"HLEN", "sb:dead-unrecorded"}) == "0"; }));
}

// Only a sweep moves an item to the dead letters, and claims sweep: when a queue's agents went
// away, nothing did, and the item stayed pending for its last holder, counted as waiting, its
// record `claimed`. The daemon's periodic pass (Service::sweep_queues) does it now.
TEST_CASE("an item whose last delivery timed out is dead-lettered with no claim to sweep it") {
  AgentDaemon d([](config::Config& c) {
    c.routing.claim_timeout = std::chrono::milliseconds(300);
    c.routing.max_deliveries = 1;
  });
  std::string id = d.ingest("dead-2", "its agents went away");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);  // alice vanishes; nobody claims
  REQUIRE(eventually(
      [&] { return d.rows("SELECT count(*) FROM interactions WHERE state='dead'") == 1; },
      std::chrono::seconds(5)));
  REQUIRE(d.redis.xlen("sb:dead:general") == 1);
  auto dead = d.redis.xrange("sb:dead:general").at(0);
  CHECK(dead["interaction_id"] == id);
  CHECK(dead["dead_from"] == "sb:q:general:normal");
  CHECK(dead["deliveries"] == "1");
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);
  auto general = d.queue_stats("general");
  CHECK(general.at("dead_letters").as_int64() == 1);
  CHECK(general.at("depth").as_int64() == 0);
  CHECK(general.at("claimed").as_int64() == 0);
  CHECK(general.at("oldest_waiting_ms").as_int64() == 0);
  auto metrics = d.http->request("GET", "/metrics").body;
  CHECK(metrics.find("switchboard_dead_letters_total{queue=\"general\"} 1") != std::string::npos);
  CHECK(metrics.find("switchboard_queue_depth{queue=\"general\"} 0") != std::string::npos);
  CHECK(metrics.find("switchboard_queue_oldest_age_seconds{queue=\"general\"} 0") !=
        std::string::npos);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='dead_letter' AND actor='switchboard'") ==
        1);
  REQUIRE(eventually([&] { return d.redis.cmd({"HLEN", "sb:dead-unrecorded"}) == "0"; }));
  // Its last holder's late ack is told where it went.
  auto gone = d.act("alice-token", id, "ack");
  CHECK(gone.status == 409);
  CHECK_MESSAGE(error_message(gone).find("moved to sb:dead:general") != std::string::npos,
                error_message(gone));
}
