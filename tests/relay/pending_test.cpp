// switchboard_outbox_pending counts the outbox rows not yet in Redis, right from the start: also
// while Redis is down at start-up and rows left from the last run (held back) sit below a range
// of rows already delivered and deleted.
#include <doctest/doctest.h>

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

}  // namespace pending_test
