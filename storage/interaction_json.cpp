#include "storage/interaction_json.hpp"

#include <boost/json.hpp>

#include "core/time.hpp"

namespace sb::storage {
namespace json = boost::json;

namespace {
json::object identity_json(const Identity& id) {
  json::object o;
  o["type"] = id.type;
  o["value"] = id.value;
  if (!id.name.empty()) {
    o["name"] = id.name;
  }
  if (!id.handle.empty()) {
    o["handle"] = id.handle;
  }
  return o;
}
}  // namespace

json::object call_json(const CallInfo& c) {
  json::object o;
  o["status"] = c.status;
  o["direction"] = c.direction;
  if (c.duration_s >= 0) {
    o["duration_s"] = c.duration_s;
  }
  if (!c.recording_url.empty()) {
    o["recording_url"] = c.recording_url;
  }
  return o;
}

json::object interaction_json(const Inbound& in, const StoredMeta& m) {
  json::object o;
  o.reserve(20);
  o["id"] = m.id;
  o["channel"] = in.channel;
  o["account"] = in.account;
  o["kind"] = in.kind;
  o["direction"] = in.direction;
  o["external_id"] = in.external_id;
  o["conversation_id"] = m.conversation_id;
  if (!m.customer_id.empty()) {
    json::object c;
    c["id"] = m.customer_id;
    c["name"] = m.customer_name;
    c["tier"] = m.customer_tier;
    c["is_new"] = m.customer_is_new;
    o["customer"] = std::move(c);
  } else {
    o["customer"] = nullptr;
  }
  if (in.from) {
    o["from"] = identity_json(*in.from);
  } else {
    o["from"] = nullptr;  // withheld caller
  }
  json::array to;
  for (const auto& t : in.to) {
    to.push_back(identity_json(t));
  }
  o["to"] = std::move(to);
  if (!in.subject.empty()) {
    o["subject"] = in.subject;
  }
  o["text"] = in.text;
  std::int64_t occurred = in.occurred_at_ms ? in.occurred_at_ms : m.received_at_ms;
  o["occurred_at"] = format_rfc3339(occurred);
  o["received_at"] = format_rfc3339(m.received_at_ms);
  if (!in.in_reply_to.empty()) {
    o["in_reply_to"] = in.in_reply_to;
  }
  if (in.call) {
    o["call"] = call_json(*in.call);
  }
  json::array atts;
  for (const auto& a : in.attachments) {
    atts.push_back(json::object{{"filename", a.filename},
                                {"content_type", a.content_type},
                                {"size", a.size},
                                {"stored", a.stored}});
  }
  o["attachments"] = std::move(atts);
  json::array flags;
  for (const auto& f : in.flags) {
    flags.push_back(json::string(f));
  }
  o["flags"] = std::move(flags);
  o["queue"] = m.queue;
  o["priority"] = m.priority;
  return o;
}

}  // namespace sb::storage
