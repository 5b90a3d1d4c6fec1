#include "storage/padded_identities.hpp"

#include <string>
#include <vector>

#include "core/log.hpp"
#include "routing/identity.hpp"

namespace sb::storage {
namespace {

struct Padded {
  std::string type, value, customer_id;
};

// "U+FEFF U+200B before, U+00A0 after": the padding of `value` around `trimmed` (a view into it),
// as a log line can show characters nobody sees.
std::string padding_names(std::string_view value, std::string_view trimmed) {
  const auto lead = static_cast<std::size_t>(trimmed.data() - value.data());
  const auto tail = value.size() - lead - trimmed.size();
  std::string out;
  if (lead > 0) {
    out = code_point_names(value.substr(0, lead)) + " before";
  }
  if (tail > 0) {
    out += out.empty() ? "" : ", ";
    out += code_point_names(value.substr(lead + trimmed.size())) + " after";
  }
  return out;
}

}  // namespace

void trim_padded_identities(Db& db) {
  // Every row is read once, and trim_invisible_padding itself decides (no SQL copy of its list
  // of characters to keep in step). The few padded rows are collected first: a table is not
  // changed under a statement that is still reading it.
  std::vector<Padded> padded;
  {
    auto all = db.prepare("SELECT type, value, customer_id FROM identities ORDER BY type, value");
    while (all.step()) {
      const std::string_view value = all.text_view(1);
      if (trim_invisible_padding(value).size() != value.size()) {
        padded.push_back(Padded{all.text(0), std::string(value), all.text(2)});
      }
    }
  }
  if (padded.empty()) {
    return;
  }
  auto log = logger("storage");
  auto owner = db.prepare("SELECT customer_id FROM identities WHERE type = ?1 AND value = ?2");
  auto rewrite = db.prepare("UPDATE identities SET value = ?3 WHERE type = ?1 AND value = ?2");
  auto drop = db.prepare("DELETE FROM identities WHERE type = ?1 AND value = ?2");
  int rewritten = 0, dropped = 0, left = 0;
  for (const Padded& p : padded) {
    const std::string_view trimmed = trim_invisible_padding(p.value);
    if (trimmed.empty()) {
      log->warn(
          "[{}] customer {}'s {} identity is invisible padding only ({}): left as it is; it "
          "matches nothing",
          db.path(), p.customer_id, p.type, code_point_names(p.value));
      ++left;
      continue;
    }
    owner.bind_static(1, p.type).bind_static(2, trimmed);
    std::string holder = owner.step() ? owner.text(0) : std::string();
    owner.reset();
    if (holder.empty()) {
      rewrite.bind_static(1, p.type).bind_static(2, p.value).bind_static(3, trimmed).run();
      ++rewritten;
    } else if (holder == p.customer_id) {
      drop.bind_static(1, p.type).bind_static(2, p.value).run();
      ++dropped;
    } else {
      // The padded row stays with its customer: messages and `customers show` find the holder
      // of the trimmed form, as they did since the trimming; this one only by its customer id.
      log->warn(
          "[{}] {} {} is held by customer {}, and customer {} holds it with invisible padding "
          "({}): left as it is; if the two are one person, merging them is an operator's call",
          db.path(), p.type, trimmed, holder, p.customer_id, padding_names(p.value, trimmed));
      ++left;
    }
  }
  log->info(
      "[{}] identities stored with invisible padding: {} trimmed, {} dropped as duplicates of "
      "the same customer's, {} left as they were",
      db.path(), rewritten, dropped, left);
}

}  // namespace sb::storage
