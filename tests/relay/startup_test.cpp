// A Redis the relay cannot use from the start (a wrong password) is logged once, as a working
// connection that fails is: before, the relay said nothing until it had once connected.
#include <doctest/doctest.h>

#include <thread>

#include "tests/relay/relay_daemon.hpp"

using namespace sb;
using namespace sb::test;

namespace startup_test {

TEST_CASE("a Redis refusing the password at start-up is logged once, WRONGPASS named") {
  TempDir dir;
  RedisServer redis;
  LogCapture log("relay");
  REQUIRE(redis.cmd({"ACL", "SETUSER", "relay", "on", ">right", "~*", "&*", "+@all"}) == "OK");
  auto cfg = test_config(dir, redis.port());
  cfg.redis.username = "relay";
  cfg.redis.password = "wrong";
  App app(cfg);
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return !log.lines_with("unavailable").empty(); }));
  // Retried with back-off (100 ms doubling): several attempts in this time, one line.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto lines = log.lines_with("unavailable");
  REQUIRE(lines.size() == 1);
  CHECK(lines.front().find("[redis 127.0.0.1:" + std::to_string(redis.port()) + "] unavailable") !=
        std::string::npos);
  CHECK(lines.front().find("WRONGPASS") != std::string::npos);
  CHECK_FALSE(ready(port));
  // Once the password is right, it connects (and a later loss is logged again).
  REQUIRE(redis.cmd({"ACL", "SETUSER", "relay", ">wrong"}) == "OK");
  CHECK(eventually([&] { return ready(port); }));
  CHECK(log.lines_with("] connected").size() == 1);
}

}  // namespace startup_test
