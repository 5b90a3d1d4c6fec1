// The page-cache wrapper (storage/page_cache.cpp): it may skip SQLite's truncate scan only when
// no page at or beyond the limit can be cached, so no page past the end of a file survives a
// rollback, and a database that grows, rolls back and rebalances stays intact.
#include <doctest/doctest.h>

#include <sqlite3.h>

#include <map>
#include <random>

#include "storage/page_cache.hpp"
#include "storage/sqlite.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using storage::Db;

namespace {
// A cache driven through the installed methods, as the pager drives it.
struct DirectCache {
  const sqlite3_pcache_methods2& m = storage::page_cache_methods();
  sqlite3_pcache* c = nullptr;
  DirectCache() {
    Db open_one(":memory:");  // SQLite initialised, and the wrapper with it
    REQUIRE(static_cast<bool>(m.xCreate));
    c = m.xCreate(4096, 64, 1);
    REQUIRE(c != nullptr);
    m.xCachesize(c, 100);
  }
  ~DirectCache() { m.xDestroy(c); }
  sqlite3_pcache_page* pin(unsigned key) {
    auto* p = m.xFetch(c, key, 2);
    REQUIRE(p != nullptr);
    return p;
  }
  void add(unsigned key) { m.xUnpin(c, pin(key), 0); }
  bool has(unsigned key) {
    auto* p = m.xFetch(c, key, 0);
    if (p) {
      m.xUnpin(c, p, 0);
    }
    return p != nullptr;
  }
  // What B-tree balancing does to order two sibling pages: a swap through the lock-byte page.
  void swap(unsigned a, unsigned b) {
    const unsigned parking = 0x40000000 / 4096 + 1;
    auto* pa = pin(a);
    auto* pb = pin(b);
    m.xRekey(c, pa, a, parking);
    m.xRekey(c, pb, b, a);
    m.xRekey(c, pa, parking, b);
    m.xUnpin(c, pa, 0);
    m.xUnpin(c, pb, 0);
  }
};
}  // namespace

TEST_CASE("the page cache skips a truncate only when no page at or past the limit is cached") {
  DirectCache d;
  for (unsigned k = 1; k <= 10; ++k) {
    d.add(k);
  }
  auto before = storage::page_cache_stats();
  d.swap(4, 9);  // pcache1 alone would now scan every bucket on each truncate
  d.m.xTruncate(d.c, 11);
  CHECK(storage::page_cache_stats().truncates_skipped == before.truncates_skipped + 1);
  CHECK(d.m.xPagecount(d.c) == 10);

  SUBCASE("a page past the limit is dropped") {
    d.add(12);
    d.m.xTruncate(d.c, 11);
    CHECK_FALSE(d.has(12));
    CHECK(d.has(10));
    CHECK(d.m.xPagecount(d.c) == 10);
  }
  SUBCASE("a page left at the parking key is dropped") {
    const unsigned parking = 0x40000000 / 4096 + 1;
    auto* p = d.pin(3);
    d.m.xRekey(d.c, p, 3, parking);
    d.m.xUnpin(d.c, p, 0);
    d.m.xTruncate(d.c, 11);
    CHECK_FALSE(d.has(parking));
    CHECK(d.m.xPagecount(d.c) == 9);
  }
  SUBCASE("a lower limit drops the pages in between, and the next truncate knows it") {
    d.m.xTruncate(d.c, 6);
    CHECK_FALSE(d.has(6));
    CHECK_FALSE(d.has(10));
    CHECK(d.has(5));
    auto mid = storage::page_cache_stats();
    d.m.xTruncate(d.c, 6);
    CHECK(storage::page_cache_stats().truncates_skipped == mid.truncates_skipped + 1);
    d.add(8);  // the file grew again
    d.m.xTruncate(d.c, 6);
    CHECK_FALSE(d.has(8));
  }
}

TEST_CASE("a database that grows, rolls back and rebalances random keys stays intact") {
  test::TempDir dir;
  Db db(dir.file("pc.db"));
  db.exec("CREATE TABLE t(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID");
  db.exec("CREATE INDEX t_by_v ON t(v)");
  auto insert = db.prepare("INSERT INTO t(k, v) VALUES (?1, ?2)");
  std::map<std::string, std::string> kept;
  std::mt19937 rng(7);
  auto before = storage::page_cache_stats();
  for (int round = 0; round < 60; ++round) {
    // Random keys split leaves in the middle of both B-trees: the swaps that park pages.
    std::map<std::string, std::string> added;
    db.exec("BEGIN IMMEDIATE");
    for (int i = 0; i < 400; ++i) {
      std::string k = std::to_string(rng()) + "-" + std::to_string(round);
      std::string v = std::string(40 + rng() % 200, static_cast<char>('a' + rng() % 26));
      insert.bind(1, k).bind(2, v).run();
      added.emplace(k, v);
    }
    if (round % 3 == 2) {
      db.exec("ROLLBACK");  // the file shrinks back: pages past its end must leave the cache
    } else {
      db.exec("COMMIT");
      kept.insert(added.begin(), added.end());
    }
  }
  auto after = storage::page_cache_stats();
  CHECK(after.truncates_skipped > before.truncates_skipped);
  CHECK(after.truncates_forwarded > before.truncates_forwarded);

  auto check = db.prepare("PRAGMA integrity_check");
  REQUIRE(check.step());
  CHECK(check.text(0) == "ok");
  std::map<std::string, std::string> stored;
  for (auto all = db.prepare("SELECT k, v FROM t"); all.step();) {
    stored.emplace(all.text(0), all.text(1));
  }
  CHECK(stored == kept);
}
