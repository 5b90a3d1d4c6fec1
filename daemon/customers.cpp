// `switchboard customers import` and `switchboard customers show`.
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "core/printable.hpp"
#include "core/time.hpp"
#include "daemon/commands.hpp"
#include "routing/customer_file.hpp"
#include "routing/identity.hpp"
#include "storage/customers.hpp"
#include "storage/schema.hpp"

namespace sb {

int import_customers(const config::Config& cfg, const std::string& file) {
  std::string error;
  auto reader = CustomerFileReader::open(file, cfg.matching.default_region, error);
  if (!reader) {
    std::cerr << "switchboard: " << printable(error) << "\n";  // may quote the file's header
    return 1;
  }
  storage::Db db(cfg.storage.path);
  storage::migrate(db);
  storage::CustomerImporter importer(db);

  constexpr std::size_t kPerTransaction = 20000;
  std::size_t inserted = 0, updated = 0, rejected = 0, in_tx = 0;
  std::vector<std::string> rejections;
  auto started = std::chrono::steady_clock::now();
  auto last_progress = started;
  bool tty = isatty(fileno(stderr));
  importer.begin();
  while (auto line = reader->next()) {
    if (!line->record) {
      ++rejected;
      rejections.push_back("line " + std::to_string(line->line_no) + ": " + line->error);
      continue;
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
      importer.begin();
      in_tx = 0;
      auto now = std::chrono::steady_clock::now();
      if (now - last_progress > std::chrono::seconds(1)) {
        last_progress = now;
        double pct = reader->total_bytes() ? 100.0 * static_cast<double>(reader->bytes_consumed()) /
                                                 static_cast<double>(reader->total_bytes())
                                           : 0;
        std::fprintf(stderr, "%simported %zu records (%.0f%%)%s", tty ? "\r" : "",
                     inserted + updated + rejected, pct, tty ? "" : "\n");
        std::fflush(stderr);
      }
    }
  }
  importer.commit();
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
