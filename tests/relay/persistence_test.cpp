// A Redis that restarts without its append-only file loses what it did since its last snapshot
// (the relay queues the open interactions again, but claims, acks and transfers are undone): the
// relay says so when it first connects. One that may evict keys: said at connection and when a
// CONFIG SET on the live Redis makes it so.
#include <doctest/doctest.h>

#include "daemon/app.hpp"
#include "relay/relay.hpp"
#include "storage/writer.hpp"
#include "tests/support/harness.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;

namespace {

// What the relay logs from its start until it has connected to `redis` and stopped.
std::string relay_log(RedisServer& redis) {
  TempDir dir;
  auto cfg = test_config(dir, redis.port());
  storage::Writer writer(cfg.storage.path);
  LogCapture log("relay");
  {
    Relay relay(cfg.redis, writer, {"general"});
    relay.start();
    CHECK(eventually([&] { return relay.redis_ok(); }));
    relay.stop();
  }
  return log.text();
}

}  // namespace

TEST_CASE("a Redis without appendonly is named in a warning, one with it is not") {
  RedisServer redis;  // started by the harness with --appendonly no
  CHECK(relay_log(redis).find("runs without its append-only file") != std::string::npos);
  CHECK(redis.cmd({"CONFIG", "SET", "appendonly", "yes"}) == "OK");
  CHECK(relay_log(redis).find("append-only") == std::string::npos);
}

TEST_CASE("allkeys-lru is named in a warning, noeviction is not") {
  RedisServer redis;
  CHECK(redis.cmd({"CONFIG", "SET", "maxmemory", "1gb"}) == "OK");
  CHECK(redis.cmd({"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}) == "OK");
  auto text = relay_log(redis);
  CHECK(text.find("may evict keys: maxmemory is 1073741824 bytes with maxmemory-policy "
                  "allkeys-lru") != std::string::npos);
  CHECK(text.find("maxmemory-policy noeviction") != std::string::npos);  // the fix, named
  CHECK(redis.cmd({"CONFIG", "SET", "maxmemory-policy", "noeviction"}) == "OK");
  CHECK(relay_log(redis).find("may evict") == std::string::npos);
  // Without a limit no policy evicts anything.
  CHECK(redis.cmd({"CONFIG", "SET", "maxmemory-policy", "volatile-ttl"}) == "OK");
  CHECK(redis.cmd({"CONFIG", "SET", "maxmemory", "0"}) == "OK");
  CHECK(relay_log(redis).find("may evict") == std::string::npos);
}

TEST_CASE("a maxmemory-policy changed on a live Redis reaches the gauge without a reconnection") {
  // The policy was looked at when the relay connected only: a CONFIG SET on a Redis the relay
  // stays connected to (for weeks) was not seen until the next restart of either.
  RedisServer redis;
  TempDir dir;
  LogCapture log("relay");
  App app(test_config(dir, redis.port()));
  app.relay().set_eviction_check_every(std::chrono::milliseconds(200));
  app.start();
  auto gauge = [&](int v) {
    HttpClient c(app.port());
    return c.request("GET", "/metrics")
               .body.find("\nswitchboard_redis_eviction_possible " + std::to_string(v) + "\n") !=
           std::string::npos;
  };
  REQUIRE(eventually([&] { return app.relay().redis_ok(); }));
  CHECK(gauge(0));
  CHECK(redis.cmd({"CONFIG", "SET", "maxmemory", "1gb"}) == "OK");
  CHECK(redis.cmd({"CONFIG", "SET", "maxmemory-policy", "allkeys-lru"}) == "OK");
  CHECK(eventually([&] { return gauge(1); }, std::chrono::seconds(5)));
  CHECK(log.text().find("may evict keys: maxmemory is 1073741824 bytes with maxmemory-policy "
                        "allkeys-lru") != std::string::npos);
  CHECK(redis.cmd({"CONFIG", "SET", "maxmemory-policy", "noeviction"}) == "OK");
  CHECK(eventually([&] { return gauge(0); }, std::chrono::seconds(5)));
  CHECK(log.text().find("cannot evict keys any more") != std::string::npos);
  // Seen on the same connection: the relay connected once.
  CHECK(log.text().find("connected") == log.text().rfind("connected"));
  app.stop();
}
