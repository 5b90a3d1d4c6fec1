#include "storage/call_parties.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

namespace sb::storage {

RawParties raw_parties(const Inbound& in) {
  RawParties raw;
  std::optional<Identity> first = in.from;
  std::optional<Identity> second;
  if (!in.to.empty()) {
    second = in.to.front();
  }
  // A channel that knew the call was outbound already put the customer (`to`) in from.
  bool outbound = in.call && in.call->direction == "outbound";
  raw.from = outbound ? second : first;
  raw.to = outbound ? first : second;
  return raw;
}

namespace {

std::optional<Identity> stored_identity(const boost::json::value* v) {
  const auto* o = v ? v->if_object() : nullptr;
  const auto* type = o ? o->if_contains("type") : nullptr;
  const auto* value = o ? o->if_contains("value") : nullptr;
  if (!type || !value || !type->is_string() || !value->is_string()) {
    return std::nullopt;
  }
  return Identity{std::string(type->get_string()), std::string(value->get_string()), "", ""};
}

}  // namespace

RawParties stored_parties(std::string_view payload) {
  RawParties raw;
  boost::system::error_code ec;
  auto doc = boost::json::parse(payload, ec);
  const auto* o = ec ? nullptr : doc.if_object();
  if (!o) {
    return raw;
  }
  raw.from = stored_identity(o->if_contains("from"));
  const auto* to = o->if_contains("to");
  if (to && to->is_array() && !to->get_array().empty()) {
    raw.to = stored_identity(&to->get_array()[0]);
  }
  return raw;
}

Parties parties_for(const RawParties& raw, std::string_view direction) {
  if (direction == "outbound") {
    return Parties{raw.to, raw.from};
  }
  return Parties{raw.from, raw.to};
}

CallLines::CallLines(Db& db)
    : find_line_(db.prepare("SELECT 1 FROM call_lines WHERE account=?1 AND type=?2 AND value=?3")),
      insert_line_(
          db.prepare("INSERT OR IGNORE INTO call_lines(account, type, value) VALUES (?1, ?2, ?3)")),
      delete_line_(db.prepare("DELETE FROM call_lines WHERE account=?1 AND type=?2 AND value=?3")) {
}

bool CallLines::is_line(const std::string& account, const Identity& id) {
  find_line_.bind_static(1, account).bind_static(2, id.type).bind_static(3, id.value);
  bool found = find_line_.step();
  find_line_.reset();
  return found;
}

Inferred CallLines::infer_direction(const std::string& account, const RawParties& raw,
                                    const std::function<bool(const Identity&)>& is_customer) {
  bool from_ours = raw.from && is_line(account, *raw.from);
  bool to_ours = raw.to && is_line(account, *raw.to);
  if (from_ours != to_ours) {
    return Inferred{from_ours ? "outbound" : "inbound", true};
  }
  if (from_ours) {
    return {};  // a call between two of our lines: nothing to tell
  }
  bool from_known = raw.from && is_customer(*raw.from);
  bool to_known = raw.to && is_customer(*raw.to);
  if (from_known != to_known) {
    return Inferred{to_known ? "outbound" : "inbound", false};
  }
  return {};
}

void CallLines::remember(const std::string& account, const Identity& line) {
  insert_line_.bind_static(1, account).bind_static(2, line.type).bind_static(3, line.value);
  insert_line_.run();
}

void CallLines::forget(const std::string& account, const Identity& line) {
  delete_line_.bind_static(1, account).bind_static(2, line.type).bind_static(3, line.value);
  delete_line_.run();
}

}  // namespace sb::storage
