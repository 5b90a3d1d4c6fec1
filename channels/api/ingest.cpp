#include "channels/api/ingest.hpp"

#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <cctype>
#include <chrono>
#include <iterator>

#include "core/json_problem.hpp"
#include "core/time.hpp"
#include "routing/identity.hpp"
#include "storage/async_pipeline.hpp"

namespace sb::api {
namespace json = boost::json;

namespace {

constexpr std::size_t kMaxShort = 256;  // source, external_id, thread_key, identities

const char* kKinds[] = {"email", "call", "mention", "direct_message", "comment", "message"};
const char* kPlatforms[] = {"mastodon", "x", "messenger", "instagram", "telegram", "whatsapp"};

template <std::size_t N>
bool one_of(std::string_view v, const char* (&set)[N]) {
  for (auto* s : set) {
    if (v == s) {
      return true;
    }
  }
  return false;
}

// `source` becomes the account and a metrics label: keep it to a small, safe alphabet.
bool valid_source(std::string_view s) {
  if (s.empty() || s.size() > 64) {
    return false;
  }
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

struct Fields {
  const json::object& o;
  std::string error;
  // Reads an optional string field; false (with error set) when present but not a string.
  bool str(std::string_view name, std::string& out, std::size_t max, const char* path = nullptr) {
    auto* v = o.if_contains(name);
    if (!v || v->is_null()) {
      return true;
    }
    std::string field = path ? std::string(path) : std::string(name);
    if (!v->is_string()) {
      error = "field \"" + field + "\" must be a string";
      return false;
    }
    if (v->as_string().size() > max) {
      error = "field \"" + field + "\" is longer than " + std::to_string(max) + " bytes";
      return false;
    }
    out = v->as_string();
    return true;
  }
};

// Whether a Content-Type names JSON. Media types are case-insensitive and their parameters are
// not part of the type (RFC 9110 section 8.3.1): "Application/JSON; charset=UTF-8" is JSON,
// "text/plain; format=json" is not. Structured "+json" types (RFC 6838) are JSON too, and so are
// the older text/json and application/x-json some clients still send.
bool is_json_media_type(std::string_view content_type) {
  std::string_view s = content_type.substr(0, content_type.find(';'));
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  std::string type(s);
  for (char& c : type) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return type.ends_with("/json") || type.ends_with("/x-json") || type.ends_with("+json");
}

ParsedIngest fail(std::string message) {
  return ParsedIngest{std::nullopt, "invalid_field", std::move(message)};
}

}  // namespace

ParsedIngest parse_ingest(std::string_view body, std::string_view default_region) {
  json::error_code ec;
  // Boost.JSON rejects invalid UTF-8 in strings, so everything stored is valid UTF-8. The parsed
  // tree lives in a stack buffer (heap only past 4 KiB): one request, no per-node allocations.
  unsigned char scratch[4096];
  json::monotonic_resource mr(scratch, sizeof scratch);
  json::value v = json::parse(body, ec, &mr);
  if (ec) {
    return ParsedIngest{std::nullopt, "invalid_json",
                        "the body is not valid JSON: " + json_problem(body)};
  }
  if (!v.is_object()) {
    return ParsedIngest{std::nullopt, "invalid_json", "the body must be a JSON object"};
  }
  const auto& o = v.as_object();
  Fields f{o, {}};
  Inbound in;
  in.channel = "api";
  std::string kind = "message", occurred, thread_key;
  if (!f.str("source", in.account, kMaxShort) || !f.str("external_id", in.external_id, kMaxShort) ||
      !f.str("kind", kind, kMaxShort) || !f.str("subject", in.subject, 4096) ||
      !f.str("text", in.text, 1 << 20) || !f.str("occurred_at", occurred, 64) ||
      !f.str("thread_key", thread_key, kMaxShort)) {
    return fail(f.error);
  }
  if (in.account.empty()) {
    return fail("field \"source\" is required");
  }
  if (!valid_source(in.account)) {
    return fail("field \"source\" must be 1-64 characters of letters, digits, '-', '_' or '.'");
  }
  if (in.external_id.empty()) {
    return fail("field \"external_id\" is required");
  }
  if (!one_of(kind, kKinds)) {
    return fail(
        "field \"kind\" must be one of email, call, mention, direct_message, comment, message");
  }
  in.kind = kind;
  if (!occurred.empty()) {
    auto t = parse_rfc3339(occurred);
    if (!t) {
      return fail("field \"occurred_at\" must be an RFC 3339 time such as 2026-01-02T03:04:05Z");
    }
    in.occurred_at_ms = *t;
  }
  if (!thread_key.empty()) {
    std::string key = "api:" + in.account + ":" + thread_key;
    in.thread_lookup.push_back(key);
    in.thread_record.push_back(std::move(key));
  }

  auto* from = o.if_contains("from");
  if (!from || from->is_null()) {
    return fail("field \"from\" is required: give email, phone, or platform and handle");
  }
  if (!from->is_object()) {
    return fail("field \"from\" must be an object");
  }
  Fields ff{from->as_object(), {}};
  std::string email, phone, platform, handle, name;
  if (!ff.str("email", email, kMaxShort, "from.email") ||
      !ff.str("phone", phone, kMaxShort, "from.phone") ||
      !ff.str("platform", platform, kMaxShort, "from.platform") ||
      !ff.str("handle", handle, kMaxShort, "from.handle") ||
      !ff.str("name", name, kMaxShort, "from.name")) {
    return fail(ff.error);
  }
  // Every identity given is checked and kept: `from` the first of email, phone, platform +
  // handle (what the payload shows and the rules see, as when only one was sent), the others
  // matched after it (SPEC section 3: at least one; issue 2: exact match on any identity).
  std::vector<Identity> ids;
  if (!email.empty()) {
    auto c = canonicalize("email", email, default_region);
    if (!c.ok()) {
      return fail("field \"from.email\": " + c.error);
    }
    ids.push_back(Identity{c.type, c.value, name, ""});
  }
  if (!phone.empty()) {
    auto c = canonicalize("phone", phone, default_region);
    if (!c.ok()) {
      return fail("field \"from.phone\": " + c.error);
    }
    ids.push_back(Identity{c.type, c.value, name, ""});
  }
  if (!platform.empty() || !handle.empty()) {
    if (!one_of(platform, kPlatforms)) {
      return fail(
          "field \"from.platform\" must be one of mastodon, x, messenger, instagram, "
          "telegram, whatsapp");
    }
    if (handle.empty()) {
      return fail("field \"from.handle\" is required with from.platform");
    }
    auto c = canonicalize(platform, handle, default_region);
    if (!c.ok()) {
      return fail("field \"from.handle\": " + c.error);
    }
    ids.push_back(Identity{c.type, c.value, name, handle});
  }
  if (ids.empty()) {
    return fail("field \"from\" must hold email, phone, or platform and handle");
  }
  in.from = std::move(ids.front());
  in.also_from.assign(std::make_move_iterator(ids.begin() + 1), std::make_move_iterator(ids.end()));
  return ParsedIngest{std::move(in), "", ""};
}

// `source` is the client's to choose: its first kMaxSourceSeries values each get a series of
// their own, the rest count under account="_other" (see CounterCache).
constexpr std::size_t kMaxSourceSeries = 100;

void add_routes(http::Router& router, IngestRoutes& d) {
  struct Counted {
    explicit Counted(Metrics& m)
        : stored(m, "switchboard_interactions_total", {"channel", "account"}, kMaxSourceSeries),
          duplicates(m, "switchboard_duplicates_total", {"channel", "account"}, kMaxSourceSeries) {}
    CounterCache stored, duplicates;  // by account, kept (see CounterCache)
  };
  auto counted = std::make_shared<Counted>(d.metrics);
  // Run by the server on the header alone when the body is still to come (http::Gate), and by
  // the handler.
  auto refused = [&d](const http::Request& r) -> std::optional<http::Response> {
    auto token = http::bearer_token(r);
    if (token.empty()) {
      return http::unauthorized("missing Authorization: Bearer <api token>");
    }
    if (!d.tokens.contains(token)) {
      return http::unauthorized("unknown api token");
    }
    return std::nullopt;
  };
  router.add(
      "POST", "/v1/interactions",
      [&d, counted, refused](http::Request& r) -> boost::asio::awaitable<http::Response> {
        auto start = std::chrono::steady_clock::now();
        if (auto denied = refused(r)) {
          co_return std::move(*denied);
        }
        auto ct = r.header("content-type");
        if (!ct.empty() && !is_json_media_type(ct)) {
          co_return http::error(415, "unsupported_media_type",
                                "Content-Type must be application/json, not " + std::string(ct));
        }
        auto parsed = parse_ingest(r.body, d.default_region);
        if (!parsed.inbound) {
          co_return http::error(400, parsed.error_code, parsed.error);
        }
        std::string account = parsed.inbound->account;
        std::vector<Inbound> items;
        items.push_back(std::move(*parsed.inbound));
        auto out = co_await async_submit(d.pipeline, std::move(items), std::nullopt,
                                         boost::asio::use_awaitable);
        const auto& o = out.at(0);
        if (!o.error.empty()) {
          co_return http::error(503, "storage_unavailable",
                                "the interaction could not be stored: " + o.error);
        }
        d.metrics.observe(
            "switchboard_ingest_seconds",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        (o.duplicate ? counted->duplicates : counted->stored).inc({"api", account});
        json::object body{{"id", o.id}, {"duplicate", o.duplicate}};
        co_return http::json(o.duplicate ? 200 : 202, json::serialize(body));
      },
      refused);
}

}  // namespace sb::api
