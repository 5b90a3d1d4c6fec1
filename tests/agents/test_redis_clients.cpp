// Acceptance 4 of issue 3: a plain Redis client in the `agents` group reads entries with the
// SPEC section 4 fields, and its XACK is honoured by the daemon's queue counts.
#include <signal.h>

#include <doctest/doctest.h>

#include <thread>

#include "agents/redis_exec.hpp"
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
  CHECK(metrics.find("switchboard_queue_depth{queue=\"general\"} 0\n") != std::string::npos);
  CHECK(metrics.find(
            "switchboard_queue_depth_by_priority{queue=\"general\",priority=\"normal\"} 0\n") !=
        std::string::npos);
  // The item redis-cli acknowledged is not the daemon's to finish.
  CHECK(d.act("alice-token", id, "ack").status == 409);
  CHECK(d.act("alice-token", other, "ack").status == 200);
  CHECK(general(d).at("claimed").as_int64() == 0);
}

TEST_CASE("one queue's broken stream key hides only that queue's gauges in /metrics") {
  AgentDaemon d;
  d.ingest("gauge-1", "waits in general");
  d.drained();
  // An operator's mistake on billing, the first queue a scrape asks about: its stream becomes a
  // string, so the stats script fails with WRONGTYPE for billing alone.
  d.redis.cmd({"DEL", "sb:q:billing:normal"});
  CHECK(d.redis.cmd({"SET", "sb:q:billing:normal", "x"}) == "OK");
  auto metrics = d.http->request("GET", "/metrics").body;
  CHECK(metrics.find("switchboard_queue_depth{queue=\"general\"} 1\n") != std::string::npos);
  CHECK(metrics.find(
            "switchboard_queue_depth_by_priority{queue=\"general\",priority=\"normal\"} 1\n") !=
        std::string::npos);
  CHECK(metrics.find("switchboard_queue_claimed{queue=\"vip\"} 0") != std::string::npos);
  CHECK(metrics.find("switchboard_queue_depth{queue=\"billing\"") == std::string::npos);
  CHECK(metrics.find("switchboard_queue_depth_by_priority{queue=\"billing\"") == std::string::npos);
}

// The agents' connection lives on the daemon's io thread (agents/redis_exec.cpp); these are the
// ways Redis can pull it out from under a claim.
TEST_CASE("SCRIPT FLUSH behind the daemon's back: claims load the scripts again and go on") {
  AgentDaemon d;
  std::string id = d.ingest("flush-1", "claimed after a SCRIPT FLUSH");
  d.drained();
  CHECK(d.redis.cmd({"SCRIPT", "FLUSH"}) == "OK");
  auto r = d.claim("alice-token", "general");
  REQUIRE(r.status == 200);
  CHECK(claimed_id(r) == id);
  CHECK(d.act("alice-token", id, "ack").status == 200);
}

TEST_CASE("redis closes the agents' connection (CLIENT KILL): the next claims reconnect") {
  AgentDaemon d;
  std::string id = d.ingest("kill-1", "claimed after CLIENT KILL");
  d.drained();
  CHECK(d.claim("alice-token", "nobody-s-queue").status == 403);
  CHECK(d.claim("alice-token", "general", 0).status == 200);  // the connection is up and used
  CHECK(d.act("alice-token", id, "release").status == 200);
  CHECK(d.redis.cmd({"CLIENT", "KILL", "TYPE", "normal"}) != "0");
  // A claim racing the close may see it (503 naming redis); a later one reconnects. (Bob's: a
  // released item is for someone else.)
  int unavailable = 0;
  std::string got;
  REQUIRE(eventually([&] {
    auto r = d.claim("bob-token", "general");
    if (r.status == 503) {
      ++unavailable;
      CHECK(error_message(r).find("redis") != std::string::npos);
      return false;
    }
    got = r.status == 200 ? claimed_id(r) : "";
    return true;
  }));
  CHECK(got == id);
  CHECK(unavailable <= 1);
}

TEST_CASE("redis refuses the agents' password: claims answer 503 naming AUTH, not the password") {
  // This Redis has no password, so AUTH with one fails ("called without any password
  // configured"), as a wrong password would.
  AgentDaemon d([](config::Config& c) { c.redis.password = "not-the-password"; });
  for (int i = 0; i < 3; ++i) {
    auto r = d.claim("alice-token", "general");
    CHECK(r.status == 503);
    CHECK(error_message(r).find("AUTH failed") != std::string::npos);
    CHECK(r.body.find("not-the-password") == std::string::npos);
  }
}

// A hung Redis (SIGSTOP: the kernel still accepts connections, nothing answers) is the worst case
// for anything that waits for it on the io thread, which serves every HTTP request.
TEST_CASE("redis hung: a /metrics scrape does not hold up ingest") {
  AgentDaemon d;
  d.redis.signal(SIGSTOP);
  HttpClient scraper(d.app->port());
  HttpResponse metrics;
  std::thread scrape([&] { metrics = scraper.request("GET", "/metrics"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the scrape is under way
  auto t0 = std::chrono::steady_clock::now();
  d.ingest("hung-1", "stored while redis hangs");
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  scrape.join();
  d.redis.signal(SIGCONT);
  MESSAGE("ingest during the scrape: " << took.count() << " ms");
  CHECK(took < std::chrono::milliseconds(500));
  CHECK(metrics.status == 200);
  CHECK(metrics.body.find("switchboard_outbox_pending") != std::string::npos);
}

// Replies are built as RValues by hiredis's reader itself (agents/redis_exec.cpp): every shape a
// script can return, nested.
TEST_CASE("every Redis reply shape arrives as an RValue") {
  RedisServer redis;
  config::Redis cfg;
  cfg.host = "127.0.0.1";
  cfg.port = redis.port();
  const std::string script = R"lua(
    return {7, 'text', false, {}, {'a', {'b', {3}}}, redis.status_reply('FINE'),
            redis.error_reply('ERR inner'), string.rep('x', 70000)}
  )lua";
  boost::asio::io_context io;
  agents::RedisExec exec(io, cfg, {script, "return redis.error_reply('ERR top')"}, {});
  auto check = [](const agents::RValue& v) {
    REQUIRE(v.type == agents::RValue::Type::array);
    REQUIRE(v.elements.size() == 8);
    CHECK(v.int_at(0) == 7);
    CHECK(v.at(1).type == agents::RValue::Type::string);
    CHECK(v.str_at(1) == "text");
    CHECK(v.at(2).type == agents::RValue::Type::nil);  // Lua false: a nil bulk string
    CHECK(v.at(3).type == agents::RValue::Type::array);
    CHECK(v.at(3).elements.empty());
    CHECK(v.at(4).str_at(0) == "a");
    CHECK(v.at(4).at(1).str_at(0) == "b");
    CHECK(v.at(4).at(1).at(1).int_at(0) == 3);
    CHECK(v.str_at(5) == "FINE");
    CHECK(v.at(6).is_error());
    CHECK(v.str_at(6) == "ERR inner");
    CHECK(v.str_at(7) == std::string(70000, 'x'));  // arrives over several reads
  };
  std::vector<agents::RValue> got;
  exec.start();
  for (int script_index : {0, 1, 0}) {
    exec.eval(script_index, {}, {}, [&](agents::RValue v) { got.push_back(std::move(v)); });
  }
  for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
       got.size() < 3 && std::chrono::steady_clock::now() < until;) {
    io.run_one_for(std::chrono::milliseconds(100));
  }
  REQUIRE(got.size() == 3);
  check(got[0]);
  CHECK(got[1].is_error());
  CHECK(got[1].str.find("ERR top") != std::string::npos);
  check(got[2]);
  exec.stop();
}
