// `switchboard customers import` and `switchboard customers show`.
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <vector>

#include "core/printable.hpp"
#include "core/time.hpp"
#include "daemon/commands.hpp"
#include "routing/customer_file.hpp"
#include "routing/identity.hpp"
#include "storage/customers.hpp"
#include "storage/schema.hpp"

namespace sb {

std::string database_named(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  const bool relative = std::filesystem::path(path).is_relative();
  return printable(ec ? path : abs.lexically_normal().string()) +
         (relative ? " (storage.path, relative to the working directory)" : " (storage.path)");
}

namespace {
// Whether storage.path names a database file (or anything else SQLite would refuse to create).
bool database_exists(const std::string& path) {
  std::error_code ec;
  return std::filesystem::exists(std::filesystem::symlink_status(path, ec));
}
}  // namespace

int import_customers(const config::Config& cfg, const std::string& file) {
  std::string error;
  auto reader = CustomerFileReader::open(file, cfg.matching.default_region, error);
  if (!reader) {
    std::cerr << "switchboard: " << printable(error) << "\n";  // may quote the file's header
    return 1;
  }
  constexpr std::size_t kPerTransaction = 20000;
  std::size_t inserted = 0, updated = 0, rejected = 0, in_tx = 0;
  std::vector<std::string> rejections;
  // As of the last commit: what a failure further on leaves in the database.
  struct Committed {
    std::size_t inserted = 0, updated = 0, rejected = 0, rejections = 0;
    std::size_t line = 0;  // the line of the last record committed; 0: none yet
  } committed;
  std::size_t line_no = 0;  // the line being imported
  auto started = std::chrono::steady_clock::now();
  auto last_progress = started;
  bool tty = isatty(fileno(stderr));
  std::optional<storage::Db> db;
  try {
    // An import may make the database (a fresh install's customers come before its first run),
    // but storage.path is relative to the working directory: run from another one, it made a
    // new empty database there without a word, and the daemon never saw the customers.
    const bool existed = database_exists(cfg.storage.path);
    db.emplace(cfg.storage.path);
    if (!existed) {
      std::cerr << "switchboard: created a new database at " << database_named(cfg.storage.path)
                << "\n";
    }
    storage::migrate(*db);
    storage::CustomerImporter importer(*db);
    while (auto line = reader->next()) {
      line_no = line->line_no;
      if (!line->record) {
        ++rejected;
        rejections.push_back("line " + std::to_string(line->line_no) + ": " + line->error);
        continue;
      }
      // A transaction begins at a batch's first record, not right after the last commit: the
      // write lock is held only while there is a record to write, not while the file is read.
      if (in_tx == 0) {
        importer.begin();
      }
      const auto& r = *line->record;
      storage::CustomerUpsert up{r.external_id,       r.name.value_or(""),
                                 r.tier.value_or(""), r.tags.value_or(std::vector<std::string>{}),
                                 r.identities,        r.name.has_value(),
                                 r.tier.has_value(),  r.tags.has_value()};
      switch (importer.upsert(up, error)) {
        case storage::CustomerImporter::Result::inserted:
          ++inserted;
          break;
        case storage::CustomerImporter::Result::updated:
          ++updated;
          break;
        case storage::CustomerImporter::Result::rejected:
          ++rejected;
          rejections.push_back("line " + std::to_string(line->line_no) + ": " + error);
          break;
      }
      if (++in_tx == kPerTransaction) {
        importer.commit();
        in_tx = 0;
        committed = {inserted, updated, rejected, rejections.size(), line_no};
        auto now = std::chrono::steady_clock::now();
        if (now - last_progress > std::chrono::seconds(1)) {
          last_progress = now;
          double pct = reader->total_bytes()
                           ? 100.0 * static_cast<double>(reader->bytes_consumed()) /
                                 static_cast<double>(reader->total_bytes())
                           : 0;
          std::fprintf(stderr, "%simported %zu records (%.0f%%)%s", tty ? "\r" : "",
                       inserted + updated + rejected, pct, tty ? "" : "\n");
          std::fflush(stderr);
        }
      }
    }
    if (in_tx > 0) {
      importer.commit();
    }
  } catch (const std::exception& e) {
    // A busy database (the daemon, or another import, held the write lock past the busy
    // timeout), a full disk, an I/O error: the batches committed before stay, the one in
    // progress is rolled back (SQLite may have done so already). Re-running the same file is
    // safe: records are upserted by external_id and identities only ever added, so the lines
    // already committed come out as "updated" and the database ends as one clean run leaves it.
    if (db) {
      try {
        db->exec("ROLLBACK");
      } catch (const std::exception&) {
        // no transaction was open, or SQLite rolled it back itself
      }
    }
    if (tty) {
      std::fprintf(stderr, "\r\033[K");
    }
    for (std::size_t i = 0; i < committed.rejections; ++i) {
      std::cout << printable(rejections[i]) << "\n";
    }
    std::cout.flush();
    std::cerr << "switchboard: " << printable(file);
    if (line_no > 0) {
      std::cerr << ": the import stopped at line " << line_no;
    }
    std::cerr << ": " << printable(e.what()) << "\n";
    if (committed.line == 0) {
      std::cerr << "switchboard: nothing from " << printable(file) << " was committed\n";
    } else {
      std::cerr << "switchboard: committed: the records through line " << committed.line
                << " (inserted " << committed.inserted << ", updated " << committed.updated
                << ", rejected " << committed.rejected
                << "); nothing after that line was imported\n";
    }
    std::cerr << "switchboard: run the same command again once the cause is fixed: records are "
                 "upserted by external_id, so those already imported are updated, not added "
                 "twice\n";
    return 1;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (tty) {
    std::fprintf(stderr, "\r\033[K");
  }
  for (const auto& r : rejections) {
    std::cout << printable(r) << "\n";  // reasons quote the file and the database
  }
  std::cout << "inserted " << inserted << ", updated " << updated << ", rejected " << rejected
            << " (" << file << ", " << std::fixed;
  std::cout.precision(1);
  std::cout << secs << " s)\n";
  return rejected ? 1 : 0;
}

namespace {

// QUERY -> customer id: an id, an external id, or an identity in any form people type.
std::optional<std::string> resolve(storage::Db& db, const config::Config& cfg,
                                   const std::string& q) {
  if (storage::load_customer(db, q)) {
    return q;
  }
  if (auto id = storage::find_customer_by_external_id(db, q)) {
    return id;
  }
  std::vector<std::string> types;
  if (q.find('@') != std::string::npos && q[0] != '@') {
    types = {"email", "mastodon"};
  } else if (q[0] == '@' && q.find('@', 1) != std::string::npos) {
    types = {"mastodon"};
  } else if (q[0] == '@') {
    types = {"x", "telegram", "instagram"};
  } else {
    types = {"phone", "whatsapp", "x", "telegram", "messenger", "instagram"};
  }
  for (const auto& t : types) {
    auto c = canonicalize(t, q, cfg.matching.default_region);
    if (!c.ok()) {
      continue;
    }
    if (auto id = storage::find_customer_id(db, c.type, c.value)) {
      return id;
    }
  }
  return std::nullopt;
}

}  // namespace

int show_customer(const config::Config& cfg, const std::string& query) {
  // Read-only, so nothing is created; said plainly rather than as SQLite's "unable to open
  // database file", since a relative storage.path run from another directory is the usual cause.
  if (!database_exists(cfg.storage.path)) {
    std::cerr << "switchboard: no database at " << database_named(cfg.storage.path) << "\n";
    return 1;
  }
  storage::Db db(cfg.storage.path, true);
  auto id = resolve(db, cfg, query);
  if (!id) {
    std::cerr << "switchboard: no customer matches \"" << printable(query) << "\"\n";
    return 1;
  }
  auto c = storage::load_customer(db, *id);
  // Names, tags, handles, subjects and texts come from customers, providers and imported
  // files: every one goes through printable() so that none can drive the terminal.
  auto field = [](const std::string& v) { return v.empty() ? std::string("-") : printable(v); };
  std::cout << "customer " << printable(c->id) << "\n";
  std::cout << "  external id  " << field(c->external_id) << "\n";
  std::cout << "  name         " << field(c->name) << "\n";
  std::cout << "  tier         " << field(c->tier) << "\n";
  std::cout << "  tags         " << printable(c->tags_json) << "\n";
  std::cout << "  since        " << format_rfc3339(c->created_at) << "\n";
  std::cout << "  identities\n";
  for (const auto& i : c->identities) {
    std::cout << "    " << printable(i.type) << "  " << printable(i.value)
              << (i.handle.empty() ? "" : "  (" + printable(i.handle) + ")") << "\n";
  }
  auto timeline = storage::customer_timeline(db, c->id, 50, "");
  std::cout << "  timeline (" << timeline.size()
            << (timeline.size() == 50 ? "+, newest first)\n" : ", newest first)\n");
  for (const auto& p : timeline) {
    auto o = boost::json::parse(p).as_object();
    auto str = [&](const char* k) -> std::string {
      auto* v = o.if_contains(k);
      return v && v->is_string() ? printable(v->as_string()) : "";
    };
    // The text's first 60 characters (code points: a byte count could split one).
    std::string what = str("subject");
    if (what.empty()) {
      auto* text = o.if_contains("text");
      what = text && text->is_string() ? printable(text->as_string(), 60) : "";
    }
    std::cout << "    " << str("occurred_at") << "  " << str("channel") << "/" << str("kind")
              << "  " << str("direction") << "  " << str("queue") << "  " << what << "\n";
  }
  return 0;
}

}  // namespace sb
