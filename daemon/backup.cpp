// `switchboard backup DEST`: a consistent, self-contained copy of the database, taken while the
// daemon runs.
//
// Why not cp: the daemon's database is in WAL mode. The latest commits live in the -wal file
// until a checkpoint copies them into the main file, and the checkpoint thread does that while
// cp reads: a copy of the three files is a mix of two moments, or misses commits, or is corrupt.
//
// Why the backup API rather than VACUUM INTO: both read one snapshot, through a read transaction
// that in WAL mode never blocks the daemon's writer (it blocks checkpoints from finishing only:
// the WAL grows while the copy runs, and shrinks at the first checkpoint after it). VACUUM INTO
// is one statement that rebuilds every table and index, all at once: no progress to report, and
// CPU the daemon needs on a 2-core machine spent re-sorting index entries. The backup API copies
// pages as they are, in steps of kStepPages, so it reports progress and costs what reading and
// writing the file costs. What the backup API documents as its weak point, a restart of the
// copy whenever another connection writes the source, does not arise: this connection holds a
// read transaction from before the first step to after the last, and a WAL reader's snapshot
// does not move however much the daemon commits meanwhile (backup_step uses the transaction it
// finds open rather than a new one per step).
//
// The copy is written to DEST.tmp (0600, beside DEST, so that the rename stays on one file
// system), turned into a rollback-journal database (the pages copied carry the source's WAL
// flag; without the -wal file a WAL database still opens, but the copy should need nothing but
// itself), checked with PRAGMA quick_check, fsynced, renamed to DEST, and the directory fsynced
// so that the rename survives a power loss.
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <thread>

#include <sqlite3.h>

#include "core/printable.hpp"
#include "daemon/commands.hpp"
#include "storage/sqlite.hpp"

namespace sb {
namespace {

namespace fs = std::filesystem;

// 4 MiB of 4 KiB pages a step: progress at least every few tenths of a second on a slow disk,
// and a step costs the source nothing more than a read.
constexpr int kStepPages = 1024;

struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string errno_text(int e) {
  return std::strerror(e);
}

void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Failure("cannot open " + path + " to sync it: " + errno_text(errno));
  }
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) {
    throw Failure("cannot sync " + path + ": " + errno_text(e));
  }
}

// An error from SQLite on the copy, said as an operator would look for it.
std::string explain(const storage::Error& e) {
  switch (e.code & 0xff) {
    case SQLITE_FULL:
      return std::string("the disk is full: ") + e.what();
    case SQLITE_IOERR:
      return std::string("I/O error: ") + e.what();
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return std::string("cannot write the file: ") + e.what();
    default:
      return e.what();
  }
}

std::string human_size(std::uintmax_t bytes) {
  char buf[32];
  if (bytes < 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", static_cast<double>(bytes) / 1024);
  } else if (bytes < 1024ull * 1024 * 1024) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1024 * 1024));
  } else {
    std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024 * 1024));
  }
  return buf;
}

// Whether `a` and `b` name one file: the same inode when both exist, else the same absolute path
// once symlinks in the existing part are resolved.
bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) {
    return fs::equivalent(a, b, ec);
  }
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

// Renames tmp to dest; without `force`, never over a file that appeared there since the check
// (renameat2 RENAME_NOREPLACE; a file system without it gets the check-then-rename).
void install(const std::string& tmp, const std::string& dest, bool force) {
  if (!force) {
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dest.c_str(), RENAME_NOREPLACE) == 0) {
      return;
    }
    if (errno == EEXIST) {
      throw Failure(dest + " appeared while the backup ran; give --force to replace it");
    }
    if (errno != EINVAL && errno != ENOSYS) {
      throw Failure("cannot rename " + tmp + " to " + dest + ": " + errno_text(errno));
    }
    std::error_code ec;
    if (fs::exists(dest, ec)) {
      throw Failure(dest + " appeared while the backup ran; give --force to replace it");
    }
  }
  if (::rename(tmp.c_str(), dest.c_str()) != 0) {
    throw Failure("cannot rename " + tmp + " to " + dest + ": " + errno_text(errno));
  }
}

}  // namespace

int backup_database(const config::Config& cfg, const std::string& dest, bool force) {
  const std::string& src = cfg.storage.path;
  auto started = std::chrono::steady_clock::now();
  bool tty = isatty(fileno(stderr));
  std::error_code ec;
  // Said before anything is created, so that a mistake leaves no file behind.
  if (src == ":memory:" || src.empty() || !fs::is_regular_file(src, ec)) {
    std::cerr << "switchboard: no database at " << database_named(src) << ": nothing to back up\n";
    return 1;
  }
  if (same_file(dest, src) || same_file(dest, src + "-wal") || same_file(dest, src + "-shm") ||
      same_file(dest + ".tmp", src)) {
    std::cerr << "switchboard: " << printable(dest)
              << " is the live database (storage.path) or one of its files; give another DEST\n";
    return 1;
  }
  fs::path parent = fs::path(dest).parent_path();
  if (parent.empty()) {
    parent = ".";
  }
  if (!fs::is_directory(parent, ec)) {
    std::cerr << "switchboard: the directory of " << printable(dest) << " ("
              << printable(parent.string()) << ") does not exist\n";
    return 1;
  }
  if (fs::is_directory(dest, ec)) {
    std::cerr << "switchboard: " << printable(dest)
              << " is a directory; give the backup's file name\n";
    return 1;
  }
  if (fs::exists(fs::symlink_status(dest, ec)) && !force) {
    std::cerr << "switchboard: " << printable(dest)
              << " exists; give --force to replace it (it is left as it is)\n";
    return 1;
  }

  const std::string tmp = dest + ".tmp";
  bool tmp_made = false;
  auto remove_tmp = [&] {
    if (tmp_made) {
      std::error_code ignored;
      fs::remove(tmp, ignored);
      fs::remove(tmp + "-journal", ignored);
      fs::remove(tmp + "-wal", ignored);
      fs::remove(tmp + "-shm", ignored);
    }
  };
  std::int64_t interactions = 0, schema = 0;
  int pages = 0;
  int lock_fd = -1;  // DEST.tmp's flock, held until the rename (or the failure) is done
  struct Unlock {
    int& fd;
    ~Unlock() {
      if (fd >= 0) {
        ::close(fd);
      }
    }
  } unlock{lock_fd};
  try {
    // The backup holds customers' messages and contact details, as the database does: the
    // daemon user's alone, whatever the umask. A DEST.tmp left by a backup that was killed is
    // ours to replace.
    //
    // Two backups to one DEST at once (a cron job overlapping a manual run) must not share
    // DEST.tmp: the second would delete the first's file, and the first would then rename the
    // second's half-written one to DEST. The running backup holds an flock on DEST.tmp until its
    // rename; another finds it held and stops. (SQLite's own locks are fcntl locks: separate.)
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      throw Failure("cannot create " + tmp + ": " + errno_text(errno));
    }
    lock_fd = fd;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      throw Failure("another backup to " + dest + " is running (it holds " + tmp + ")");
    }
    struct stat st {};
    if (::fstat(fd, &st) == 0 && st.st_size > 0) {
      std::cerr << "switchboard: replacing " << printable(tmp) << ", left by an earlier backup\n";
      if (::ftruncate(fd, 0) != 0) {
        throw Failure("cannot empty " + tmp + ": " + errno_text(errno));
      }
      fs::remove(tmp + "-journal", ec);
    }
    ::fchmod(fd, 0600);
    tmp_made = true;
    {
      storage::Db out(tmp, storage::Db::Mode::standalone);
      {
        // The source's errors are not DEST's: a read-only connection to a WAL database still
        // needs its -shm, which it may not create (a directory it cannot write to), and that
        // was reported as "cannot write the file" though DEST was writable.
        std::optional<storage::Db> source;
        try {
          source.emplace(src, true);
          // The snapshot: from here to the COMMIT below, whatever the daemon commits is not
          // seen.
          source->exec("BEGIN");
          source->exec("SELECT count(*) FROM sqlite_schema");
        } catch (const storage::Error& e) {
          throw Failure("cannot read the database: " +
                        (std::string(e.what()).starts_with("database ")
                             ? std::string(e.what())
                             : storage::database_error(src, e.code, e.what())));
        }
        storage::Db& in = *source;
        storage::Backup copy(out, in);
        auto last_progress = started;
        bool shown = false;
        auto busy_since = std::optional<std::chrono::steady_clock::time_point>();
        for (;;) {
          auto step = copy.step(kStepPages);
          if (step == storage::Backup::Step::done) {
            break;
          }
          auto now = std::chrono::steady_clock::now();
          // A lock in the way (the destination is ours and the source snapshot is held, so
          // this should not happen): wait a little, not spin, and give up after a minute.
          if (step == storage::Backup::Step::busy) {
            if (!busy_since) {
              busy_since = now;
            } else if (now - *busy_since > std::chrono::minutes(1)) {
              throw Failure("the database stayed locked for a minute; nothing was written");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
          }
          busy_since.reset();
          if (now - last_progress > std::chrono::seconds(1)) {
            last_progress = now;
            shown = true;
            int total = copy.total();
            int done = total - copy.remaining();
            std::fprintf(stderr, "%scopied %d of %d pages (%.0f%%)%s", tty ? "\r" : "", done, total,
                         total ? 100.0 * done / total : 0.0, tty ? "" : "\n");
            std::fflush(stderr);
          }
        }
        pages = copy.total();
        copy.finish();
        in.exec("COMMIT");
        if (shown && tty) {
          std::fprintf(stderr, "\r\033[K");
        }
      }
      // The pages carry the source's WAL flag (file format 2): switch the copy to a rollback
      // journal, which rewrites the flag, so that it is one file that opens on its own.
      out.exec("PRAGMA journal_mode=DELETE");
      {
        auto mode = out.prepare("PRAGMA journal_mode");
        if (!mode.step() || mode.text(0) != "delete") {
          throw Failure("the copy stayed in journal mode " + mode.text(0) + ", not delete");
        }
      }
      {
        auto check = out.prepare("PRAGMA quick_check");
        std::string problems;
        while (check.step()) {
          if (check.text(0) != "ok") {
            problems += (problems.empty() ? "" : "; ") + check.text(0);
          }
        }
        if (!problems.empty()) {
          throw Failure("the copy fails PRAGMA quick_check: " + problems);
        }
      }
      // The source's own schema version, copied with it (never migrated: this is a copy).
      auto has = out.prepare(
          "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN "
          "('schema_version', 'interactions')");
      has.step();
      if (has.int64(0) == 2) {
        auto v = out.prepare("SELECT version FROM schema_version");
        schema = v.step() ? v.int64(0) : 0;
        auto n = out.prepare("SELECT count(*) FROM interactions");
        n.step();
        interactions = n.int64(0);
      } else {
        schema = -1;  // not a switchboard database: copied all the same
      }
    }
    if (fs::exists(tmp + "-wal", ec)) {
      throw Failure("the copy left a -wal file beside " + tmp);
    }
    fsync_path(tmp, false);
    install(tmp, dest, force);
    tmp_made = false;
    fsync_path(parent.string(), true);
  } catch (const storage::Error& e) {
    remove_tmp();
    std::cerr << (tty ? "\r\033[K" : "") << "switchboard: backup of " << printable(src) << " to "
              << printable(dest) << " failed: " << printable(explain(e)) << "\n";
    return 1;
  } catch (const std::exception& e) {
    remove_tmp();
    std::cerr << (tty ? "\r\033[K" : "") << "switchboard: backup of " << printable(src) << " to "
              << printable(dest) << " failed: " << printable(e.what()) << "\n";
    return 1;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  auto size = fs::file_size(dest, ec);
  std::cout << "backed up " << src << " to " << dest << ": " << human_size(ec ? 0 : size) << " ("
            << pages << " pages), ";
  if (schema < 0) {
    std::cout << "not a switchboard database, ";
  } else {
    std::cout << interactions << " interactions, schema version " << schema << ", ";
  }
  std::cout << std::fixed;
  std::cout.precision(1);
  std::cout << secs << " s\n";
  return 0;
}

}  // namespace sb
