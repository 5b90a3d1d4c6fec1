#include "storage/sqlite.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include <sqlite3.h>

#include "storage/page_cache.hpp"
#include "storage/wal_batch.hpp"

namespace sb::storage {
namespace {

[[noreturn]] void fail(sqlite3* db, int rc, std::string_view what) {
  throw Error(rc, std::string(what) + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

}  // namespace

Stmt::Stmt(sqlite3* db, std::string_view sql) : db_(db) {
  int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &s_, nullptr);
  if (rc != SQLITE_OK) {
    fail(db, rc, "prepare \"" + std::string(sql.substr(0, 60)) + "\"");
  }
}

Stmt::~Stmt() {
  sqlite3_finalize(s_);
}

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    sqlite3_finalize(s_);
    db_ = o.db_;
    s_ = o.s_;
    o.s_ = nullptr;
  }
  return *this;
}

// A bind that fails changes nothing: on a statement left mid-step (SQLITE_MISUSE) the next
// step() would go on with the old parameters and return another query's rows. So it throws.
void Stmt::bound(int rc, int i) {
  if (rc != SQLITE_OK) {
    std::string sql = sqlite3_sql(s_) ? sqlite3_sql(s_) : "";
    throw Error(rc, "bind ?" + std::to_string(i) + " of \"" + sql.substr(0, 60) +
                        "\": " + sqlite3_errstr(rc));
  }
}

Stmt& Stmt::bind_blob(int i, std::string_view bytes) {
  bound(sqlite3_bind_blob(s_, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT),
        i);
  return *this;
}

Stmt& Stmt::bind(int i, std::string_view v) {
  bound(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT), i);
  return *this;
}
Stmt& Stmt::bind_static(int i, std::string_view v) {
  bound(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC), i);
  return *this;
}
Stmt& Stmt::bind(int i, std::int64_t v) {
  bound(sqlite3_bind_int64(s_, i, v), i);
  return *this;
}
Stmt& Stmt::bind_null(int i) {
  bound(sqlite3_bind_null(s_, i), i);
  return *this;
}

bool Stmt::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  std::string sql = sqlite3_sql(s_) ? sqlite3_sql(s_) : "";
  sqlite3_reset(s_);
  fail(db_, rc, "step \"" + sql.substr(0, 60) + "\"");
}

void Stmt::run() {
  while (step()) {
  }
  reset();
}

void Stmt::reset() {
  sqlite3_reset(s_);
  sqlite3_clear_bindings(s_);
}

std::int64_t Stmt::int64(int col) const {
  return sqlite3_column_int64(s_, col);
}
bool Stmt::is_null(int col) const {
  return sqlite3_column_type(s_, col) == SQLITE_NULL;
}
std::string_view Stmt::text_view(int col) const {
  auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
  return p ? std::string_view(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
           : std::string_view();
}
std::string Stmt::text(int col) const {
  return std::string(text_view(col));
}

std::string database_error(const std::string& path, int code, const std::string& what) {
  std::string said = "database " + path + ": " + what;
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      // Only past the 5 s busy timeout: a lock held that long is a transaction of another
      // process, not a commit of the daemon's.
      return said +
             " (another process holds the write lock: a switchboard already running on this "
             "file, a `customers import`, or a tool such as sqlite3 inside a transaction)";
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM: {
      // WAL mode: SQLite makes PATH-wal and PATH-shm beside the database, even to read it
      // (a read-only connection may not make the -shm, and fails), so the directory must be
      // writable, not just the file.
      auto dir = std::filesystem::path(path).parent_path();
      if (dir.empty()) {
        dir = ".";
      }
      if (::access(dir.c_str(), W_OK) != 0) {
        return said + " (the directory " + dir.string() +
               " is not writable by this user: SQLite creates the -wal and -shm files beside "
               "the database, even to read it)";
      }
      if (::access(path.c_str(), F_OK) == 0 && ::access(path.c_str(), W_OK) != 0) {
        return said + " (the file is not writable by this user)";
      }
      return said;
    }
    default:
      return said;
  }
}

Db::Db(const std::string& path, Mode mode) : path_(path) {
  const bool readonly = mode == Mode::read_only;
  // Before the first connection: no memory statistics (they take a global mutex on every
  // allocation SQLite makes; the SQLite docs list this among the speed-ups), the page cache
  // that skips pointless scans (page_cache.cpp) and the VFS that writes a commit's WAL frames at
  // once (wal_batch.cpp). The first two are ignored when the library was initialised already.
  static const bool configured = [] {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    install_page_cache();
    install_wal_batching();  // initialises SQLite: after every sqlite3_config
    return true;
  }();
  (void)configured;
  int flags = SQLITE_OPEN_NOMUTEX;
  if (readonly) {
    flags |= SQLITE_OPEN_READONLY;
  } else if (mode == Mode::standalone) {
    flags |= SQLITE_OPEN_READWRITE;
  } else {
    flags |= SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (path != ":memory:" && !path.empty()) {
      // The database holds customers' messages, contact details and attachments: a new one is
      // the daemon user's alone, whatever the umask (SQLite creates files 0644 less the umask).
      // Its -wal and -shm files take the database's mode. A directory this creates is 0700; an
      // existing file or directory keeps the mode the operator gave it.
      auto parent = std::filesystem::path(path).parent_path();
      std::error_code ec;
      if (!parent.empty() && !std::filesystem::exists(parent, ec)) {
        std::filesystem::create_directories(parent, ec);
        std::filesystem::permissions(parent, std::filesystem::perms::owner_all,
                                     std::filesystem::perm_options::replace, ec);
      }
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd >= 0) {
        ::close(fd);
      }
    }
  }
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(rc, database_error(path, rc, "cannot open: " + msg));
  }
  sqlite3_busy_timeout(db_, 5000);
  try {
    if (mode == Mode::wal) {
      // WAL: readers never block the writer. synchronous=NORMAL in WAL survives a process crash
      // (kill -9), which is what "a 2xx means committed" needs; only an OS crash or power loss
      // may lose the last transactions (DESIGN-NOTES invariant 1).
      exec("PRAGMA journal_mode=WAL");
      exec("PRAGMA synchronous=NORMAL");
    }
    exec("PRAGMA temp_store=MEMORY");
    exec("PRAGMA cache_size=-32768");  // 32 MiB page cache per connection
  } catch (const Error& e) {
    // The first statements are where a lock or an unwritable directory shows ("database is
    // locked", "unable to open database file"): said with the file and why.
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(e.code, database_error(path, e.code, e.what()));
  }
}

Db::~Db() {
  sqlite3_close_v2(db_);
}

void Db::exec(std::string_view sql) {
  char* err = nullptr;
  std::string s(sql);
  int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw Error(rc, msg);
  }
}

void Db::reset_statements() {
  for (sqlite3_stmt* s = sqlite3_next_stmt(db_, nullptr); s; s = sqlite3_next_stmt(db_, s)) {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
}

std::int64_t Db::changes() const {
  return sqlite3_changes64(db_);
}

Backup::Backup(Db& dest, Db& src) : dest_(dest) {
  b_ = sqlite3_backup_init(dest.raw(), "main", src.raw(), "main");
  if (!b_) {
    fail(dest.raw(), sqlite3_errcode(dest.raw()), "backup of " + src.path());
  }
}

Backup::~Backup() {
  sqlite3_backup_finish(b_);
}

Backup::Step Backup::step(int pages) {
  int rc = sqlite3_backup_step(b_, pages);
  if (rc == SQLITE_DONE) {
    return Step::done;
  }
  if (rc == SQLITE_OK) {
    return Step::more;
  }
  // BUSY and LOCKED are worth another step later (the caller waits and tries again); anything
  // else sticks: every later step and finish() return it too.
  if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    return Step::busy;
  }
  sqlite3_backup_finish(b_);  // leaves the error (and its message) on the destination
  b_ = nullptr;
  fail(dest_.raw(), rc, "copying to " + dest_.path());
}

int Backup::total() const {
  return b_ ? sqlite3_backup_pagecount(b_) : 0;
}

int Backup::remaining() const {
  return b_ ? sqlite3_backup_remaining(b_) : 0;
}

void Backup::finish() {
  int rc = sqlite3_backup_finish(b_);
  b_ = nullptr;
  if (rc != SQLITE_OK) {
    fail(dest_.raw(), rc, "copying to " + dest_.path());
  }
}

}  // namespace sb::storage
