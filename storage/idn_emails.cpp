#include "storage/idn_emails.hpp"

#include <string>
#include <vector>

#include "core/log.hpp"
#include "routing/identity.hpp"

namespace sb::storage {

void ascii_email_domains(Db& db) {
  struct Row {
    std::string value, customer_id;
  };
  // Collected first: the table is not changed under a statement still reading it. Only rows
  // with a non-ASCII byte after the '@' can change (an ASCII domain was lower-cased already).
  std::vector<Row> rows;
  {
    auto all =
        db.prepare("SELECT value, customer_id FROM identities WHERE type = 'email' ORDER BY value");
    while (all.step()) {
      const std::string_view value = all.text_view(0);
      const auto at = value.find('@');
      // A row with invisible padding is one the 20 -> 21 step left (and reported) for its
      // padding, not its domain: reported once, by that step.
      if (at == std::string_view::npos || trim_invisible_padding(value).size() != value.size()) {
        continue;
      }
      for (char c : value.substr(at + 1)) {
        if (static_cast<unsigned char>(c) >= 0x80) {
          rows.push_back(Row{std::string(value), all.text(1)});
          break;
        }
      }
    }
  }
  if (rows.empty()) {
    return;
  }
  auto log = logger("storage");
  auto owner = db.prepare("SELECT customer_id FROM identities WHERE type = 'email' AND value = ?1");
  auto rewrite = db.prepare("UPDATE identities SET value = ?2 WHERE type = 'email' AND value = ?1");
  auto drop = db.prepare("DELETE FROM identities WHERE type = 'email' AND value = ?1");
  int rewritten = 0, dropped = 0, left = 0;
  for (const Row& r : rows) {
    const Canonical c = canonicalize("email", r.value, "");
    if (!c.ok()) {
      log->warn("[{}] customer {}'s email {} has no canonical form ({}): left as it is", db.path(),
                r.customer_id, r.value, c.error);
      ++left;
      continue;
    }
    if (c.value == r.value) {
      continue;
    }
    owner.bind_static(1, c.value);
    std::string holder = owner.step() ? owner.text(0) : std::string();
    owner.reset();
    if (holder.empty()) {
      rewrite.bind_static(1, r.value).bind_static(2, c.value).run();
      ++rewritten;
    } else if (holder == r.customer_id) {
      drop.bind_static(1, r.value).run();
      ++dropped;
    } else {
      log->warn(
          "[{}] email {} is held by customer {}, and customer {} holds it as {}: left as it "
          "is; if the two are one person, merging them is an operator's call",
          db.path(), c.value, holder, r.customer_id, r.value);
      ++left;
    }
  }
  log->info(
      "[{}] email identities with an internationalised domain: {} rewritten to its ASCII form, "
      "{} dropped as duplicates of the same customer's, {} left as they were",
      db.path(), rewritten, dropped, left);
}

}  // namespace sb::storage
