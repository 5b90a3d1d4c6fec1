// A Redis restored from an older snapshot brings back the entries of interactions acked or
// transferred since: the relay sweeps them out of the queue streams (relay/sweep.cpp) before it
// re-projects what Redis lost, and leaves the waiting ones and other producers' entries alone.
// A sweep cut short (Redis refusing it halfway) is done again at the next connection, because
// Redis's mark stays behind until the re-projection raises it. A real redis-server and the whole
// daemon.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <thread>

#include "tests/relay/relay_daemon.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;

namespace sweep_test {
namespace {

const std::string kGeneralLow = "sb:q:general:low";
const std::string kBillingHigh = "sb:q:billing:high";
const std::string kVip = "sb:q:vip:normal";
using Ids = std::vector<std::string>;

// One agent's calls: the claimed interaction's id ("" on 204), and ack/transfer answers.
struct Agent {
  HttpClient http;
  std::string token;
  Agent(std::uint16_t port, std::string t) : http(port), token(std::move(t)) {}
  std::string claim(const std::string& queue) {
    HttpResponse r;
    // 503 while the agents' connection finds Redis again after its restart.
    eventually([&] {
      r = http.post_json("/v1/agent/claim", R"({"queue":")" + queue + "\"}", token);
      return r.status != 503;
    });
    if (r.status == 204) {
      return "";
    }
    REQUIRE(r.status == 200);
    return std::string(json::parse(r.body).at("interaction").at("id").as_string());
  }
  int ack(const std::string& id) {
    return http.post_json("/v1/agent/interactions/" + id + "/ack", "{}", token).status;
  }
  int transfer(const std::string& id, const std::string& body) {
    return http.post_json("/v1/agent/interactions/" + id + "/transfer", body, token).status;
  }
};

}  // namespace

TEST_CASE(
    "Redis restored from an older snapshot: entries acked or transferred since are swept out, "
    "the waiting one stays once, another producer's entry is untouched") {
  TempDir dir;
  RedisServer redis;
  LogCapture log("relay");
  App app(test_config(dir, redis.port()));
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  auto a0 = post(port, "a0");
  auto a1 = post(port, "a1");
  auto t0 = post(port, "t0");
  auto w0 = post(port, "w0");
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == Ids{a0, a1, t0, w0}; }));
  // Another producer's entry, in a stream of the same queue.
  CHECK(redis.cmd({"XADD", kGeneralLow, "*", "interaction_id", "ext-1", "payload",
                   R"({"id":"ext-1"})"}) != "");
  Agent alice(port, "alice-token");
  REQUIRE(alice.claim("general") == a0);  // held in the snapshot: a pending entry, a held field
  auto db = dir.file("switchboard.db");
  REQUIRE(eventually([&] { return state_of(db, a0) == "claimed general:normal"; }));
  CHECK(redis.cmd({"SAVE"}) == "OK");  // the snapshot Redis will come back from

  // Since the snapshot: a0 and a1 finished, t0 moved to billing/high, n0 new.
  REQUIRE(alice.ack(a0) == 200);
  REQUIRE(alice.claim("general") == a1);
  REQUIRE(alice.ack(a1) == 200);
  REQUIRE(alice.claim("general") == t0);
  REQUIRE(alice.transfer(t0, R"({"queue":"billing","priority":"high"})") == 200);
  auto n0 = post(port, "n0");
  REQUIRE(eventually([&] {
    return state_of(db, a0) == "done general:normal" && state_of(db, a1) == "done general:normal" &&
           state_of(db, t0) == "queued billing:high";
  }));
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == Ids{w0, n0}; }));
  REQUIRE(eventually([&] { return outbox_rows(db) == 0; }));  // the database's mark passed n0
  CHECK(ids_in(redis, kBillingHigh) == Ids{t0});
  CHECK(counted(port, "switchboard_reconciled_entries_total", 0));

  redis.stop();
  redis.start();  // from dump.rdb: a0 (held by alice), a1, t0, w0 in general, mark 4
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == Ids{w0, n0}; }));
  CHECK(eventually([&] { return ids_in(redis, kBillingHigh) == Ids{t0}; }));
  CHECK(ids_in(redis, kGeneralLow) == Ids{"ext-1"});
  CHECK(redis.cmd({"HGET", "sb:held", a0}) == "(nil)");
  CHECK(eventually([&] { return counted(port, "switchboard_reconciled_entries_total", 3); }));
  CHECK(counted(port, "switchboard_reprojected_total", 1));  // n0
  // Claims hand out what is open, once each; the moved one from its new queue.
  CHECK(alice.claim("general") == w0);
  CHECK(alice.claim("general") == n0);
  CHECK(alice.claim("general") == "ext-1");
  CHECK(alice.claim("general") == "");
  Agent bob(port, "bob-token");
  CHECK(bob.claim("billing") == t0);
  CHECK(bob.claim("billing") == "");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(state_of(db, a0) == "done general:normal");
  CHECK(state_of(db, a1) == "done general:normal");
  auto text = log.text();
  CHECK(count(text,
              "removed 3 entries of finished or moved interactions from 1 streams (1 of "
              "them added again") == 1);
  CHECK(count(text, "left 1 entries of other producers") == 1);
}

TEST_CASE(
    "a sweep cut short by Redis refusing a stream is done again at the next connection, and the "
    "mark stays behind until it went through") {
  TempDir dir;
  RedisServer redis;
  LogCapture log("relay");
  const std::vector<std::string> everything{"ACL", "SETUSER", "relay", "on",
                                            ">pw", "~*",      "&*",    "+@all"};
  REQUIRE(redis.cmd(everything) == "OK");
  auto cfg = test_config(dir, redis.port());
  cfg.redis.username = "relay";
  cfg.redis.password = "pw";
  cfg.routing.rules.push_back(text_rule("vip", "vip", "normal", "vip"));
  App app(cfg);
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  auto g0 = post(port, "g0");
  auto v0 = post(port, "v0", "vip");
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == Ids{g0}; }));
  REQUIRE(eventually([&] { return ids_in(redis, kVip) == Ids{v0}; }));
  CHECK(redis.cmd({"SAVE"}) == "OK");
  Agent alice(port, "alice-token");
  REQUIRE(alice.claim("general") == g0);
  REQUIRE(alice.ack(g0) == 200);
  REQUIRE(alice.claim("vip") == v0);
  REQUIRE(alice.ack(v0) == 200);
  auto n0 = post(port, "n0");
  auto db = dir.file("switchboard.db");
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == Ids{n0}; }));
  REQUIRE(eventually([&] {
    return outbox_rows(db) == 0 && state_of(db, g0) == "done general:normal" &&
           state_of(db, v0) == "done vip:normal";
  }));

  redis.stop();
  redis.start();  // g0 and v0 back, mark 2; the ACL user is gone with the restart
  // The relay may read general's streams but only make vip's groups: general (swept first, in
  // key order) is swept, then reading vip's stream is refused, and Redis as a whole counts as
  // failed (as it does for the projection: tests/relay/reproject_test.cpp).
  REQUIRE(redis.cmd({"ACL", "SETUSER", "relay", "on", ">pw", "~sb:q:general:*", "~sb:q:billing:*",
                     "~sb:relayed:*", "~sb:relay:*", "~sb:projected", "~sb:db", "~sb:held", "&*",
                     "+@all", "(~sb:q:vip:* +xgroup)"}) == "OK");
  REQUIRE(eventually([&] { return count(log.text(), "NOPERM") >= 2; }, std::chrono::seconds(20)));
  CHECK(ids_in(redis, kGeneral).empty());  // g0 swept; n0 waits for the re-projection
  CHECK(ids_in(redis, kVip) == Ids{v0});
  CHECK(redis.cmd({"GET", "sb:projected"}) == "2");  // still behind: the loss is found again
  CHECK(counted(port, "switchboard_reconciled_entries_total", 1));  // g0 once, however often
  CHECK(log.text().find("swept") == std::string::npos);

  REQUIRE(redis.cmd({"ACL", "SETUSER", "relay", "~sb:q:vip:*"}) == "OK");
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == Ids{n0}; }, std::chrono::seconds(15)));
  CHECK(ids_in(redis, kVip).empty());
  CHECK(counted(port, "switchboard_reconciled_entries_total", 2));
  CHECK(eventually([&] { return redis.cmd({"GET", "sb:projected"}) == "3"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kGeneral) == Ids{n0});
  auto text = log.text();
  CHECK(count(text, "swept") == 1);
  CHECK(count(text, "removed 2 entries of finished or moved interactions from 2 streams") == 1);
}

}  // namespace sweep_test
