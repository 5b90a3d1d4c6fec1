#include "storage/page_cache.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <new>

namespace sb::storage {
namespace {

// Why this exists. At the end of every transaction the pager calls the cache's xTruncate with
// the database size, to drop any cached page beyond the end of the file. SQLite's default
// cache (pcache1, SQLite 3.40) remembers only the largest key it ever held (iMaxKey) and, when
// that is far above the limit, walks every hash bucket and every cached page to find them. The
// B-tree's balancing gives iMaxKey such a value: when a split leaves sibling pages out of order
// it swaps their numbers through a temporary one, the page of the lock byte (1 GiB / page size
// + 1, 262145 for 4 KiB pages), which the file never uses. So after most commits of random-key
// inserts (identities, dedupe keys, customer indexes) the writer walked its whole 32 MiB cache,
// 8,192 buckets and about as many pages, one cache miss each: 12% of the writer's CPU in
// bench_ingest (perf, the hot instruction in pcache1TruncateUnsafe), found with a uprobe on
// pcache1Truncate that printed iMaxKey = 262145 for half of the writer's commits.
//
// The wrapper forwards every call to pcache1 unchanged and keeps, per cache, an upper bound of
// the keys it may hold: the largest key created by xFetch or given by xRekey, except the
// temporary key, which is counted instead (each swap parks a page there and takes it back).
// xTruncate is skipped only when that bound is below the limit and no page is parked: then
// pcache1 holds no page to drop, and the call would only have lowered its iMaxKey. A page that
// pcache1 recycles or another cache takes only removes keys, so the bound stays an upper bound.
// Everything else (eviction, memory, locking) is SQLite's own. The rule holds whatever the
// parking key is: were it wrong (a PENDING_BYTE changed at build time), pages parked elsewhere
// would raise max_key like any other key, and truncates would only be forwarded more often.
// A review checked it against pcache1.c, pcache.c, pager.c and btree.c, and a randomised run of
// 900,000 fetch/unpin/rekey/truncate calls on 3.40.1 found no page left at or past a limit.
struct Cache {
  sqlite3_pcache* inner;
  unsigned parking_key;  // the lock-byte page: never a real page of the file
  unsigned max_key = 0;  // no key above this one, the parked pages aside
  unsigned parked = 0;   // pages currently at parking_key
};

sqlite3_pcache_methods2 base;     // pcache1, as SQLite set it up
sqlite3_pcache_methods2 wrapped;  // base with the calls below in front
std::atomic<std::uint64_t> skipped{0}, forwarded{0};

Cache* cache(sqlite3_pcache* p) {
  return reinterpret_cast<Cache*>(p);
}

sqlite3_pcache* create(int page_size, int extra, int purgeable) {
  sqlite3_pcache* inner = base.xCreate(page_size, extra, purgeable);
  if (!inner) {
    return nullptr;
  }
  auto* c = static_cast<Cache*>(sqlite3_malloc(sizeof(Cache)));
  if (!c) {
    base.xDestroy(inner);
    return nullptr;
  }
  // SQLite's PENDING_BYTE is 0x40000000 unless changed through a test control.
  new (c) Cache{inner, static_cast<unsigned>(0x40000000 / page_size + 1)};
  return reinterpret_cast<sqlite3_pcache*>(c);
}

void cachesize(sqlite3_pcache* p, int n) {
  base.xCachesize(cache(p)->inner, n);
}

int pagecount(sqlite3_pcache* p) {
  return base.xPagecount(cache(p)->inner);
}

sqlite3_pcache_page* fetch(sqlite3_pcache* p, unsigned key, int create_flag) {
  Cache* c = cache(p);
  sqlite3_pcache_page* page = base.xFetch(c->inner, key, create_flag);
  if (page && key > c->max_key) {
    c->max_key = key;  // a fetch of the parking key itself (a corrupt file) just raises the bound
  }
  return page;
}

void unpin(sqlite3_pcache* p, sqlite3_pcache_page* page, int discard) {
  base.xUnpin(cache(p)->inner, page, discard);
}

void rekey(sqlite3_pcache* p, sqlite3_pcache_page* page, unsigned old_key, unsigned new_key) {
  Cache* c = cache(p);
  base.xRekey(c->inner, page, old_key, new_key);
  if (old_key == c->parking_key && c->parked > 0) {
    --c->parked;
  }
  if (new_key == c->parking_key) {
    ++c->parked;
  } else {
    c->max_key = std::max(c->max_key, new_key);
  }
}

void truncate(sqlite3_pcache* p, unsigned limit) {
  Cache* c = cache(p);
  if (c->parked == 0 && c->max_key < limit) {
    skipped.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  forwarded.fetch_add(1, std::memory_order_relaxed);
  base.xTruncate(c->inner, limit);
  // Every page at `limit` or above is gone, a parked one included.
  c->max_key = std::min(c->max_key, limit == 0 ? 0 : limit - 1);
  if (limit <= c->parking_key) {
    c->parked = 0;
  }
}

void destroy(sqlite3_pcache* p) {
  Cache* c = cache(p);
  base.xDestroy(c->inner);
  c->~Cache();
  sqlite3_free(c);
}

void shrink(sqlite3_pcache* p) {
  base.xShrink(cache(p)->inner);
}

}  // namespace

bool install_page_cache() {
  if (sqlite3_config(SQLITE_CONFIG_GETPCACHE2, &base) != SQLITE_OK || !base.xCreate) {
    return false;
  }
  sqlite3_pcache_methods2 w = base;  // iVersion, pArg, xInit, xShutdown: pcache1's own
  w.xCreate = create;
  w.xCachesize = cachesize;
  w.xPagecount = pagecount;
  w.xFetch = fetch;
  w.xUnpin = unpin;
  w.xRekey = rekey;
  w.xTruncate = truncate;
  w.xDestroy = destroy;
  w.xShrink = shrink;
  if (sqlite3_config(SQLITE_CONFIG_PCACHE2, &w) != SQLITE_OK) {  // SQLite keeps a copy
    return false;
  }
  wrapped = w;  // only once installed: tests drive the methods connections really use
  return true;
}

const sqlite3_pcache_methods2& page_cache_methods() {
  return wrapped;
}

PageCacheStats page_cache_stats() {
  return {skipped.load(std::memory_order_relaxed), forwarded.load(std::memory_order_relaxed)};
}

}  // namespace sb::storage
