#pragma once
// SQLite's own page cache (pcache1) with one scan taken out. See page_cache.cpp for why.
#include <cstdint>

struct sqlite3_pcache_methods2;

namespace sb::storage {

// Installs the wrapper around SQLite's default page cache for every connection of this process.
// Must run before SQLite initialises (the first sqlite3_open); returns false when it was too
// late, and SQLite then keeps its default cache unchanged.
bool install_page_cache();

struct PageCacheStats {
  std::uint64_t truncates_skipped = 0;    // calls proven to have nothing to drop
  std::uint64_t truncates_forwarded = 0;  // calls passed on to pcache1
};
PageCacheStats page_cache_stats();

// The installed methods, for tests that drive a cache directly (all null before installing).
const sqlite3_pcache_methods2& page_cache_methods();

}  // namespace sb::storage
