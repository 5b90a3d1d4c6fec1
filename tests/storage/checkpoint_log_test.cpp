// A checkpoint that keeps failing (a full disk) is logged once, then at most once a minute with
// the count, and once more when a checkpoint goes through again: not every 500 ms. The full disk
// is a VFS over SQLite's own whose writes to the database file answer SQLITE_FULL while told to:
// in WAL mode only checkpoints write there, so commits go on as they do on a full disk whose WAL
// still has room.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <future>
#include <thread>

#include "storage/sqlite.hpp"
#include "storage/writer.hpp"
#include "tests/support/harness.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;

namespace checkpoint_log_test {
namespace {

std::atomic<bool> disk_full{false};
sqlite3_vfs* real_vfs = nullptr;
const sqlite3_io_methods* real_methods = nullptr;
sqlite3_io_methods full_methods;
sqlite3_vfs full_vfs;

int full_write(sqlite3_file* f, const void* data, int n, sqlite3_int64 offset) {
  if (disk_full.load()) {
    return SQLITE_FULL;
  }
  return real_methods->xWrite(f, data, n, offset);
}

// SQLite's own file, with its methods but xWrite for the database file (not the WAL).
int full_open(sqlite3_vfs*, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  int rc = real_vfs->xOpen(real_vfs, name, f, flags, out_flags);
  if (rc == SQLITE_OK && (flags & SQLITE_OPEN_MAIN_DB) != 0 && f->pMethods != nullptr) {
    real_methods = f->pMethods;
    full_methods = *f->pMethods;
    full_methods.xWrite = full_write;
    f->pMethods = &full_methods;
  }
  return rc;
}

// The VFS as the default while it lives.
struct FullDisk {
  FullDisk() {
    real_vfs = sqlite3_vfs_find(nullptr);
    full_vfs = *real_vfs;
    full_vfs.zName = "sb-test-full-disk";
    full_vfs.pNext = nullptr;
    full_vfs.xOpen = full_open;
    sqlite3_vfs_register(&full_vfs, 1);
  }
  ~FullDisk() {
    sqlite3_vfs_unregister(&full_vfs);
    sqlite3_vfs_register(real_vfs, 1);
  }
};

}  // namespace

TEST_CASE(
    "a checkpoint failing on a full disk is logged once, not every 500 ms, and its recovery "
    "once") {
  test::TempDir dir;
  std::string path = dir.file("w.db");
  test::LogCapture log("storage");
  FullDisk vfs;
  storage::Writer w(path);
  {
    storage::Db db(path);
    db.exec("CREATE TABLE t(v INTEGER)");
  }
  w.start();
  auto insert = [&w](int v) {
    std::promise<std::string> p;
    w.submit(storage::Job{
        [v](storage::Db& db) { db.prepare("INSERT INTO t(v) VALUES (?1)").bind(1, v).run(); },
        [&p](const std::string& err) { p.set_value(err); }});
    return p.get_future().get();
  };
  REQUIRE(insert(1) == "");
  REQUIRE(test::eventually([&] { return w.durable_commits() >= w.commits(); }));
  disk_full = true;
  REQUIRE(insert(2) == "");  // into the WAL: commits go on
  auto failures = [&] { return log.lines_with("[checkpoint]").size(); };
  REQUIRE(test::eventually([&] { return failures() >= 1; }));
  // Three more attempts at least (one every 500 ms), none of them logged.
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  auto lines = log.lines_with("[checkpoint]");
  CHECK(lines.size() == 1);
  CHECK(lines.front().find("database or disk is full") != std::string::npos);
  CHECK(lines.front().find("at most once a minute") != std::string::npos);
  disk_full = false;
  REQUIRE(test::eventually([&] { return !log.lines_with("checkpoint recovered").empty(); }));
  CHECK(test::eventually([&] { return w.durable_commits() >= w.commits(); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  auto recovered = log.lines_with("checkpoint recovered");
  CHECK(recovered.size() == 1);
  CHECK(log.lines_with("[checkpoint]").size() == 2);
  w.stop();
}

}  // namespace checkpoint_log_test
