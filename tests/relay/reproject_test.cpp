// Redis losing entries it had taken (FLUSHALL, a restart from an older snapshot without the
// append-only file): the relay finds its projection mark behind and adds the open interactions
// again, each once, in order, into their current queues; finished ones stay out. Without a loss
// a reconnect adds nothing. And within one pipelined pass, a call Redis refused is not overtaken
// by the next call (memory freed in between). A real redis-server and the whole daemon.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <thread>

#include "tests/relay/relay_daemon.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;

namespace reproject_test {
namespace {

bool reprojected(std::uint16_t port, int n) {
  return counted(port, "switchboard_reprojected_total", n);
}

}  // namespace

TEST_CASE(
    "FLUSHALL after interactions were relayed: each open one is back exactly once, in its "
    "current queue, and finished ones are not") {
  TempDir dir;
  RedisServer redis;
  LogCapture log("relay");
  App app(test_config(dir, redis.port()));
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    ids.push_back(post(port, "f" + std::to_string(i)));
  }
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  // ids[0] finished, ids[1] claimed (its claim goes with Redis), ids[2] moved to billing/high.
  HttpClient agent(port);
  auto claim = [&] {
    auto r = agent.post_json("/v1/agent/claim", R"({"queue":"general"})", "alice-token");
    REQUIRE(r.status == 200);
    return std::string(json::parse(r.body).at("interaction").at("id").as_string());
  };
  REQUIRE(claim() == ids[0]);
  REQUIRE(
      agent.post_json("/v1/agent/interactions/" + ids[0] + "/ack", "{}", "alice-token").status ==
      200);
  REQUIRE(claim() == ids[1]);
  REQUIRE(claim() == ids[2]);
  REQUIRE(agent
              .post_json("/v1/agent/interactions/" + ids[2] + "/transfer",
                         R"({"queue":"billing","priority":"high"})", "alice-token")
              .status == 200);
  auto db = dir.file("switchboard.db");
  REQUIRE(eventually([&] {
    return state_of(db, ids[0]) == "done general:normal" &&
           state_of(db, ids[1]) == "claimed general:normal" &&
           state_of(db, ids[2]) == "queued billing:high";
  }));
  CHECK(reprojected(port, 0));

  CHECK(redis.cmd({"FLUSHALL"}) == "OK");
  std::vector<std::string> open{ids[1], ids[3], ids[4], ids[5]};
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == open; }));
  REQUIRE(eventually([&] { return ids_in(redis, "sb:q:billing:high").size() == 1; }));
  CHECK(ids_in(redis, "sb:q:billing:high") == std::vector<std::string>{ids[2]});
  CHECK(eventually([&] { return reprojected(port, 5); }));
  // Claimable again (the groups are made again), the claimed one first: it is the oldest.
  CHECK(claim() == ids[1]);
  // New work goes behind them, and nothing arrives twice.
  auto later = post(port, "f-later");
  open.push_back(later);
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == open; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kGeneral) == open);
  CHECK(ids_in(redis, "sb:q:billing:high").size() == 1);
  CHECK(reprojected(port, 5));
  auto text = log.text();
  CHECK(count(text, "lost queue entries") == 1);
  CHECK(count(text, "re-projected 5 open interactions") == 1);
}

TEST_CASE(
    "Redis restarted from an older snapshot: the entries taken since come back, the earlier "
    "ones are not duplicated") {
  TempDir dir;
  RedisServer redis;
  App app(test_config(dir, redis.port()));
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(post(port, "s" + std::to_string(i)));
  }
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  CHECK(redis.cmd({"SAVE"}) == "OK");  // the snapshot Redis will come back from
  for (int i = 3; i < 70; ++i) {       // more than one script call's worth
    ids.push_back(post(port, "s" + std::to_string(i)));
  }
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  redis.stop();
  redis.start();  // from dump.rdb, without an append-only file
  CHECK(redis.xlen(kGeneral) == 3);
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  CHECK(eventually([&] { return reprojected(port, 67); }));
  ids.push_back(post(port, "s-later"));
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kGeneral) == ids);
  CHECK(reprojected(port, 67));
}

TEST_CASE("a reconnect without a loss re-projects nothing") {
  TempDir dir;
  RedisServer redis;
  LogCapture log("relay");
  App app(test_config(dir, redis.port()));
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(post(port, "n" + std::to_string(i)));
  }
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  // The connections dropped, and Redis restarted with all it had.
  CHECK(redis.cmd({"CLIENT", "KILL", "TYPE", "normal"}) != "0");
  ids.push_back(post(port, "n3"));
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  CHECK(redis.cmd({"SAVE"}) == "OK");
  redis.stop();
  redis.start();
  ids.push_back(post(port, "n4"));
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kGeneral) == ids);
  CHECK(reprojected(port, 0));
  CHECK(log.text().find("lost queue entries") == std::string::npos);
}

TEST_CASE(
    "a call Redis refuses in a pipelined pass is not overtaken by the next call Redis takes") {
  TempDir dir;
  RedisServer redis;
  LogCapture log("relay");
  // A user that may not touch billing's streams, except to make their group: every call
  // carrying a billing row is refused (NOPERM) before it runs, as an OOM would refuse it, while
  // the calls after it would be taken.
  REQUIRE(redis.cmd({"ACL", "SETUSER", "relay", "on", ">pw", "~sb:q:general:*", "~sb:q:vip:*",
                     "~sb:relayed:*", "~sb:relay:*", "~sb:projected", "~sb:db", "~sb:held", "&*",
                     "+@all", "(~sb:q:billing:* +xgroup)"}) == "OK");
  auto cfg = billing_config(dir, redis.port());
  cfg.redis.username = "relay";
  cfg.redis.password = "pw";
  App app(cfg);
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  auto refusals = [&] { return count(log.text(), "NOPERM"); };
  auto b0 = post(port, "b0", "refund");
  REQUIRE(eventually([&] { return refusals() > 0; }));
  std::vector<std::string> general;
  for (int i = 0; i < 100; ++i) {  // the next pass: b0 and 63 of these, then the other 37
    general.push_back(post(port, "g" + std::to_string(i)));
  }
  // Two more refusals: the second pass at least read all 100 behind b0.
  auto seen = refusals();
  REQUIRE(eventually([&] { return refusals() >= seen + 2; }, std::chrono::seconds(20)));
  CHECK(redis.xlen(kGeneral) == 0);  // nothing overtook b0's call
  // Redis takes billing again (memory freed): everything arrives, in order, once.
  REQUIRE(redis.cmd({"ACL", "SETUSER", "relay", "~sb:q:billing:*"}) == "OK");
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == general; }, std::chrono::seconds(15)));
  CHECK(ids_in(redis, "sb:q:billing:normal") == std::vector<std::string>{b0});
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kGeneral) == general);
  CHECK(reprojected(port, 0));
}

TEST_CASE(
    "a held row delivered after Redis's mark passed it comes back after a restore from a "
    "snapshot taken while it was held") {
  TempDir dir;
  RedisServer redis;
  App app(billing_config(dir, redis.port()));
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  redis.cmd({"SET", kBilling, "x"});  // XADD answers WRONGTYPE: billing's rows are held
  auto b0 = post(port, "b0", "refund");
  auto g0 = post(port, "g0", "hello");
  // g0 went in after b0 was refused: Redis's mark passed b0's seq, b0 still in the outbox.
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == std::vector<std::string>{g0}; }));
  CHECK(redis.cmd({"GET", "sb:projected"}) == "2");
  CHECK(redis.cmd({"SAVE"}) == "OK");  // the snapshot Redis will come back from: without b0
  redis.cmd({"DEL", kBilling});        // the repair: the retry delivers b0
  REQUIRE(eventually([&] { return ids_in(redis, kBilling) == std::vector<std::string>{b0}; },
                     std::chrono::seconds(10)));
  REQUIRE(eventually([&] { return outbox_rows(dir.file("switchboard.db")) == 0; }));
  redis.stop();
  redis.start();  // from dump.rdb: mark 2, g0, and billing's broken key again
  CHECK(redis.cmd({"TYPE", kBilling}) == "string");
  redis.cmd({"DEL", kBilling});
  CHECK(eventually([&] { return ids_in(redis, kBilling) == std::vector<std::string>{b0}; },
                   std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kBilling) == std::vector<std::string>{b0});
  CHECK(ids_in(redis, kGeneral) == std::vector<std::string>{g0});
}

TEST_CASE(
    "a re-projected interaction whose stream refuses it is queued again after the database "
    "refused its new outbox row for a while") {
  TempDir dir;
  RedisServer redis;
  LogCapture log("relay");
  App app(billing_config(dir, redis.port()));
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  auto b0 = post(port, "b0", "refund");
  auto g0 = post(port, "g0", "hello");
  REQUIRE(eventually([&] { return ids_in(redis, kBilling) == std::vector<std::string>{b0}; }));
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == std::vector<std::string>{g0}; }));
  auto path = dir.file("switchboard.db");
  REQUIRE(eventually([&] { return outbox_rows(path) == 0; }));
  // The writer fails b0's new outbox row (as a full disk would fail its job).
  storage::Db db(path);
  db.exec("CREATE TRIGGER refuse_b0 BEFORE INSERT ON outbox WHEN NEW.interaction_id = '" + b0 +
          "' BEGIN SELECT RAISE(ABORT, 'injected failure'); END");
  // Redis loses everything, and billing's key comes back broken: the re-projection adds g0,
  // billing refuses b0, which needs a new outbox row.
  CHECK(redis.cmd({"EVAL", "redis.call('FLUSHALL') redis.call('SET', KEYS[1], 'x') return 1", "1",
                   kBilling}) == "1");
  REQUIRE(eventually(
      [&] { return log.text().find("could not be queued again") != std::string::npos; }));
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == std::vector<std::string>{g0}; }));
  db.exec("DROP TRIGGER refuse_b0");
  redis.cmd({"DEL", kBilling});
  CHECK(eventually([&] { return ids_in(redis, kBilling) == std::vector<std::string>{b0}; },
                   std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kBilling) == std::vector<std::string>{b0});
  CHECK(ids_in(redis, kGeneral) == std::vector<std::string>{g0});
}

TEST_CASE(
    "interactions queued before schema 13 are not added twice at the first start after the "
    "upgrade, and come back after a later FLUSHALL") {
  TempDir dir;
  RedisServer redis;
  auto path = dir.file("switchboard.db");
  std::vector<std::string> ids;
  {
    App app(test_config(dir, redis.port()));
    app.start();
    REQUIRE(eventually([&] { return ready(app.port()); }));
    ids.push_back(post(app.port(), "u0"));
    ids.push_back(post(app.port(), "u1"));
    REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
    REQUIRE(eventually([&] { return outbox_rows(path) == 0; }));
    app.stop();
  }
  // As an upgrade from version 12 leaves them: no queued_seq, and a Redis never marked.
  storage::Db(path).exec("UPDATE interactions SET queued_seq = NULL");
  CHECK(redis.cmd({"DEL", "sb:projected"}) == "1");
  LogCapture log("relay");
  App app(test_config(dir, redis.port()));
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  REQUIRE(eventually([&] { return log.text().find("re-projected 0 open") != std::string::npos; }));
  ids.push_back(post(port, "u2"));
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  // Placed before everything queued since, in their order.
  auto placed = [&] {
    storage::Db db(path, true);
    auto st = db.prepare("SELECT count(*) FROM interactions WHERE queued_seq < 0");
    st.step();
    return st.int64(0);
  };
  CHECK(eventually([&] { return placed() == 2; }));
  CHECK(redis.cmd({"FLUSHALL"}) == "OK");
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kGeneral) == ids);
  CHECK(reprojected(port, 3));
}

TEST_CASE("DEL sb:projected with streams intact adds nothing twice") {
  // The mark alone gone (evicted by a maxmemory-policy other than noeviction, an operator's
  // DEL): Redis still holds every entry. The sweep finds them and the re-projection from mark 0
  // leaves them out; a finished interaction's entry (acked since) stays out too.
  TempDir dir;
  RedisServer redis;
  LogCapture log("relay");
  App app(test_config(dir, redis.port()));
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  using Ids = std::vector<std::string>;
  Ids ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(post(port, "m" + std::to_string(i)));
  }
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  HttpClient agent(port);
  auto claim = [&] {
    auto r = agent.post_json("/v1/agent/claim", R"({"queue":"general"})", "alice-token");
    REQUIRE(r.status == 200);
    return std::string(json::parse(r.body).at("interaction").at("id").as_string());
  };
  REQUIRE(claim() == ids[0]);  // claimed: its entry stays, pending
  auto db = dir.file("switchboard.db");
  REQUIRE(eventually([&] { return outbox_rows(db) == 0; }));
  std::string mark = redis.cmd({"GET", "sb:projected"});
  REQUIRE(mark != "(nil)");

  CHECK(redis.cmd({"DEL", "sb:projected"}) == "1");
  // The relay finds the mark gone (its idle check) and raises it again to the database's.
  REQUIRE(eventually(
      [&] {
        return redis.cmd({"GET", "sb:projected"}) == mark;
      },
      std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kGeneral) == ids);
  CHECK(reprojected(port, 0));
  CHECK(count(log.text(), "re-projected 0 open interactions") == 1);
  CHECK(count(log.text(), "4 left out: their entries were still in the streams") == 1);
  // The claimed one is still its holder's, the others are handed out once each.
  CHECK(agent.post_json("/v1/agent/interactions/" + ids[0] + "/ack", "{}", "alice-token").status ==
        200);
  CHECK(claim() == ids[1]);
  CHECK(claim() == ids[2]);
  CHECK(claim() == ids[3]);
  CHECK(agent.post_json("/v1/agent/claim", R"({"queue":"general"})", "alice-token").status == 204);
  // New work goes on as before, once.
  auto later = post(port, "m-later");
  Ids left{ids[1], ids[2], ids[3], later};
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == left; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kGeneral) == left);
}

}  // namespace reproject_test
