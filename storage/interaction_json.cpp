#include "storage/interaction_json.hpp"

#include <charconv>
#include <cstring>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/time.hpp"

namespace sb::storage {

namespace {
// The index of the first byte at or after `i` that JSON must escape, or s.size(). Text bodies
// are kilobytes with an escape every line or so: the byte-by-byte test cost about 15
// instructions per byte, a third of the writer's instructions for bench_imap's mail, and SSE2
// (every x86-64 CPU has it) tests 16 bytes in about ten.
std::size_t next_escape(std::string_view s, std::size_t i) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i control_max = _mm_set1_epi8(0x1f);
  for (; i + 16 <= s.size(); i += 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
    // Unsigned v <= 0x1f exactly when min(v, 0x1f) == v.
    __m128i hit = _mm_cmpeq_epi8(_mm_min_epu8(v, control_max), v);
    hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, quote));
    hit = _mm_or_si128(hit, _mm_cmpeq_epi8(v, backslash));
    if (int mask = _mm_movemask_epi8(hit); mask != 0) {
      return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
    }
  }
#endif
  for (; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == '"' || c == '\\') {
      return i;
    }
  }
  return s.size();
}
}  // namespace

// The payload is written straight into a string, in boost::json's output form, because every
// stored interaction builds one on the single writer thread: building a json::object (a hashed
// key per field, an allocation per string) and serialising it was 19% of the writer's
// instructions. Strings are escaped as RFC 8259 section 7 requires ('"', '\\' and the control
// characters); everything else, UTF-8 included, is copied as is, as boost::json does.
void append_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = next_escape(s, 0); i < s.size(); i = next_escape(s, i + 1)) {
    auto c = static_cast<unsigned char>(s[i]);
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

namespace {

// Appends `,"key":` (or `"key":` first in an object). Keys are literals of this file: no escaping.
class Fields {
 public:
  explicit Fields(std::string& out) : out_(out) { out_ += '{'; }
  // One append per key (`,"key":` composed on the stack): four appends, each checking the
  // capacity, were 3% of the writer's instructions under bench_writer.
  std::string& key(std::string_view k) {
    char buf[64];
    std::size_t n = 0;
    if (k.size() + 4 > sizeof buf) {
      if (!first_) {
        out_ += ',';
      }
      first_ = false;
      return out_.append("\"").append(k).append("\":");
    }
    if (!first_) {
      buf[n++] = ',';
    }
    first_ = false;
    buf[n++] = '"';
    std::memcpy(buf + n, k.data(), k.size());
    n += k.size();
    buf[n++] = '"';
    buf[n++] = ':';
    return out_.append(buf, n);
  }
  void str(std::string_view k, std::string_view v) { append_json_string(key(k), v); }
  void num(std::string_view k, std::int64_t v) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    key(k).append(buf, end);
  }
  void boolean(std::string_view k, bool v) { key(k) += v ? "true" : "false"; }
  void null(std::string_view k) { key(k) += "null"; }
  void close() { out_ += '}'; }

 private:
  std::string& out_;
  bool first_ = true;
};

void strings(std::string& out, const std::vector<std::string>& values) {
  out += '[';
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) {
      out += ',';
    }
    append_json_string(out, values[i]);
  }
  out += ']';
}

void identity(std::string& out, const Identity& id) {
  Fields f(out);
  f.str("type", id.type);
  f.str("value", id.value);
  if (!id.name.empty()) {
    f.str("name", id.name);
  }
  if (!id.handle.empty()) {
    f.str("handle", id.handle);
  }
  f.close();
}

void call(std::string& out, const CallInfo& c) {
  Fields f(out);
  f.str("status", c.status);
  // Left out while unknown (a PBX that does not say, no line known yet): SPEC section 5 allows
  // inbound | outbound only. The top-level "direction" is the one routing used.
  if (!c.direction.empty()) {
    f.str("direction", c.direction);
  }
  if (c.duration_s >= 0) {
    f.num("duration_s", c.duration_s);
  }
  if (!c.recording_url.empty()) {
    f.str("recording_url", c.recording_url);
  }
  if (!c.recording_id.empty()) {
    f.str("recording_id", c.recording_id);
  }
  if (!c.answered_by.empty()) {
    f.str("answered_by", c.answered_by);
  }
  if (c.answered_at_ms > 0) {
    f.num("answered_at", c.answered_at_ms);
  }
  if (!c.machine_detection.empty()) {
    f.str("machine_detection", c.machine_detection);
  }
  if (c.machine_detection_at_ms > 0) {
    f.num("machine_detection_at", c.machine_detection_at_ms);
  }
  if (!c.legs.empty()) {
    std::string& out_legs = f.key("legs");
    out_legs += '[';
    for (std::size_t i = 0; i < c.legs.size(); ++i) {
      if (i) {
        out_legs += ',';
      }
      const CallLeg& leg = c.legs[i];
      Fields l(out_legs);
      l.str("id", leg.id);
      l.str("to", leg.to);
      l.str("status", leg.status);
      if (leg.duration_s >= 0) {
        l.num("duration_s", leg.duration_s);
      }
      l.close();
    }
    out_legs += ']';
  }
  f.close();
}

void customer(std::string& out, const StoredMeta& m) {
  Fields c(out);
  c.str("id", m.customer_id);
  c.str("name", m.customer_name);
  c.str("tier", m.customer_tier);
  c.boolean("is_new", m.customer_is_new);
  c.close();
}

}  // namespace

std::string identity_text(const Identity& id) {
  std::string out;
  identity(out, id);
  return out;
}

std::string customer_text(const StoredMeta& m) {
  std::string out;
  customer(out, m);
  return out;
}

std::string call_text(const CallInfo& c) {
  std::string out;
  call(out, c);
  return out;
}

std::string interaction_json(const Inbound& in, const StoredMeta& m,
                             const std::vector<std::string>& flags) {
  std::string out;
  out.reserve(512 + in.text.size() + in.subject.size());
  Fields o(out);
  o.str("id", m.id);
  o.str("channel", in.channel);
  o.str("account", in.account);
  o.str("kind", in.kind);
  o.str("direction", in.direction);
  o.str("external_id", in.external_id);
  o.str("conversation_id", m.conversation_id);
  if (!m.customer_id.empty()) {
    customer(o.key("customer"), m);
  } else {
    o.null("customer");
  }
  if (in.from) {
    identity(o.key("from"), *in.from);
  } else {
    o.null("from");  // withheld caller
  }
  if (in.reply_to) {
    identity(o.key("reply_to"), *in.reply_to);
  }
  o.key("to") += '[';
  for (std::size_t i = 0; i < in.to.size(); ++i) {
    if (i) {
      out += ',';
    }
    identity(out, in.to[i]);
  }
  out += ']';
  if (!in.subject.empty()) {
    o.str("subject", in.subject);
  }
  o.str("text", in.text);
  std::int64_t occurred = in.occurred_at_ms ? in.occurred_at_ms : m.received_at_ms;
  o.str("occurred_at", format_rfc3339(occurred));
  o.str("received_at", format_rfc3339(m.received_at_ms));
  if (!in.in_reply_to.empty()) {
    o.str("in_reply_to", in.in_reply_to);
  }
  if (!in.references.empty()) {
    strings(o.key("references"), in.references);
  }
  if (in.call) {
    call(o.key("call"), *in.call);
  }
  o.key("attachments") += '[';
  for (std::size_t i = 0; i < in.attachments.size(); ++i) {
    const auto& a = in.attachments[i];
    if (i) {
      out += ',';
    }
    Fields f(out);
    f.str("filename", a.filename);
    f.str("content_type", a.content_type);
    f.num("size", a.size);
    f.boolean("stored", a.stored);
    if (!a.url.empty()) {
      f.str("url", a.url);
    }
    f.close();
  }
  out += ']';
  if (flags.empty()) {
    strings(o.key("flags"), in.flags);
  } else {
    std::vector<std::string> all = in.flags;
    all.insert(all.end(), flags.begin(), flags.end());
    strings(o.key("flags"), all);
  }
  o.str("queue", m.queue);
  o.str("priority", m.priority);
  o.close();
  return out;
}

const boost::json::object* reply_recipient(const boost::json::object& parent,
                                           const OwnIdentity& ours) {
  // Not one of ours: an identity object whose (type, value) the channel does not own.
  auto theirs = [&ours](const boost::json::value* v) -> const boost::json::object* {
    const boost::json::object* o = v ? v->if_object() : nullptr;
    if (o == nullptr || !ours) {
      return o;
    }
    auto text = [o](const char* key) -> std::string_view {
      const boost::json::value* f = o->if_contains(key);
      return f && f->is_string() ? std::string_view(f->get_string()) : std::string_view();
    };
    return ours(text("type"), text("value")) ? nullptr : o;
  };
  if (const auto* d = parent.if_contains("direction"); d && d->is_string() && *d == "outbound") {
    const auto* to = parent.if_contains("to");
    if (to && to->is_array()) {
      for (const auto& who : to->as_array()) {
        if (const auto* o = theirs(&who)) {
          return o;
        }
      }
    }
    return nullptr;
  }
  if (const auto* rt = theirs(parent.if_contains("reply_to"))) {
    return rt;
  }
  return theirs(parent.if_contains("from"));
}

}  // namespace sb::storage
