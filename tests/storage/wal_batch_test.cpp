// The WAL-batching VFS (storage/wal_batch.cpp): a commit's frames reach the file in a few writes,
// all of them before COMMIT returns, and a write that fails fails the commit and stores nothing.
#include <doctest/doctest.h>
#include <sqlite3.h>
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
// Runs `fn` in a child process; true when it exited with status 0 (an abort is a failure).
template <typename Fn>
bool in_child(Fn fn) {
  pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    bool ok = false;
    try {
      ok = fn();
    } catch (...) {
      // Never back into the test runner from the child.
    }
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
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
  REQUIRE(in_child([&] {
    // No close, no checkpoint, no destructors: the WAL holds whatever the commit wrote.
    auto* db = new Db(path);
    db->exec("PRAGMA wal_autocheckpoint=0");
    insert_pages(*db, 0, 200);
    return true;
  }));
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

namespace {
// Raw connections: a second writer on SQLite's own "unix" VFS stands for another process (the
// CLI), and locking_mode must be set before WAL mode, which Db does on open.
sqlite3* open_raw(const std::string& path, const char* vfs) {
  Db init(":memory:");  // the process-wide set-up (page cache, this VFS) done first
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs) ==
          SQLITE_OK);
  return db;
}
int exec(sqlite3* db, const char* sql) {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
}
long long scalar(sqlite3* db, const char* sql) {
  sqlite3_stmt* st = nullptr;
  long long v = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  return v;
}
}  // namespace

TEST_CASE("frames a rolled-back transaction spilled never overwrite another writer's commit") {
  // The spill writes frames without a commit; ROLLBACK leaves them buffered. They must reach
  // the file before the write lock is released, not later over the next writer's frames.
  test::TempDir dir;
  std::string path = dir.file("r.db");
  sqlite3* a = open_raw(path, nullptr);
  REQUIRE(exec(a,
               "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
               "PRAGMA wal_autocheckpoint=0; CREATE TABLE t(v INTEGER, pad BLOB); "
               "INSERT INTO t VALUES (0, zeroblob(3000))") == SQLITE_OK);
  sqlite3* b = open_raw(path, "unix");
  REQUIRE(exec(a, "PRAGMA wal_checkpoint(TRUNCATE); PRAGMA cache_size=20") == SQLITE_OK);
  REQUIRE(exec(a,
               "BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c "
               "WHERE i<200) INSERT INTO t SELECT 1000+i, randomblob(3000) FROM c") ==
          SQLITE_OK);  // more than 20 pages: spilled into the WAL
  REQUIRE(exec(a, "ROLLBACK") == SQLITE_OK);
  REQUIRE(exec(b,
               "BEGIN IMMEDIATE; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 "
               "FROM c WHERE i<20) INSERT INTO t SELECT i, zeroblob(3000) FROM c; COMMIT") ==
          SQLITE_OK);
  CHECK(scalar(a, "SELECT count(*) FROM t") == 21);  // a's next read after b's commit
  sqlite3_close(a);
  sqlite3_close(b);
  sqlite3* c = open_raw(path, "unix");
  CHECK(scalar(c, "SELECT count(*) FROM t") == 21);
  CHECK(scalar(c, "SELECT sum(v) FROM t") == 210);
  sqlite3_close(c);
}

TEST_CASE(
    "a commit whose frame checksums SQLite rewrites survives a crash, in exclusive mode too") {
  // A page spilled and changed again in the same transaction makes SQLite write frames without
  // checksums and then rewrite each header after reading it back (walRewriteChecksums); the
  // commit frame's header is the last of those writes.
  for (bool exclusive : {false, true}) {
    CAPTURE(exclusive);
    test::TempDir dir;
    std::string path = dir.file("x.db");
    Db init(":memory:");
    REQUIRE(in_child([&] {  // COMMIT returns, then _exit: no close, no checkpoint
      sqlite3* db = nullptr;
      sqlite3_open(path.c_str(), &db);
      return (!exclusive || exec(db, "PRAGMA locking_mode=EXCLUSIVE") == SQLITE_OK) &&
             exec(db,
                  "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                  "PRAGMA wal_autocheckpoint=0; CREATE TABLE t(v INTEGER, pad BLOB); "
                  "PRAGMA cache_size=20") == SQLITE_OK &&
             exec(db,
                  "BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c "
                  "WHERE i<100) INSERT INTO t SELECT i, randomblob(3000) FROM c; "
                  "UPDATE t SET v=v+1000; COMMIT") == SQLITE_OK;
    }));
    sqlite3* c = open_raw(path, "unix");
    CHECK(scalar(c, "SELECT count(*) FROM t") == 100);
    CHECK(scalar(c, "SELECT min(v) FROM t") == 1001);
    sqlite3_close(c);
  }
}

TEST_CASE("after crash recovery, a one-page commit whose write fails returns the error") {
  // Recovery reads the WAL up to the first invalid frame; a restarted WAL keeps old frames past
  // its end, so the next commit's frame goes where recovery last read. That commit must still
  // end in a write whose error is the commit's (before: buffered to the barrier, then abort).
  test::TempDir dir;
  std::string a = dir.file("a.db"), b = dir.file("b.db");
  {
    sqlite3* db = open_raw(a, nullptr);
    REQUIRE(exec(db,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=0; "
                 "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER, pad BLOB); "
                 "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<300) "
                 "INSERT INTO t SELECT i, 0, randomblob(3000) FROM c") == SQLITE_OK);
    REQUIRE(sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr) ==
            SQLITE_OK);
    REQUIRE(exec(db, "UPDATE t SET v=1 WHERE id=1") == SQLITE_OK);  // one frame, old ones after
    // The files as a crash would leave them (no -shm: the next opener recovers).
    std::filesystem::copy_file(a, b);
    std::filesystem::copy_file(a + "-wal", b + "-wal");
    sqlite3_close(db);
  }
  CHECK(in_child([&] {
    sqlite3* db = nullptr;
    sqlite3_open(b.c_str(), &db);
    exec(db, "PRAGMA synchronous=NORMAL");  // the daemon's: no sync at commit to flush early
    storage::wal_batch_fail_next_flush();
    int rc = exec(db, "UPDATE t SET v=2 WHERE id=250");  // recovery, then a one-page commit
    return (rc & 0xff) == SQLITE_IOERR && scalar(db, "SELECT v FROM t WHERE id=250") == 0;
  }));
  sqlite3* db = open_raw(b, "unix");
  CHECK(scalar(db, "SELECT v FROM t WHERE id=250") == 0);
  CHECK(scalar(db, "SELECT v FROM t WHERE id=1") == 1);
  sqlite3_close(db);
}

TEST_CASE(
    "a commit whose last page meets the 4 MiB buffer limit survives a crash in exclusive mode") {
  // Exclusive mode has no shared-memory barrier: only the commit frame's own write puts the
  // commit in the file. 1,015 rows of 3 KB fill the buffer just as the commit page arrives.
  test::TempDir dir;
  std::string path = dir.file("e.db");
  Db init(":memory:");
  for (int rows : {1014, 1015, 1016}) {
    CAPTURE(rows);
    std::filesystem::remove(path);
    std::filesystem::remove(path + "-wal");
    CHECK(in_child([&] {
      sqlite3* db = nullptr;
      sqlite3_open(path.c_str(), &db);
      std::string insert =
          "BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c "
          "WHERE i<" +
          std::to_string(rows) + ") INSERT INTO t SELECT i, randomblob(3000) FROM c; COMMIT";
      return exec(db, "PRAGMA locking_mode=EXCLUSIVE") == SQLITE_OK &&
             exec(db,
                  "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                  "PRAGMA wal_autocheckpoint=0; CREATE TABLE t(v INTEGER, pad BLOB)") ==
                 SQLITE_OK &&
             exec(db, insert.c_str()) == SQLITE_OK;  // then _exit: no close, no checkpoint
    }));
    sqlite3* db = open_raw(path, "unix");
    CHECK(scalar(db, "SELECT count(*) FROM t") == rows);
    sqlite3_close(db);
  }
}
