// switchboard_outbox_pending counts the outbox rows not yet in Redis, right from the start: also
// while Redis is down at start-up and rows left from the last run (held back) sit below a range
// of rows already delivered and deleted.
#include <doctest/doctest.h>

#include <string>
#include <thread>

#include "tests/relay/relay_daemon.hpp"

using namespace sb;
using namespace sb::test;

namespace pending_test {
namespace {

bool shows_pending(std::uint16_t port, long long n) {
  return eventually([&] { return counted(port, "switchboard_outbox_pending", n); });
}

}  // namespace

TEST_CASE(
    "the pending count is right at a start with Redis down, rows held in the last run lying "
    "before delivered ones") {
  TempDir dir;
  RedisServer redis;
  auto db = dir.file("switchboard.db");
  {
    App app(billing_config(dir, redis.port()));
    app.start();
    auto port = app.port();
    REQUIRE(eventually([&] { return HttpClient(port).request("GET", "/readyz").status == 200; }));
    redis.cmd({"SET", kBilling, "x"});  // billing's rows are held in the outbox
    post(port, "b0", "refund");
    for (int i = 0; i < 5; ++i) {
      post(port, "g" + std::to_string(i), "hello");
    }
    post(port, "b1", "refund");
    post(port, "g5", "hello");
    REQUIRE(eventually([&] { return redis.xlen("sb:q:general:normal") == 6; }));
    REQUIRE(shows_pending(port, 2));
    app.stop();
  }
  REQUIRE(outbox_rows(db) == 2);  // seq 1 and 7; 2-6 and 8 delivered and deleted
  redis.stop();

  App app(billing_config(dir, redis.port()));
  app.start();
  auto port = app.port();
  CHECK(shows_pending(port, 2));
  for (int i = 0; i < 3; ++i) {
    post(port, "h" + std::to_string(i), "hello");
  }
  CHECK(shows_pending(port, 5));
  CHECK(outbox_rows(db) == 5);
  redis.start();  // empty: the key is a stream again, and everything goes in
  CHECK(shows_pending(port, 0));
  CHECK(eventually([&] { return outbox_rows(db) == 0; }));
}

// The relay's lag in seconds: the age of the oldest row not in Redis, held rows included, and 0
// once none waits.
TEST_CASE("switchboard_outbox_oldest_age_seconds is the age of the oldest row not yet in Redis") {
  TempDir dir;
  RedisServer redis;
  App app(billing_config(dir, redis.port()));
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return ready(port); }));
  auto age = [&] {
    auto text = metrics(port);
    auto at = text.find("\nswitchboard_outbox_oldest_age_seconds ");
    REQUIRE(at != std::string::npos);
    return std::stod(text.substr(at + 39));
  };
  CHECK(age() == 0.0);
  post(port, "g0");
  REQUIRE(eventually([&] { return redis.xlen(kGeneral) == 1; }));
  CHECK(age() == 0.0);
  redis.cmd({"SET", kBilling, "x"});  // billing's row is held in the outbox
  post(port, "b0", "refund");
  REQUIRE(eventually([&] {
    return counted(port, "switchboard_relay_held_rows{stream=\"" + kBilling + "\"}", 1);
  }));
  post(port, "g1");
  REQUIRE(eventually([&] { return redis.xlen(kGeneral) == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  CHECK(age() >= 1.2);  // the held row's
  CHECK(age() < 60.0);
  redis.cmd({"DEL", kBilling});  // repaired: the held row goes in at its next retry
  CHECK(eventually([&] { return age() == 0.0; }, std::chrono::seconds(20)));
  CHECK(redis.xlen(kBilling) == 1);
}

}  // namespace pending_test
