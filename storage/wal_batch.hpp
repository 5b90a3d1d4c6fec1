#pragma once
// A VFS over SQLite's default one that writes a transaction's WAL frames in one system call
// instead of two per page. See wal_batch.cpp for why and for when the bytes reach the file.
#include <cstdint>

namespace sb::storage {

// Registers the VFS as the process's default. Safe to call more than once; returns false (and
// SQLite keeps its own default) when the default VFS is missing.
bool install_wal_batching();

struct WalBatchStats {
  std::uint64_t writes = 0;   // WAL writes SQLite asked for
  std::uint64_t flushes = 0;  // writes that reached the file
};
WalBatchStats wal_batch_stats();

// Tests only: the next flush of a WAL buffer fails with SQLITE_IOERR_WRITE, as a full disk would.
void wal_batch_fail_next_flush();

}  // namespace sb::storage
