// The relay's guard (relay/guard.cpp): a Redis that projects another database, or one ahead of
// this database (a backup restored without clearing Redis), gets nothing from the relay and
// /readyz says why, until the operator clears the prefix's keys. A Redis of a switchboard from
// before the database id (no sb:db) whose mark fits is adopted. Real redis-server, whole daemon.
#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <thread>

#include "tests/relay/relay_daemon.hpp"

using namespace sb;
using namespace sb::test;
namespace fs = std::filesystem;

namespace guard_test {
namespace {

HttpResponse readyz(std::uint16_t port) {
  return HttpClient(port).request("GET", "/readyz");
}

// /readyz answers 503 with the error `reason` (not redis_unavailable, before the connection).
bool held_for(std::uint16_t port, const std::string& reason) {
  auto r = readyz(port);
  return r.status == 503 && r.body.find("\"" + reason + "\"") != std::string::npos;
}

std::string db_id(const std::string& db_path) {
  storage::Db db(db_path, true);
  auto st = db.prepare("SELECT db_id FROM relay_state");
  REQUIRE(st.step());
  return st.text(0);
}

}  // namespace

TEST_CASE(
    "a backup restored without clearing Redis holds the relay: no entry is added twice, "
    "/readyz answers 503 redis_ahead until the keys are cleared") {
  TempDir dir;
  RedisServer redis;
  LogCapture log("relay");
  auto cfg = test_config(dir, redis.port());
  auto db = dir.file("switchboard.db");
  auto backup = dir.file("backup.db");
  std::vector<std::string> ids;
  {
    App app(cfg);
    app.start();
    auto port = app.port();
    REQUIRE(eventually([&] { return ready(port); }));
    ids.push_back(post(port, "r0"));
    ids.push_back(post(port, "r1"));
    REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
    // Taken under load: three rows still in the outbox (Redis refuses writes for a while).
    REQUIRE(redis.cmd({"CLIENT", "PAUSE", "4000", "WRITE"}) == "OK");
    for (int i = 2; i < 5; ++i) {
      ids.push_back(post(port, "r" + std::to_string(i)));
    }
    {
      storage::Db src(db, true);
      src.exec("VACUUM INTO '" + backup + "'");
    }
    REQUIRE(redis.cmd({"CLIENT", "UNPAUSE"}) == "OK");
    REQUIRE(outbox_rows(backup) == 3);
    ids.push_back(post(port, "r5"));
    ids.push_back(post(port, "r6"));
    REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
    app.stop();
  }
  // Restored (README: Backup and restore, steps 1 and 2), Redis left as it was.
  fs::copy_file(backup, db, fs::copy_options::overwrite_existing);
  fs::remove(db + "-wal");
  fs::remove(db + "-shm");
  App app(cfg);
  app.start();
  auto port = app.port();
  REQUIRE(eventually([&] { return held_for(port, "redis_ahead"); }));
  auto r = readyz(port);
  CHECK(r.body.find("past the last outbox seq this database ever handed out (5)") !=
        std::string::npos);
  // Looked at again every second, added nothing: the three rows pending at the backup are in
  // Redis already.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  CHECK(ids_in(redis, kGeneral) == ids);
  CHECK(outbox_rows(db) == 3);
  CHECK(held_for(port, "redis_ahead"));
  CHECK(count(log.text(), "the relay holds") == 1);

  // Step 3 done late: the open interactions of the restored database come back, once each.
  REQUIRE(redis.cmd({"FLUSHDB"}) == "OK");
  std::vector<std::string> restored(ids.begin(), ids.begin() + 5);
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == restored; }));
  CHECK(eventually([&] { return ready(port); }));
  CHECK(eventually([&] { return outbox_rows(db) == 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kGeneral) == restored);
  CHECK(redis.cmd({"GET", "sb:db"}) == db_id(db));
  CHECK(count(log.text(), "projects this database again") == 1);
}

TEST_CASE("a second database on the same prefix is held: redis_foreign, nothing of it in Redis") {
  TempDir prod_dir, staging_dir;
  RedisServer redis;
  LogCapture log("relay");
  App prod(test_config(prod_dir, redis.port()));
  prod.start();
  REQUIRE(eventually([&] { return ready(prod.port()); }));
  std::vector<std::string> ids{post(prod.port(), "p0"), post(prod.port(), "p1")};
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));

  auto staging_db = staging_dir.file("switchboard.db");
  App staging(test_config(staging_dir, redis.port()));
  staging.start();
  auto port = staging.port();
  REQUIRE(eventually([&] { return held_for(port, "redis_foreign"); }));
  auto r = readyz(port);
  CHECK(r.body.find("sb:db names database " + db_id(prod_dir.file("switchboard.db"))) !=
        std::string::npos);
  for (int i = 0; i < 3; ++i) {
    post(port, "s" + std::to_string(i));  // committed (202), kept in its outbox
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(outbox_rows(staging_db) == 3);
  CHECK(ids_in(redis, kGeneral) == ids);
  CHECK(held_for(port, "redis_foreign"));
  CHECK(count(log.text(), "another database uses the prefix sb") == 1);
  // Production goes on.
  CHECK(ready(prod.port()));
  ids.push_back(post(prod.port(), "p2"));
  CHECK(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  staging.stop();
  prod.stop();
}

TEST_CASE("a Redis from before the database id is adopted when its mark fits the database") {
  TempDir dir;
  RedisServer redis;
  LogCapture log("relay");
  auto cfg = test_config(dir, redis.port());
  std::vector<std::string> ids;
  {
    App app(cfg);
    app.start();
    REQUIRE(eventually([&] { return ready(app.port()); }));
    for (int i = 0; i < 3; ++i) {
      ids.push_back(post(app.port(), "u" + std::to_string(i)));
    }
    REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
    app.stop();
  }
  CHECK(redis.cmd({"DEL", "sb:db"}) == "1");  // as an older switchboard left it
  App app(cfg);
  app.start();
  REQUIRE(eventually([&] { return ready(app.port()); }));
  CHECK(eventually([&] {
    return redis.cmd({"GET", "sb:db"}) == db_id(dir.file("switchboard.db"));
  }));
  ids.push_back(post(app.port(), "u3"));
  REQUIRE(eventually([&] { return ids_in(redis, kGeneral) == ids; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(ids_in(redis, kGeneral) == ids);
  CHECK(log.lines_with("the relay holds").empty());
  CHECK(log.lines_with("lost queue entries").empty());
}

}  // namespace guard_test
