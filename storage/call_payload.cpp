#include "storage/call_payload.hpp"

#include <simdjson.h>

#include <algorithm>
#include <boost/json.hpp>
#include <vector>

#include "storage/interaction_json.hpp"

namespace sb::storage {
namespace od = simdjson::ondemand;

namespace {

bool get_string(od::value v, std::string& out) {
  std::string_view s;
  if (v.get_string().get(s)) {
    return false;
  }
  out.assign(s);
  return true;
}

// Sets `out` when `v` is an integer; leaves it as it was otherwise.
void get_int(od::value v, std::int64_t& out) {
  std::int64_t n;
  if (!v.get_int64().get(n)) {
    out = n;
  }
}

// Calls f(key, value) for each field of `v` when it is an object (a null "from" or "customer"
// has none); false when the text is broken.
template <class F>
bool each_field(od::value v, F&& f) {
  od::object o;
  if (v.get_object().get(o)) {
    return true;
  }
  for (auto field : o) {
    std::string_view key;
    od::value value;
    if (field.unescaped_key().get(key) || field.value().get(value)) {
      return false;
    }
    f(key, value);
  }
  return true;
}

// Where `raw` (a view into `base`) lies in it.
CallPayload::Range range_of(const char* base, std::string_view raw) {
  return {static_cast<std::size_t>(raw.data() - base), raw.size()};
}

// "legs": [{"id","to","status","duration_s"}] (child legs of the call, in arrival order).
bool read_legs(od::value v, std::vector<CallLeg>& out) {
  od::array legs;
  if (v.get_array().get(legs)) {
    return false;
  }
  for (auto item : legs) {
    od::value leg_value;
    if (item.get(leg_value)) {
      return false;
    }
    CallLeg leg;
    bool ok = each_field(leg_value, [&](std::string_view k, od::value lv) {
      if (k == "id") {
        get_string(lv, leg.id);
      } else if (k == "to") {
        get_string(lv, leg.to);
      } else if (k == "status") {
        get_string(lv, leg.status);
      } else if (k == "duration_s") {
        get_int(lv, leg.duration_s);
      }
    });
    if (!ok || leg.id.empty()) {
      return false;
    }
    out.push_back(std::move(leg));
  }
  return true;
}

bool read_call(std::string_view raw, CallInfo& out) {
  thread_local od::parser parser;  // not the outer document's: that one is still being read
  simdjson::padded_string text(raw);
  od::document doc;
  od::object o;
  if (parser.iterate(text).get(doc) || doc.get_object().get(o)) {
    return false;
  }
  bool has_status = false;
  for (auto field : o) {
    std::string_view key;
    od::value v;
    if (field.unescaped_key().get(key) || field.value().get(v)) {
      return false;
    }
    if (key == "status") {
      has_status = get_string(v, out.status);
    } else if (key == "direction") {
      get_string(v, out.direction);
    } else if (key == "duration_s") {
      get_int(v, out.duration_s);
    } else if (key == "recording_url") {
      get_string(v, out.recording_url);
    } else if (key == "recording_id") {
      get_string(v, out.recording_id);
    } else if (key == "answered_by") {
      get_string(v, out.answered_by);
    } else if (key == "answered_at") {
      get_int(v, out.answered_at_ms);
    } else if (key == "machine_detection") {
      get_string(v, out.machine_detection);
    } else if (key == "machine_detection_at") {
      get_int(v, out.machine_detection_at_ms);
    } else if (key == "legs" && !read_legs(v, out.legs)) {
      return false;
    }
  }
  // "" is a status too: no event of the call has carried one yet (a recording callback that
  // arrived first). Such a call must still take its later events and be swept after 4 hours.
  return has_status;
}

}  // namespace

std::optional<CallPayload> read_call_payload(std::string_view payload) {
  thread_local od::parser parser;
  simdjson::padded_string text(payload);
  const char* base = text.data();
  od::document doc;
  od::object top;
  if (parser.iterate(text).get(doc) || doc.get_object().get(top)) {
    return std::nullopt;
  }
  CallPayload p;
  bool has_call = false, has_queue = false, has_priority = false;
  for (auto field : top) {
    std::string_view key, raw;
    od::value v;
    if (field.unescaped_key().get(key) || field.value().get(v)) {
      return std::nullopt;
    }
    if (key == "call") {
      od::object call;
      if (v.get_object().get(call) || call.raw_json().get(raw) || !read_call(raw, p.call)) {
        return std::nullopt;
      }
      p.call_range = range_of(base, raw);
      has_call = true;
    } else if (key == "queue" || key == "priority") {
      // The raw token (quotes included) is what gets replaced; the value is a plain string.
      raw = v.raw_json_token();
      if (!get_string(v, key == "queue" ? p.queue : p.priority)) {
        return std::nullopt;
      }
      while (!raw.empty() && raw.back() != '"') {
        raw.remove_suffix(1);  // raw_json_token may carry trailing whitespace
      }
      (key == "queue" ? p.queue_range : p.priority_range) = range_of(base, raw);
      (key == "queue" ? has_queue : has_priority) = true;
    } else if (key == "conversation_id") {
      get_string(v, p.conversation_id);
    } else if (key == "from") {
      bool ok = each_field(v, [&](std::string_view fk, od::value fv) {
        if (fk == "value") {
          get_string(fv, p.from_value);
        }
      });
      if (!ok) {
        return std::nullopt;
      }
    } else if (key == "customer") {
      bool ok = each_field(v, [&](std::string_view ck, od::value cv) {
        if (ck == "id") {
          get_string(cv, p.customer_id);
        } else if (ck == "tier") {
          get_string(cv, p.customer_tier);
        } else if (ck == "is_new") {
          bool b = false;
          if (!cv.get_bool().get(b)) {
            p.customer_is_new = b;
          }
        }
      });
      if (!ok) {
        return std::nullopt;
      }
    }
  }
  if (!has_call || !has_queue || !has_priority) {
    return std::nullopt;
  }
  return p;
}

std::string rewrite_call_payload(std::string_view payload, const CallPayload& where,
                                 const CallInfo& call, const std::string* queue,
                                 const std::string* priority) {
  struct Edit {
    CallPayload::Range range;
    std::string text;
  };
  std::vector<Edit> edits;
  edits.push_back({where.call_range, call_text(call)});
  if (queue) {
    std::string q;
    append_json_string(q, *queue);
    edits.push_back({where.queue_range, std::move(q)});
  }
  if (priority) {
    std::string p;
    append_json_string(p, *priority);
    edits.push_back({where.priority_range, std::move(p)});
  }
  std::sort(edits.begin(), edits.end(),
            [](const Edit& a, const Edit& b) { return a.range.at < b.range.at; });
  std::string out;
  out.reserve(payload.size() + 64);
  std::size_t pos = 0;
  for (const auto& e : edits) {
    out.append(payload.substr(pos, e.range.at - pos));
    out += e.text;
    pos = e.range.at + e.range.size;
  }
  out.append(payload.substr(pos));
  return out;
}

std::string with_caller(std::string_view payload, const Identity& from, const std::string& id,
                        const std::string& name, const std::string& tier, bool is_new,
                        const std::optional<Identity>& line, std::string_view direction) {
  StoredMeta m;
  m.customer_id = id;
  m.customer_name = name;
  m.customer_tier = tier;
  m.customer_is_new = is_new;
  boost::json::object o = boost::json::parse(payload).as_object();
  o["from"] = boost::json::parse(identity_text(from));
  o["customer"] = boost::json::parse(customer_text(m));
  if (line) {
    o["to"] = boost::json::array{boost::json::parse(identity_text(*line))};
  }
  if (!direction.empty()) {
    o["direction"] = direction;
  }
  return boost::json::serialize(o);
}

std::string with_unmatched_from(std::string_view payload, const Identity& from) {
  boost::json::object o = boost::json::parse(payload).as_object();
  o["from"] = boost::json::parse(identity_text(from));
  return boost::json::serialize(o);
}

}  // namespace sb::storage
