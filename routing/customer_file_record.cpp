#include "routing/customer_file_record.hpp"

#include <array>

#include <boost/json/value.hpp>

#include "core/printable.hpp"
#include "routing/identity.hpp"

namespace sb {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// A value as it appears in an error message: quoted, shortened, control characters replaced,
// so a hostile file cannot smuggle terminal escapes into the import report.
std::string quoted(std::string_view v) {
  return "\"" + printable(v, 60) + "\"";
}

// JSON Lines "handles" keys and the identity type each holds.
constexpr std::array<std::string_view, 6> kHandleTypes = {"mastodon",  "x",         "telegram",
                                                          "instagram", "messenger", "whatsapp"};

}  // namespace

std::string RecordBuilder::lower_trimmed(std::string_view s) {
  std::string out(trim(s));
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

void RecordBuilder::start() {
  rec_ = CustomerRecord{};
  error_.clear();
}

void RecordBuilder::fail(std::string error) {
  if (error_.empty()) {
    error_ = std::move(error);
  }
}

void RecordBuilder::finish(ParsedLine& out) {
  if (ok() && rec_.external_id.empty()) {
    fail("external_id is missing or empty");
  }
  if (ok()) {
    out.record = std::move(rec_);
  } else {
    out.error = std::move(error_);
  }
}

void RecordBuilder::add_identity(std::string_view column, std::string_view type,
                                 std::string_view raw) {
  raw = trim(raw);
  if (raw.empty()) {
    return;
  }
  Canonical c = canonicalize(type, raw, region_);
  if (c.withheld()) {
    fail(std::string(column) + " " + quoted(raw) + ": a withheld caller id, not a phone number");
    return;
  }
  if (!c.ok()) {
    if (type == "email" && c.error.ends_with("(one address only)")) {
      // A file can give several: said how, in this file's form.
      c.error.insert(c.error.size() - 1, column == "emails"
                                             ? ": give each as its own string in the list"
                                             : ": separate several with ';'");
    }
    fail(std::string(column) + " " + quoted(raw) + ": " + c.error);
    return;
  }
  for (const Identity& have : rec_.identities) {
    if (have.type == c.type && have.value == c.value) {
      return;
    }
  }
  Identity id;
  id.type = std::move(c.type);
  id.value = std::move(c.value);
  rec_.identities.push_back(std::move(id));
  rec_.notes.push_back(c.note.empty() ? std::string() : quoted(raw) + ": " + c.note);
}

void RecordBuilder::add_tag(std::string_view raw) {
  raw = trim(raw);
  if (raw.empty()) {
    return;
  }
  std::vector<std::string>& tags = rec_.tags ? *rec_.tags : rec_.tags.emplace();
  for (const std::string& t : tags) {
    if (t == raw) {
      return;
    }
  }
  tags.emplace_back(raw);
}

void RecordBuilder::csv_cell(std::string_view column, std::string_view identity_type,
                             std::string_view cell) {
  // CSV cells are checked here; boost::json already checks JSON strings.
  if (!is_valid_utf8(cell)) {
    fail(std::string(column) + ": invalid UTF-8");
    return;
  }
  if (column == "external_id") {
    rec_.external_id = trim(cell);
  } else if (column == "name") {
    // A column in the header is given on every line: an empty cell clears the field (an
    // empty tier says the customer has no tier); a column not in the header is left alone.
    rec_.name = trim(cell);
  } else if (column == "tier") {
    rec_.tier = trim(cell);
  } else {
    if (column == "tags" && !rec_.tags) {
      rec_.tags.emplace();  // an empty cell is no tags, as for name and tier
    }
    // tags and identity columns: several values separated by ';'.
    while (!cell.empty() && ok()) {
      const auto semi = cell.find(';');
      const std::string_view part = cell.substr(0, semi);
      if (identity_type.empty()) {
        add_tag(part);
      } else {
        add_identity(column, identity_type, part);
      }
      cell = semi == std::string_view::npos ? std::string_view() : cell.substr(semi + 1);
    }
  }
}

bool RecordBuilder::json_string(std::string_view field, const boost::json::value& v,
                                std::string& out) {
  if (v.is_null()) {
    return true;
  }
  if (!v.is_string()) {
    fail(std::string(field) + ": expected a string");
    return false;
  }
  out = trim(std::string_view(v.get_string()));
  return true;
}

void RecordBuilder::json_list(std::string_view field, std::string_view identity_type,
                              const boost::json::value& v) {
  if (v.is_null()) {
    return;
  }
  if (!v.is_array()) {
    fail(std::string(field) + ": expected an array of strings");
    return;
  }
  for (const boost::json::value& item : v.get_array()) {
    if (!item.is_string()) {
      fail(std::string(field) + ": expected an array of strings");
      return;
    }
    const std::string_view s = item.get_string();
    if (identity_type.empty()) {
      add_tag(s);
    } else {
      add_identity(field, identity_type, s);
    }
    if (!ok()) {
      return;
    }
  }
}

void RecordBuilder::json_object(const boost::json::value& v) {
  if (!v.is_object()) {
    fail("expected a JSON object");
    return;
  }
  for (const auto& kv : v.get_object()) {
    const std::string_view key = kv.key();
    const boost::json::value& val = kv.value();
    if (key == "external_id") {
      if (!val.is_string()) {
        fail("external_id: expected a string");
      } else {
        json_string(key, val, rec_.external_id);
      }
    } else if (key == "name") {
      // A key that is present, even "" or null, clears the field; an absent key leaves it.
      json_string(key, val, rec_.name.emplace());
    } else if (key == "tier") {
      json_string(key, val, rec_.tier.emplace());
    } else if (key == "emails") {
      json_list(key, "email", val);
    } else if (key == "phones") {
      json_list(key, "phone", val);
    } else if (key == "tags") {
      rec_.tags.emplace();
      json_list(key, "", val);
    } else if (key == "handles") {
      if (val.is_null()) {
        continue;
      }
      if (!val.is_object()) {
        fail("handles: expected an object of arrays");
        return;
      }
      for (const auto& h : val.get_object()) {
        const std::string_view platform = h.key();
        const std::string field = "handles." + std::string(platform);
        bool known = false;
        for (std::string_view t : kHandleTypes) {
          known = known || t == platform;
        }
        if (!known) {
          fail("unknown field " + quoted(field));
          return;
        }
        json_list(field, platform, h.value());
        if (!ok()) {
          return;
        }
      }
    } else {
      fail("unknown field " + quoted(key));
    }
    if (!ok()) {
      return;
    }
  }
}

}  // namespace sb
