// The relay's outbox read failing for a while (the database file gone from its path, an I/O
// error): retried with back-off and logged once, not once per commit that wakes the relay.
#include <doctest/doctest.h>
#include <chrono>
#include <cstdio>
#include <thread>

#include "relay/relay.hpp"
#include "storage/writer.hpp"
#include "tests/support/harness.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;

TEST_CASE("an outbox read that keeps failing is retried with back-off and logged once") {
  TempDir dir;
  RedisServer redis;
  auto cfg = test_config(dir, redis.port());
  storage::Writer writer(cfg.storage.path);  // the schema; the writer is not started
  // The database file gone from its path (a volume unmounted, say): every open fails.
  const std::string moved = cfg.storage.path + ".away";
  REQUIRE(std::rename(cfg.storage.path.c_str(), moved.c_str()) == 0);

  LogCapture log("relay");
  {
    Relay relay(cfg.redis, writer, {"general"});
    relay.start();
    // Every commit wakes the relay: a thousand of them in a second.
    for (int i = 0; i < 1000; ++i) {
      relay.wake();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(std::rename(moved.c_str(), cfg.storage.path.c_str()) == 0);
    REQUIRE(
        eventually([&] { return log.text().find("outbox readable again") != std::string::npos; }));
    relay.stop();
  }
  std::string text = log.text();
  CHECK(count(text, "outbox read failed") == 1);
}
