#pragma once
// A thin RAII layer over the SQLite C API: one connection, prepared statements kept for the
// connection's life. Errors throw sb::storage::Error; the writer turns them into per-job
// failures (a job runs inside a SAVEPOINT, so one failing job never spoils its batch).
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_backup;
struct sqlite3_stmt;

namespace sb::storage {

struct Error : std::runtime_error {
  int code;
  Error(int c, const std::string& what) : std::runtime_error(what), code(c) {}
};

// An error of opening or locking the database at `path`, said as an operator looks for it:
// "database PATH: what", and why when SQLite's text does not say (a lock held by another
// process, a directory this user cannot write to).
std::string database_error(const std::string& path, int code, const std::string& what);

class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3* db, std::string_view sql);
  ~Stmt();
  Stmt(Stmt&& o) noexcept : db_(o.db_), s_(o.s_) { o.s_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  // Binds by 1-based index. Strings are copied (SQLITE_TRANSIENT) unless bind_static is used.
  Stmt& bind(int i, std::string_view v);
  Stmt& bind_blob(int i, std::string_view bytes);
  Stmt& bind(int i, std::int64_t v);
  Stmt& bind(int i, int v) { return bind(i, static_cast<std::int64_t>(v)); }
  Stmt& bind_null(int i);
  // Binds a string that outlives the statement's next reset().
  Stmt& bind_static(int i, std::string_view v);

  bool step();   // true: a row is ready; false: done. Throws on error.
  void reset();  // resets and clears bindings
  void run();    // step to completion and reset

  std::int64_t int64(int col) const;
  std::string text(int col) const;
  std::string_view text_view(int col) const;  // valid until the next step/reset
  bool is_null(int col) const;

 private:
  void bound(int rc, int i);  // throws when a bind failed

  sqlite3* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
};

class Db {
 public:
  // wal: the daemon's database (below). read_only: a reader beside it. standalone: a file that
  // must stand alone, such as a backup copy: opened read-write without creating anything (the
  // caller makes the file, with its mode), in SQLite's default rollback journal (DELETE), so that
  // no -wal file ever holds part of it.
  enum class Mode { wal, read_only, standalone };
  // Opens (creating parent directories and the file when `create`), sets WAL,
  // synchronous=NORMAL, busy_timeout, foreign keys off (the writer keeps references right).
  explicit Db(const std::string& path, bool readonly = false)
      : Db(path, readonly ? Mode::read_only : Mode::wal) {}
  Db(const std::string& path, Mode mode);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  void exec(std::string_view sql);
  Stmt prepare(std::string_view sql) { return Stmt(db_, sql); }
  std::int64_t changes() const;
  // Resets every statement of the connection and clears its parameters: after an exception
  // (a job that failed between step() and reset()), so that no statement is left mid-step.
  void reset_statements();
  sqlite3* raw() { return db_; }
  const std::string& path() const { return path_; }

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

// SQLite's online backup (sqlite3_backup_*): copies `src`'s main database into `dest`'s, page
// for page, a step at a time. Errors (a full disk, an I/O error) throw Error with the code and
// message SQLite left on `dest`. Both connections must outlive it.
class Backup {
 public:
  Backup(Db& dest, Db& src);
  ~Backup();  // finishes (and so releases the locks) if finish() was not called
  Backup(const Backup&) = delete;
  Backup& operator=(const Backup&) = delete;

  // Copies up to `pages` pages: done when the whole database is copied, busy when a lock was in
  // the way (try again after a moment). Throws on any other error.
  enum class Step { more, done, busy };
  Step step(int pages);
  int total() const;      // the source's pages, as of the last step
  int remaining() const;  // of those, still to copy
  void finish();          // throws when the backup failed

 private:
  Db& dest_;
  sqlite3_backup* b_ = nullptr;
};

}  // namespace sb::storage
