#include "storage/wal_batch.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace sb::storage {
namespace {

// Why this exists. SQLite appends each page of a commit to the WAL as a 24-byte frame header and
// the page, two write() calls per page (wal.c, walWriteOneFrame), and each call goes through the
// kernel's whole buffered-write path: the inode lock, and the page-cache folios it touches, as a
// 4,120-byte frame straddles two of them and its header a third. In bench_ingest that was 54,000
// pwrite calls a second (about 55 pages per commit), and the pwrite path 16% of the writer's
// CPU. This VFS collects what SQLite writes to a WAL and passes it on, in writes of up to
// 120 KiB (about 30 pages), once the commit frame is complete.
//
// When the bytes reach the file (that is, the kernel; syncing is SQLite's business as before):
// - at the end of the commit frame, the one whose header carries the database size (wal.c,
//   walEncodeFrame: non-zero only in a commit frame). That write is the last of the commit, and
//   its result is the flush's result, so a failing write fails the commit as it did before.
//   Other connections learn of new frames only from the wal-index header, which SQLite updates
//   after that write returns: no reader, checkpointer or other process can ask for bytes that
//   are still here. A crash before it loses only an uncommitted transaction, as before;
// - before anything reads, syncs, sizes, truncates, maps or closes the WAL through this handle,
//   before a write that does not continue the buffered run (SQLite rewriting a frame of the same
//   transaction, or the WAL header on a restart), and at 4 MiB;
// - when the write lock is released (or the database file unlocked, leaving exclusive mode):
//   frames a transaction spilled before it rolled back go out while no other writer can reuse
//   their offsets, not later over another writer's commit;
// - at the database file's shared-memory barrier, which SQLite raises before publishing a new
//   wal-index header: a second guarantee that published frames are in the file. The buffer is
//   empty there by the rules above; were it not, and its write failed, the process aborts
//   rather than let SQLite publish frames that are not in the file.
// A write to the bytes just read goes straight through: walRewriteChecksums reads each frame of
// the transaction back and rewrites its header, the commit frame's last, with no page after it.
// A WAL is buffered only with powersafe overwrite (the unix VFS's default), without which wal.c
// pads a commit and may split a frame header at its sync point. Only the connection that writes
// the WAL buffers anything; every other call is forwarded. A review against wal.c found the
// rollback and checksum-rewrite cases; tests/storage/wal_batch_test.cpp reproduces both.
constexpr int kFrameHeader = 24;     // WAL_FRAME_HDRSIZE
constexpr int kMaxBuffer = 4 << 20;  // the most a buffer holds before it is written
// The unix VFS writes at most 128 KiB - 1 bytes a call (os_unix.c, seekAndWriteFd:
// `nBuf &= 0x1ffff`), and reports a longer write as a full disk.
constexpr int kMaxWrite = 120 << 10;
constexpr const char* kName = "sb-wal-batch";

sqlite3_vfs* real_vfs = nullptr;
sqlite3_vfs vfs;
std::atomic<std::uint64_t> n_writes{0}, n_flushes{0};
std::atomic<bool> fail_next{false};

struct File {
  sqlite3_file base;   // must be first: SQLite sees this
  sqlite3_file* real;  // the default VFS's file, right after this struct
  bool batch;          // a WAL whose writes may be buffered
  File* db;            // a WAL: the database file it belongs to, while both are open
  File* wal;           // a database: its open WAL
  // A WAL's bytes written by SQLite and not yet passed on: `len` bytes from file offset `off`.
  char* buf;
  int len, cap;
  sqlite3_int64 off;
  sqlite3_int64 commit_data_at;  // where the pending commit frame's page goes; -1: none
  sqlite3_int64 read_at;         // offset of the last xRead, if no write came since; -1: none
};

constexpr int kHeaderSize = (sizeof(File) + 7) & ~7;

File* of(sqlite3_file* p) {
  return reinterpret_cast<File*>(p);
}
const sqlite3_io_methods* io(File* f) {
  return f->real->pMethods;
}

std::uint32_t get4(const void* p) {
  const auto* b = static_cast<const unsigned char*>(p);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         b[3];
}

int flush(File* f) {
  if (f->len == 0) {
    return SQLITE_OK;
  }
  int rc = fail_next.exchange(false) ? SQLITE_IOERR_WRITE : SQLITE_OK;
  for (int done = 0; rc == SQLITE_OK && done < f->len; done += kMaxWrite) {
    rc = io(f)->xWrite(f->real, f->buf + done, std::min(kMaxWrite, f->len - done), f->off + done);
    n_flushes.fetch_add(1, std::memory_order_relaxed);
  }
  f->len = 0;  // on failure SQLite sees the error and abandons what these frames were for
  return rc;
}

// --- the io methods of a WAL: buffer writes, flush before everything else ---

// What is buffered, then this write, unbuffered. A commit frame's header written so still
// makes its page flush.
int write_through(File* f, const void* data, int amt, sqlite3_int64 off, bool commit_header) {
  if (int rc = flush(f)) {
    return rc;
  }
  int rc = io(f)->xWrite(f->real, data, amt, off);
  if (rc == SQLITE_OK && commit_header) {
    f->commit_data_at = off + kFrameHeader;
  }
  return rc;
}

int wal_write(sqlite3_file* p, const void* data, int amt, sqlite3_int64 off) {
  File* f = of(p);
  n_writes.fetch_add(1, std::memory_order_relaxed);
  // A write to bytes just read is a read-modify-write (wal.c walRewriteChecksums rewriting a
  // frame header, the commit frame's last): pass it on now so that its error is the commit's.
  bool rmw = off == f->read_at;
  f->read_at = -1;
  // A commit frame's header is followed at once by its page, the commit's last write: that
  // write flushes, whichever way the header went and whatever was flushed in between.
  bool commit_data = off == f->commit_data_at;
  bool commit_header = amt == kFrameHeader && get4(static_cast<const char*>(data) + 4) != 0;
  f->commit_data_at = -1;
  // amt > kMaxWrite: not for a WAL (a page is at most 64 KiB); passed on as it came.
  if (!f->batch || rmw || amt > kMaxWrite) {
    return write_through(f, data, amt, off, commit_header);
  }
  if (f->len > 0 && (off != f->off + f->len || f->len + amt > kMaxBuffer)) {
    if (int rc = flush(f)) {
      return rc;
    }
  }
  if (f->len + amt > f->cap) {  // f->len + amt <= kMaxBuffer here
    int cap = std::min(kMaxBuffer, std::max({f->cap * 2, f->len + amt, 256 << 10}));
    auto* grown = static_cast<char*>(sqlite3_realloc(f->buf, cap));
    if (!grown) {  // no memory: what is buffered, then this write, unbuffered
      return write_through(f, data, amt, off, commit_header);
    }
    f->buf = grown;
    f->cap = cap;
  }
  if (f->len == 0) {
    f->off = off;
  }
  std::memcpy(f->buf + f->len, data, static_cast<std::size_t>(amt));
  f->len += amt;
  if (commit_data) {
    return flush(f);  // the commit frame is complete: the commit's result is this write's
  }
  if (commit_header) {
    f->commit_data_at = off + kFrameHeader;
  }
  return SQLITE_OK;
}

int wal_close(sqlite3_file* p) {
  File* f = of(p);
  int flushed = flush(f);
  if (f->db) {
    f->db->wal = nullptr;
  }
  sqlite3_free(f->buf);
  f->buf = nullptr;
  int rc = io(f)->xClose(f->real);
  return flushed != SQLITE_OK ? flushed : rc;
}

int wal_read(sqlite3_file* p, void* out, int amt, sqlite3_int64 off) {
  File* f = of(p);
  if (int rc = flush(f)) {
    return rc;
  }
  f->read_at = off;
  return io(f)->xRead(f->real, out, amt, off);
}

int wal_truncate(sqlite3_file* p, sqlite3_int64 size) {
  File* f = of(p);
  if (int rc = flush(f)) {
    return rc;
  }
  return io(f)->xTruncate(f->real, size);
}

int wal_sync(sqlite3_file* p, int flags) {
  File* f = of(p);
  if (int rc = flush(f)) {
    return rc;
  }
  return io(f)->xSync(f->real, flags);
}

int wal_file_size(sqlite3_file* p, sqlite3_int64* size) {
  File* f = of(p);
  if (int rc = flush(f)) {
    return rc;
  }
  return io(f)->xFileSize(f->real, size);
}

int wal_file_control(sqlite3_file* p, int op, void* arg) {
  File* f = of(p);
  if (int rc = flush(f)) {
    return rc;
  }
  return io(f)->xFileControl(f->real, op, arg);
}

int wal_fetch(sqlite3_file* p, sqlite3_int64 off, int amt, void** pp) {
  File* f = of(p);
  *pp = nullptr;
  if (int rc = flush(f)) {
    return rc;
  }
  return io(f)->iVersion >= 3 ? io(f)->xFetch(f->real, off, amt, pp) : SQLITE_OK;
}

// --- forwarded as they are (a database file's barrier also flushes its WAL) ---

int main_close(sqlite3_file* p) {
  File* f = of(p);
  if (f->wal) {  // SQLite closes the WAL first; should it not, the WAL stops buffering
    flush(f->wal);
    f->wal->batch = false;
    f->wal->db = nullptr;
  }
  return io(f)->xClose(f->real);
}
int pass_read(sqlite3_file* p, void* out, int amt, sqlite3_int64 off) {
  return io(of(p))->xRead(of(p)->real, out, amt, off);
}
int pass_write(sqlite3_file* p, const void* data, int amt, sqlite3_int64 off) {
  return io(of(p))->xWrite(of(p)->real, data, amt, off);
}
int pass_truncate(sqlite3_file* p, sqlite3_int64 size) {
  return io(of(p))->xTruncate(of(p)->real, size);
}
int pass_sync(sqlite3_file* p, int flags) {
  return io(of(p))->xSync(of(p)->real, flags);
}
int pass_file_size(sqlite3_file* p, sqlite3_int64* size) {
  return io(of(p))->xFileSize(of(p)->real, size);
}
int pass_lock(sqlite3_file* p, int level) {
  return io(of(p))->xLock(of(p)->real, level);
}
int pass_unlock(sqlite3_file* p, int level) {
  return io(of(p))->xUnlock(of(p)->real, level);
}
int main_unlock(sqlite3_file* p, int level) {  // leaving locking_mode=EXCLUSIVE, among others
  File* f = of(p);
  if (f->wal) {
    flush(f->wal);
  }
  return io(f)->xUnlock(f->real, level);
}
int pass_check_reserved_lock(sqlite3_file* p, int* out) {
  return io(of(p))->xCheckReservedLock(of(p)->real, out);
}
int pass_file_control(sqlite3_file* p, int op, void* arg) {
  return io(of(p))->xFileControl(of(p)->real, op, arg);
}
int pass_sector_size(sqlite3_file* p) {
  return io(of(p))->xSectorSize(of(p)->real);
}
int pass_device_characteristics(sqlite3_file* p) {
  return io(of(p))->xDeviceCharacteristics(of(p)->real);
}
int pass_shm_map(sqlite3_file* p, int page, int size, int extend, void volatile** out) {
  File* f = of(p);
  return io(f)->iVersion >= 2 ? io(f)->xShmMap(f->real, page, size, extend, out)
                              : SQLITE_IOERR_SHMMAP;
}
int pass_shm_lock(sqlite3_file* p, int offset, int n, int flags) {
  File* f = of(p);
  if (f->wal && offset == 0 && (flags & SQLITE_SHM_UNLOCK)) {
    // WAL_WRITE_LOCK released: what is left (frames of a rolled-back transaction) must reach
    // the file now, while no other writer can use those offsets, as it would have without us.
    flush(f->wal);
  }
  return io(f)->iVersion >= 2 ? io(f)->xShmLock(f->real, offset, n, flags) : SQLITE_IOERR_SHMLOCK;
}
void pass_shm_barrier(sqlite3_file* p) {
  File* f = of(p);
  if (f->wal) {
    if (f->wal->len > 0 && flush(f->wal) != SQLITE_OK) {
      // SQLite is about to publish frames that are not in the file, and cannot be told.
      sqlite3_log(SQLITE_IOERR_WRITE, "sb-wal-batch: WAL write failed at the shm barrier");
      std::abort();
    }
  }
  if (io(f)->iVersion >= 2) {
    io(f)->xShmBarrier(f->real);
  }
}
int pass_shm_unmap(sqlite3_file* p, int delete_flag) {
  File* f = of(p);
  return io(f)->iVersion >= 2 ? io(f)->xShmUnmap(f->real, delete_flag) : SQLITE_OK;
}
int pass_fetch(sqlite3_file* p, sqlite3_int64 off, int amt, void** pp) {
  File* f = of(p);
  *pp = nullptr;
  return io(f)->iVersion >= 3 ? io(f)->xFetch(f->real, off, amt, pp) : SQLITE_OK;
}
int pass_unfetch(sqlite3_file* p, sqlite3_int64 off, void* ptr) {
  File* f = of(p);
  return io(f)->iVersion >= 3 ? io(f)->xUnfetch(f->real, off, ptr) : SQLITE_OK;
}

const sqlite3_io_methods kMain = {.iVersion = 3,
                                  .xClose = main_close,
                                  .xRead = pass_read,
                                  .xWrite = pass_write,
                                  .xTruncate = pass_truncate,
                                  .xSync = pass_sync,
                                  .xFileSize = pass_file_size,
                                  .xLock = pass_lock,
                                  .xUnlock = main_unlock,
                                  .xCheckReservedLock = pass_check_reserved_lock,
                                  .xFileControl = pass_file_control,
                                  .xSectorSize = pass_sector_size,
                                  .xDeviceCharacteristics = pass_device_characteristics,
                                  .xShmMap = pass_shm_map,
                                  .xShmLock = pass_shm_lock,
                                  .xShmBarrier = pass_shm_barrier,
                                  .xShmUnmap = pass_shm_unmap,
                                  .xFetch = pass_fetch,
                                  .xUnfetch = pass_unfetch};
// A WAL's: the same, but writes buffered and everything that looks at the file flushing first.
sqlite3_io_methods wal_methods() {
  sqlite3_io_methods m = kMain;
  m.xClose = wal_close;
  m.xRead = wal_read;
  m.xWrite = wal_write;
  m.xTruncate = wal_truncate;
  m.xSync = wal_sync;
  m.xFileSize = wal_file_size;
  m.xUnlock = pass_unlock;  // a WAL file is never locked itself; the database's unlock flushes
  m.xFileControl = wal_file_control;
  m.xFetch = wal_fetch;
  return m;
}
const sqlite3_io_methods kWal = wal_methods();

// --- the VFS: opens wrap the default VFS's files; everything else is the default VFS's ---

int open_file(sqlite3_vfs*, const char* name, sqlite3_file* p, int flags, int* out_flags) {
  File* f = of(p);
  std::memset(static_cast<void*>(f), 0, kHeaderSize);
  f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(f) + kHeaderSize);
  std::memset(static_cast<void*>(f->real), 0, static_cast<std::size_t>(real_vfs->szOsFile));
  bool is_wal = (flags & SQLITE_OPEN_WAL) != 0;
  f->commit_data_at = -1;
  f->read_at = -1;
  int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
  if (!f->real->pMethods) {
    f->base.pMethods = nullptr;  // nothing to close
    return rc;
  }
  f->base.pMethods = is_wal ? &kWal : &kMain;
  if (rc == SQLITE_OK && is_wal && name) {
    // The name SQLite passes for a WAL leads to its database's file (sqlite3.h).
    sqlite3_file* db = sqlite3_database_file_object(name);
    if (db && db->pMethods == &kMain) {
      f->db = of(db);
      f->db->wal = f;
      // Without powersafe overwrite, wal.c pads a commit and may split a frame header at the
      // sync point (walWriteToLog), which the commit-frame detection does not follow.
      f->batch =
          (io(f->db)->xDeviceCharacteristics(f->db->real) & SQLITE_IOCAP_POWERSAFE_OVERWRITE) != 0;
    }
  }
  return rc;
}

sqlite3_vfs* real(sqlite3_vfs*) {  // the VFS every call below is passed on to
  return real_vfs;
}

}  // namespace

bool install_wal_batching() {
  static const bool installed = [] {
    real_vfs = sqlite3_vfs_find(nullptr);
    if (!real_vfs) {
      return false;
    }
    vfs = sqlite3_vfs{};
    vfs.iVersion = 3;
    vfs.szOsFile = kHeaderSize + real_vfs->szOsFile;
    vfs.mxPathname = real_vfs->mxPathname;
    vfs.zName = kName;
    vfs.xOpen = open_file;
    vfs.xDelete = [](sqlite3_vfs* v, const char* name, int sync_dir) {
      return real(v)->xDelete(real(v), name, sync_dir);
    };
    vfs.xAccess = [](sqlite3_vfs* v, const char* name, int flags, int* out) {
      return real(v)->xAccess(real(v), name, flags, out);
    };
    vfs.xFullPathname = [](sqlite3_vfs* v, const char* name, int n, char* out) {
      return real(v)->xFullPathname(real(v), name, n, out);
    };
    vfs.xDlOpen = [](sqlite3_vfs* v, const char* name) { return real(v)->xDlOpen(real(v), name); };
    vfs.xDlError = [](sqlite3_vfs* v, int n, char* out) { real(v)->xDlError(real(v), n, out); };
    vfs.xDlSym = [](sqlite3_vfs* v, void* h, const char* sym) {
      return real(v)->xDlSym(real(v), h, sym);
    };
    vfs.xDlClose = [](sqlite3_vfs* v, void* h) { real(v)->xDlClose(real(v), h); };
    vfs.xRandomness = [](sqlite3_vfs* v, int n, char* out) {
      return real(v)->xRandomness(real(v), n, out);
    };
    vfs.xSleep = [](sqlite3_vfs* v, int us) { return real(v)->xSleep(real(v), us); };
    vfs.xCurrentTime = [](sqlite3_vfs* v, double* out) {
      return real(v)->xCurrentTime(real(v), out);
    };
    vfs.xGetLastError = [](sqlite3_vfs* v, int n, char* out) {
      return real(v)->xGetLastError ? real(v)->xGetLastError(real(v), n, out) : 0;
    };
    vfs.xCurrentTimeInt64 = [](sqlite3_vfs* v, sqlite3_int64* out) {
      if (real(v)->iVersion >= 2 && real(v)->xCurrentTimeInt64) {
        return real(v)->xCurrentTimeInt64(real(v), out);
      }
      double day = 0;
      int rc = real(v)->xCurrentTime(real(v), &day);
      *out = static_cast<sqlite3_int64>(day * 86400000.0);
      return rc;
    };
    vfs.xSetSystemCall = [](sqlite3_vfs* v, const char* name, sqlite3_syscall_ptr ptr) {
      return real(v)->iVersion >= 3 ? real(v)->xSetSystemCall(real(v), name, ptr) : SQLITE_NOTFOUND;
    };
    vfs.xGetSystemCall = [](sqlite3_vfs* v, const char* name) -> sqlite3_syscall_ptr {
      return real(v)->iVersion >= 3 ? real(v)->xGetSystemCall(real(v), name) : nullptr;
    };
    vfs.xNextSystemCall = [](sqlite3_vfs* v, const char* name) -> const char* {
      return real(v)->iVersion >= 3 ? real(v)->xNextSystemCall(real(v), name) : nullptr;
    };
    return sqlite3_vfs_register(&vfs, 1) == SQLITE_OK;
  }();
  return installed;
}

WalBatchStats wal_batch_stats() {
  return {n_writes.load(std::memory_order_relaxed), n_flushes.load(std::memory_order_relaxed)};
}

void wal_batch_fail_next_flush() {
  fail_next = true;
}

}  // namespace sb::storage
