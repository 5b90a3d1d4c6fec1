// `switchboard customers import` and `switchboard customers show`.
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <vector>

#include "core/printable.hpp"
#include "core/time.hpp"
#include "daemon/commands.hpp"
#include "routing/customer_file.hpp"
#include "routing/identity.hpp"
#include "routing/identity_links.hpp"
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
  std::size_t extensions = 0;  // phone extensions the identities leave out (Canonical::note)
  // As of the last commit: what a failure further on leaves in the database.
  struct Committed {
    std::size_t inserted = 0, updated = 0, rejected = 0;
    std::size_t line = 0;  // the line of the last record committed; 0: none yet
  } committed;
  std::size_t line_no = 0;  // the line being imported
  auto started = std::chrono::steady_clock::now();
  auto last_progress = started;
  bool tty = isatty(fileno(stderr));
  bool progress_shown = false;  // a tty's progress line is on screen, to clear before a message
  auto clear_progress = [&] {
    if (tty && progress_shown) {
      std::fprintf(stderr, "\r\033[K");
      progress_shown = false;
    }
  };
  // Each rejected line is said when it is met, on stderr: kept until the end, a file of a
  // million bad lines held ~100 MB of messages and showed nothing until it was read through.
  auto reject = [&](std::size_t at, const std::string& why) {
    ++rejected;
    clear_progress();
    // Reasons quote the file and the database.
    std::fprintf(stderr, "line %zu: %s\n", at, printable(why).c_str());
  };
  // Progress by lines read, at most once a second: counted at commits only, a file whose lines
  // mostly fail (never reaching a commit) showed none.
  auto show_progress = [&] {
    auto now = std::chrono::steady_clock::now();
    if (now - last_progress <= std::chrono::seconds(1)) {
      return;
    }
    last_progress = now;
    clear_progress();
    std::fprintf(stderr, "read %zu lines: inserted %zu, updated %zu, rejected %zu", line_no,
                 inserted, updated, rejected);
    if (reader->total_bytes() > 0) {
      std::fprintf(stderr, " (%.0f%%)",
                   100.0 * static_cast<double>(reader->bytes_consumed()) /
                       static_cast<double>(reader->total_bytes()));
    }
    std::fputs(tty ? "" : "\n", stderr);
    std::fflush(stderr);
    progress_shown = tty;
  };
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
      storage::migrate(*db);  // made at the current version: nothing older to upgrade
    } else {
      // Only `run` upgrades a file. An import may run beside the daemon: one that upgraded the
      // file under an older daemon still running (the binary replaced, the daemon not yet
      // restarted) left that daemon on a schema it does not know, and a rollback to the old
      // binary refused the file. Refused like `customers show` does (README: Upgrading).
      storage::require_current_schema(*db);
    }
    storage::CustomerImporter importer(*db);
    while (auto line = reader->next()) {
      line_no = line->line_no;
      show_progress();
      if (!line->record) {
        reject(line->line_no, line->error);
        continue;
      }
      // A transaction begins at a batch's first record, not right after the last commit: the
      // write lock is held only while there is a record to write, not while the file is read.
      if (in_tx == 0) {
        importer.begin();
      }
      const auto& r = *line->record;
      storage::CustomerUpsert up{r.external_id,
                                 r.name.value_or(""),
                                 r.tier.value_or(""),
                                 r.tags.value_or(std::vector<std::string>{}),
                                 r.identities,
                                 r.name.has_value(),
                                 r.tier.has_value(),
                                 r.tags.has_value(),
                                 r.notes};
      for (const auto& n : r.notes) {
        extensions += n.empty() ? 0 : 1;
      }
      switch (importer.upsert(up, error)) {
        case storage::CustomerImporter::Result::inserted:
          ++inserted;
          break;
        case storage::CustomerImporter::Result::updated:
          ++updated;
          break;
        case storage::CustomerImporter::Result::rejected:
          reject(line->line_no, error);
          break;
      }
      if (++in_tx == kPerTransaction) {
        importer.commit();
        in_tx = 0;
        committed = {inserted, updated, rejected, line_no};
      }
    }
    // A read error (a disk failing under the file, an NFS server gone) ends the input early:
    // the lines after it were never read, so the batch in progress is rolled back as for any
    // failure, and the report below says what was committed.
    if (!reader->read_error().empty()) {
      throw std::runtime_error(reader->read_error());
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
    clear_progress();
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
    if (rejected > committed.rejected) {
      // They were said as they were met: the lines are bad whatever happened to the batch.
      std::cerr << "switchboard: " << (rejected - committed.rejected)
                << " more lines were rejected after the last commit (said above)\n";
    }
    std::cerr << "switchboard: run the same command again once the cause is fixed: records are "
                 "upserted by external_id, so those already imported are updated, not added "
                 "twice\n";
    return 1;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  clear_progress();
  std::cout << "inserted " << inserted << ", updated " << updated << ", rejected " << rejected
            << " (" << file << ", " << std::fixed;
  std::cout.precision(1);
  std::cout << secs << " s)\n";
  if (extensions > 0) {
    // Said once, not per line: a CRM may give many desk numbers.
    std::cout << "note: " << extensions
              << " phone numbers had an extension, dropped: a customer is matched by the line's "
                 "number (E.164 has no extension)\n";
  }
  return rejected ? 1 : 0;
}

namespace {

// A customer a query names, and how: "" for its id or external id, else the identity
// ("x 12345"), for telling apart the customers of an ambiguous query.
struct Match {
  std::string customer_id, via;
};

// QUERY -> the customers it names: an id, an external id, or an identity in any form people
// type. An identity query is tried as every type it can be, and every customer found is
// returned, not the first: a bare "12345" may be an X user of one customer and a Telegram user
// of another, "@boblee" the username of users of two platforms (or, in a database from before
// the daemon moved usernames to their new holder, of two users of one).
std::vector<Match> resolve(storage::Db& db, const config::Config& cfg, const std::string& q) {
  if (q.empty()) {
    return {};
  }
  if (storage::load_customer(db, q)) {
    return {{q, ""}};
  }
  if (auto id = storage::find_customer_by_external_id(db, q)) {
    return {{*id, ""}};
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
  std::vector<Match> out;
  auto add = [&](const std::string& id, const std::string& via) {
    for (const auto& m : out) {
      if (m.customer_id == id) {
        return;
      }
    }
    out.push_back({id, via});
  };
  for (const auto& t : types) {
    auto c = canonicalize(t, q, cfg.matching.default_region);
    if (!c.ok()) {
      continue;
    }
    if (auto id = storage::find_customer_id(db, c.type, c.value)) {
      add(*id, c.type + " " + c.value);
      continue;
    }
    // "boblee" as a username: a customer file's x_handle is exact, but a customer a message
    // created has the user id (x 12345) with the username in its handle ("BobLee"), found as
    // customer matching finds it (routing/identity_links.hpp).
    if (const auto* link = link_to(c.type); link && link->by_username) {
      for (const auto& h :
           storage::find_username_holders(db, std::string(link->type), username_key(c.value))) {
        add(h.customer_id, h.identity.type + " " + h.identity.value);
      }
    }
  }
  return out;
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
  storage::require_current_schema(db);
  // One snapshot for the lookup and the record: between two reads the daemon may delete the
  // customer the first one found (the voice path drops a customer its own call line made).
  db.exec("BEGIN");
  std::vector<storage::CustomerView> found;
  std::vector<std::string> via;
  for (const auto& m : resolve(db, cfg, query)) {
    // An identity whose customer is gone names nobody.
    if (auto c = storage::load_customer(db, m.customer_id)) {
      found.push_back(std::move(*c));
      via.push_back(m.via);
    }
  }
  if (found.empty()) {
    db.exec("COMMIT");
    std::cerr << "switchboard: no customer matches \"" << printable(query) << "\"\n";
    return 1;
  }
  if (found.size() > 1) {
    db.exec("COMMIT");
    std::cerr << "switchboard: \"" << printable(query) << "\" matches " << found.size()
              << " customers; give one's id:\n";
    for (std::size_t i = 0; i < found.size(); ++i) {
      std::cerr << "  " << printable(found[i].id) << "  " << printable(via[i])
                << (found[i].name.empty() ? "" : "  " + printable(found[i].name)) << "\n";
    }
    return 1;
  }
  const auto* c = &found.front();
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
  // No byte budget: the command prints a line of each, and runs once.
  auto timeline = storage::customer_timeline(db, c->id, 50, "").rows;
  std::cout << "  timeline (" << timeline.size()
            << (timeline.size() == 50 ? "+, newest first)\n" : ", newest first)\n");
  for (const auto& row : timeline) {
    auto o = boost::json::parse(row.payload).as_object();
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
  db.exec("COMMIT");
  return 0;
}

}  // namespace sb
