// switchboard: the command line (SPEC section 1). Parses arguments, loads the config, and hands
// over to App (run), config::load_file (check-config), the customer commands or backup.
#include <csignal>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/log.hpp"
#include "daemon/app.hpp"
#include "daemon/commands.hpp"

namespace {

constexpr const char* kUsage = R"(switchboard — one inbox for email, calls and social media

Usage:
  switchboard run [--config PATH]                      run the daemon in the foreground
  switchboard check-config [--config PATH]             validate a config file
  switchboard customers import [--config PATH] FILE    import customers (CSV or .jsonl)
  switchboard customers show [--config PATH] QUERY     show a customer and their timeline
  switchboard backup [--config PATH] [--force] DEST    copy the database, also while it runs
  switchboard --version

Config: --config PATH (or -c PATH, --config=PATH), else $SWITCHBOARD_CONFIG (empty: unset),
else ./switchboard.toml, else built-in defaults (listen 127.0.0.1:8080, database
./var/switchboard.db, redis://127.0.0.1:6379/0; no API tokens and no agents). `run` logs which
config it uses.
A commented example: config/switchboard.example.toml. Run `switchboard COMMAND --help` for
details of one command. Log level: SWITCHBOARD_LOG=trace|debug|info|warn|error|critical|off
(any case; default info).
)";

constexpr const char* kRunHelp = R"(switchboard run [--config PATH]

Runs the daemon in the foreground, logging to stderr. It serves the HTTP API (ingest, webhooks,
agents, /healthz, /readyz, /metrics), polls the configured channels, stores every interaction in
SQLite and projects it into Redis Streams.

Signals: SIGTERM/SIGINT stop taking work, finish requests in flight, flush the outbox to Redis
and exit 0. SIGHUP re-reads the config file and applies the routing rules, the agents, the
[api] tokens and the rotated secrets of channel accounts whose secrets alone changed: webhook
signing secrets, and the IMAP/SMTP passwords and social access tokens (from the next login,
poll or send). A *_file secret is read again; a *_env one keeps its start-up value. Other
changes are logged as waiting for a restart. A bad file is rejected (its problems are logged)
and the old settings stay in force.
)";

constexpr const char* kCheckHelp = R"(switchboard check-config [--config PATH]

Validates the config file and prints each problem as PATH:LINE: message. Exit status 0 when
valid, 1 when not. Secrets given as *_env must be set in the environment, and those given as
*_file must be readable.
)";

constexpr const char* kImportHelp = R"(switchboard customers import [--config PATH] FILE

Imports customers from CSV (header row: external_id,name,email,phone,tier,tags,mastodon,x,
telegram; several values in one cell separated by ';') or JSON Lines (FILE ending in .jsonl:
{"external_id":"c-1","name":"Ann Lee","emails":[...],"phones":[...],"handles":{"x":[...]},
"tier":"vip","tags":["b2b"]}). Upserts by external_id: name, tier and tags that the file
does not give (no such column, no such key) keep their stored values; an empty cell, "" or
null clears them. Identities are only ever added. Prints inserted / updated / rejected
counts and each rejected line with its number and reason; progress goes to stderr.
Phones without +country use matching.default_region. Exit 1 when any line was rejected.
Records are committed every 20,000. When the database fails mid-file (locked past the 5 s busy
timeout, disk full), what was committed stays and the error says through which line; running
the same command again completes the import (already imported records are updated).
Secrets given as *_env or *_file in the config need not be set or readable: this command
uses none.
)";

constexpr const char* kShowHelp = R"(switchboard customers show [--config PATH] QUERY

Finds a customer by customer id, external id, email, phone or handle (@user@domain for
Mastodon, @name for X/Telegram/Instagram: a username from a customer file or the one a user
last wrote under) and prints the record, its identities and its interaction timeline, newest
first. A query that names several customers (one username on two platforms, one number as an X
and a Telegram id) lists their ids and how each matched, and exits 1: show one by its id.
Exit 1 also when no customer matches, or when the database is not switchboard's or not at this
binary's schema version. Secrets given as *_env or *_file in the config need not be set or
readable.
)";

constexpr const char* kBackupHelp = R"(switchboard backup [--config PATH] [--force] DEST

Writes a consistent copy of the database (storage.path) to the file DEST, also while
`switchboard run` is writing to it: the copy is one snapshot, taken with SQLite's online backup
API through a read transaction that never blocks the daemon. Without the daemon's -wal and
-shm files: DEST is a self-contained SQLite database (rollback journal), checked with PRAGMA
quick_check. It is written to DEST.tmp (mode 0600, in DEST's directory), synced, then renamed
to DEST. Progress goes to stderr for a large database; the last line gives the size, the
interactions and the time taken.

--force replaces an existing DEST (without it, an existing DEST is an error and stays as it
is). DEST may not be the live database. Exit 1 when the backup fails (no database, DEST's
directory missing, disk full...); nothing is left behind but what was there before.
Secrets given as *_env or *_file in the config need not be set or readable. To restore a backup, see the README
("Backup and restore"): stop the daemon first, and clear the Redis prefix's keys.
)";

struct Args {
  std::optional<std::string> config;
  std::vector<std::string> positional;
  bool help = false;
  bool force = false;  // backup only
  std::string error;
};

Args parse(int argc, char** argv, int from, bool allow_force = false) {
  Args a;
  for (int i = from; i < argc; ++i) {
    std::string s = argv[i];
    if (s == "--help" || s == "-h") {
      a.help = true;
    } else if (s == "--force" && allow_force) {
      a.force = true;
    } else if (s == "--config" || s == "-c") {
      if (i + 1 >= argc) {
        a.error = "--config needs a PATH";
        return a;
      }
      a.config = argv[++i];
    } else if (s.starts_with("--config=")) {
      a.config = s.substr(9);
    } else if (s.starts_with("-") && s != "-") {
      a.error = "unknown option " + s;
      return a;
    } else {
      a.positional.push_back(s);
    }
  }
  // An empty PATH (`--config ""`, `--config=`: an unset shell variable, say) is no file: taken as
  // absent, it ran on the built-in defaults instead of the config the operator meant.
  if (a.config && a.config->empty()) {
    a.error = "--config needs a PATH, and it was given an empty one";
  }
  return a;
}

// What becomes of the warnings of a config that loads: check-config prints them, `run` logs
// them once at start-up (not again on SIGHUP), the customer commands have no use for them.
enum class Warnings { print, log, ignore };

// Loads the config or prints its problems; nullopt means "exit 1".
std::optional<sb::config::Config> load(const Args& a, Warnings warnings,
                                       const sb::config::LoadOptions& options = {}) {
  std::string path = sb::config::resolve_path(a.config);
  if (path.empty()) {
    return sb::config::defaults();
  }
  auto r = sb::config::load_file(path, options);
  if (!r.config) {
    for (const auto& p : r.problems) {
      std::cerr << p.to_string() << "\n";
    }
    std::cerr << "switchboard: " << path << " is invalid (" << r.problems.size() << " problem"
              << (r.problems.size() == 1 ? "" : "s") << ")\n";
    return std::nullopt;
  }
  for (const auto& w : r.warnings) {
    if (warnings == Warnings::print) {
      std::cerr << "warning: " << w.to_string() << "\n";
    } else if (warnings == Warnings::log) {
      sb::logger("config")->warn("[config] {}", w.to_string());
    }
  }
  return r.config;
}

int usage_error(const std::string& msg, const char* help) {
  std::cerr << "switchboard: " << msg << "\n\n" << help;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* lvl = std::getenv("SWITCHBOARD_LOG")) {
    if (!sb::set_log_level(lvl)) {
      std::cerr << "switchboard: SWITCHBOARD_LOG=\"" << lvl
                << "\" is not a log level (trace, debug, info, warn, error, critical, off); "
                   "logging at info\n";
    }
  }
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "--version" || cmd == "version") {
    std::cout << "switchboard " << SWITCHBOARD_VERSION << "\n";
    return 0;
  }
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::cout << kUsage;
    return 0;
  }
  try {
    if (cmd == "run" || cmd == "check-config") {
      const char* help = cmd == "run" ? kRunHelp : kCheckHelp;
      Args a = parse(argc, argv, 2);
      if (a.help) {
        std::cout << help;
        return 0;
      }
      if (!a.error.empty() || !a.positional.empty()) {
        return usage_error(a.error.empty() ? "unexpected argument " + a.positional[0] : a.error,
                           help);
      }
      auto cfg = load(a, cmd == "run" ? Warnings::log : Warnings::print);
      if (!cfg) {
        return 1;
      }
      if (cmd == "check-config") {
        std::string path = sb::config::resolve_path(a.config);
        std::cout << (path.empty() ? "built-in defaults" : path) << ": ok\n";
        return 0;
      }
      return sb::run_daemon(*cfg);
    }
    if (cmd == "customers") {
      std::string sub = argc > 2 ? argv[2] : "";
      if (sub != "import" && sub != "show") {
        if (sub == "--help" || sub == "-h") {
          std::cout << kImportHelp << "\n" << kShowHelp;
          return 0;
        }
        return usage_error("customers needs a subcommand: import or show", kUsage);
      }
      const char* help = sub == "import" ? kImportHelp : kShowHelp;
      Args a = parse(argc, argv, 3);
      if (a.help) {
        std::cout << help;
        return 0;
      }
      if (!a.error.empty() || a.positional.size() != 1) {
        return usage_error(
            a.error.empty() ? (sub == "import" ? "give exactly one FILE" : "give exactly one QUERY")
                            : a.error,
            help);
      }
      // These commands touch the database only: the channels', agents' and Redis's secrets
      // need not be in this shell's environment.
      auto cfg = load(a, Warnings::ignore, sb::config::LoadOptions{.require_env_secrets = false});
      if (!cfg) {
        return 1;
      }
      return sub == "import" ? sb::import_customers(*cfg, a.positional[0])
                             : sb::show_customer(*cfg, a.positional[0]);
    }
    if (cmd == "backup") {
      Args a = parse(argc, argv, 2, true);
      if (a.help) {
        std::cout << kBackupHelp;
        return 0;
      }
      if (!a.error.empty() || a.positional.size() != 1) {
        return usage_error(a.error.empty() ? (a.positional.empty() ? "give the backup's file DEST"
                                                                   : "give exactly one DEST")
                                           : a.error,
                           kBackupHelp);
      }
      // Like the customer commands, it touches the database only: no secrets needed.
      auto cfg = load(a, Warnings::ignore, sb::config::LoadOptions{.require_env_secrets = false});
      if (!cfg) {
        return 1;
      }
      return sb::backup_database(*cfg, a.positional[0], a.force);
    }
    return usage_error("unknown command " + cmd, kUsage);
  } catch (const std::exception& e) {
    std::cerr << "switchboard: " << e.what() << "\n";
    return 1;
  }
}
