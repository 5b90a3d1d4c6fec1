// The WAL-batching VFS (storage/wal_batch.cpp): a commit's frames reach the file in a few writes,
// all of them before COMMIT returns, and a write that fails fails the commit and stores nothing.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "storage/sqlite.hpp"
#include "storage/wal_batch.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using storage::Db;

namespace {
long long count_rows(Db& db) {
  auto st = db.prepare("SELECT count(*) FROM t");
  st.step();
  return st.int64(0);
}
void insert_pages(Db& db, int from, int n) {
  auto st = db.prepare("INSERT INTO t(v, pad) VALUES (?1, randomblob(3000))");
  db.exec("BEGIN IMMEDIATE");
  for (int i = from; i < from + n; ++i) {
    st.bind(1, i).run();
  }
  db.exec("COMMIT");
}
}  // namespace

TEST_CASE("a commit's WAL frames reach the file in a few writes, before COMMIT returns") {
  test::TempDir dir;
  std::string path = dir.file("b.db");
  Db db(path);
  db.exec("PRAGMA wal_autocheckpoint=0");
  db.exec("CREATE TABLE t(v INTEGER, pad BLOB)");
  Db reader(path, true);
  auto before = storage::wal_batch_stats();
  auto wal_before = std::filesystem::file_size(path + "-wal");
  insert_pages(db, 0, 300);  // about 300 pages: 600 writes asked of the VFS
  auto after = storage::wal_batch_stats();
  CHECK(after.writes - before.writes >= 600);
  CHECK(after.flushes - before.flushes <= 12);  // 1.2 MiB in writes of up to 120 KiB
  // Another connection sees the whole commit at once, and the bytes are in the file.
  CHECK(count_rows(reader) == 300);
  CHECK(std::filesystem::file_size(path + "-wal") >= wal_before + 300 * 4096);
  auto check = db.prepare("PRAGMA integrity_check");
  REQUIRE(check.step());
  CHECK(check.text(0) == "ok");
}

TEST_CASE("a process that dies right after COMMIT keeps the commit") {
  test::TempDir dir;
  std::string path = dir.file("c.db");
  {
    Db db(path);
    db.exec("CREATE TABLE t(v INTEGER, pad BLOB)");
  }
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // No close, no checkpoint, no destructors: the WAL holds whatever the commit wrote.
    auto* db = new Db(path);
    db->exec("PRAGMA wal_autocheckpoint=0");
    insert_pages(*db, 0, 200);
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  Db db(path);
  CHECK(count_rows(db) == 200);
}

TEST_CASE(
    "a WAL write that fails fails the commit, stores nothing of it, and the next commit works") {
  test::TempDir dir;
  std::string path = dir.file("f.db");
  Db db(path);
  db.exec("CREATE TABLE t(v INTEGER, pad BLOB)");
  insert_pages(db, 0, 10);
  storage::wal_batch_fail_next_flush();  // as a full disk at the commit's write
  CHECK_THROWS(insert_pages(db, 10, 50));
  try {
    db.exec("ROLLBACK");
  } catch (...) {
    // SQLite may have rolled back already.
  }
  CHECK(count_rows(db) == 10);
  insert_pages(db, 100, 20);
  CHECK(count_rows(db) == 30);
  Db reopened(path, true);
  CHECK(count_rows(reopened) == 30);
  auto check = reopened.prepare("PRAGMA integrity_check");
  REQUIRE(check.step());
  CHECK(check.text(0) == "ok");
}
