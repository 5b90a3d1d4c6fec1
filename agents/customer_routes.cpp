// GET /v1/customers/{id} and GET /v1/customers/{id}/interactions (SPEC section 3 "Agents").
// Authorised by any agent token or any [api] token (the read APIs). The timeline is newest
// first by when each interaction happened (storage::customer_timeline), with cursor
// pagination: `before` is the id of the last interaction of the previous page, and
// `next_before` in the answer is the cursor for the next page (null at the end). A page ends
// early at about kPageBytes of payloads (at least one interaction), with a cursor.
// Each interaction carries its `events` (claim, release, transfer, reply, finish, dead_letter,
// and on replies provider_status: who, when, in the order they happened) and, for replies, the
// `send` state.
#include <boost/json.hpp>
#include <charconv>

// GCC 12 false positive inside Asio's awaitable frame allocator (see imap_client.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "agents/service.hpp"
#include "core/ids.hpp"
#include "storage/customers.hpp"

namespace sb::agents {
namespace json = boost::json;

namespace {
constexpr int kDefaultLimit = 50;
constexpr int kMaxLimit = 200;
// About this many bytes of payloads per timeline page, whatever the limit: an interaction's
// payload holds up to a MiB of text (an email body), and 200 of them made one answer of 200 MB,
// built in memory. The page ends early and next_before continues it.
constexpr std::size_t kPageBytes = 4 * 1024 * 1024;
}  // namespace

// GET /v1/interactions/{id}/attachments/{n}: the bytes of attachment n (its position in the
// interaction's "attachments" list), when the channel kept them ("stored": true).
Service::Awaitable Service::attachment(http::Request& r) {
  if (auto denied = reader_denied(r)) {
    co_return *denied;
  }
  const std::string id = r.params["id"];
  const std::string n = r.params["n"];
  if (n.empty() || n.size() > 6 || n.find_first_not_of("0123456789") != std::string::npos) {
    co_return http::error(400, "invalid_field", "the attachment number must be 0, 1, 2, ...");
  }
  auto st = records_.db().prepare(
      "SELECT filename, content_type, data FROM attachments WHERE interaction_id=?1 AND idx=?2");
  st.bind(1, id).bind(2, static_cast<std::int64_t>(std::stoll(n)));
  if (!st.step()) {
    co_return http::error(404, "not_found",
                          "interaction " + id + " has no stored attachment number " + n +
                              " (unknown interaction, no such attachment, or over the size cap)");
  }
  std::string filename = st.text(0);
  std::string type = st.text(1);
  // A type that could split the response head (never from GMime; belt and braces) is none.
  if (type.find_first_of("\r\n") != std::string::npos) {
    type.clear();
  }
  http::Response res{200, type.empty() ? "application/octet-stream" : type, st.text(2), {}};
  // RFC 6266: the UTF-8 name percent-encoded in filename*, and a plain ASCII fallback.
  std::string ascii, encoded;
  for (unsigned char c : filename) {
    bool plain = std::isalnum(c) || c == '.' || c == '-' || c == '_';
    ascii += (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? static_cast<char>(c) : '_';
    if (plain) {
      encoded += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      encoded += buf;
    }
  }
  res.headers.emplace_back("Content-Disposition",
                           "attachment; filename=\"" + ascii + "\"; filename*=UTF-8''" + encoded);
  // The type is what the sender declared (text/html, image/svg+xml...): a browser must neither
  // guess another one nor run what it renders, should a viewer show the file inline.
  res.headers.emplace_back("X-Content-Type-Options", "nosniff");
  res.headers.emplace_back("Content-Security-Policy", "sandbox");
  co_return res;
}

Service::Awaitable Service::customer(http::Request& r) {
  if (auto denied = reader_denied(r)) {
    co_return *denied;
  }
  const std::string id = r.params["id"];
  auto c = storage::load_customer(records_.db(), id);
  if (!c) {
    co_return http::error(404, "not_found", "no customer has the id " + id);
  }
  json::array identities;
  for (const auto& i : c->identities) {
    json::object o{{"type", i.type}, {"value", i.value}};
    if (!i.handle.empty()) {
      o["handle"] = i.handle;
    }
    identities.push_back(std::move(o));
  }
  json::error_code ec;
  auto tags = json::parse(c->tags_json, ec);
  json::object out{
      {"id", c->id},
      {"external_id", c->external_id.empty() ? json::value(nullptr) : json::value(c->external_id)},
      {"name", c->name},
      {"tier", c->tier},
      {"tags", ec ? json::value(json::array{}) : tags},
      {"created_at", format_ms(c->created_at)},
      {"identities", std::move(identities)}};
  co_return http::json(200, json::serialize(out));
}

Service::Awaitable Service::timeline(http::Request& r) {
  if (auto denied = reader_denied(r)) {
    co_return *denied;
  }
  const std::string id = r.params["id"];
  int limit = kDefaultLimit;
  std::string before;
  std::string target = "?" + std::string(r.query);
  auto u = boost::urls::parse_uri_reference(target);
  if (!u) {
    co_return http::error(400, "invalid_query", "the query string is malformed");
  }
  for (auto p : u->params()) {
    if (p.key == "limit") {
      // Digits only: std::stoi also took " 5" and "+5", and its exceptions were the parser.
      const std::string& v = p.value;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), limit);
      if (ec != std::errc() || end != v.data() + v.size() || limit < 1 || limit > kMaxLimit) {
        co_return http::error(400, "invalid_query",
                              "limit must be an integer from 1 to " + std::to_string(kMaxLimit));
      }
    } else if (p.key == "before") {
      // The cursor is compared with interaction ids as text: anything but an upper-case ULID
      // ("null", a lower-cased id, one cut short) sorts after every id, and the "next page"
      // was page one again, so a client that paged until next_before was null never ended.
      if (!is_ulid(p.value)) {
        co_return http::error(400, "invalid_query",
                              "before must be the id of an interaction, as given in next_before "
                              "(26 characters of upper-case Crockford base32)");
      }
      before = p.value;
    }
  }
  if (!storage::load_customer(records_.db(), id)) {
    co_return http::error(404, "not_found", "no customer has the id " + id);
  }
  auto page = storage::customer_timeline(records_.db(), id, limit, before, kPageBytes);
  std::string body = "{\"customer_id\":" + json::serialize(json::value(id)) + ",\"interactions\":[";
  for (std::size_t i = 0; i < page.rows.size(); ++i) {
    body += (i ? "," : "") + records_.decorate(page.rows[i].payload);
  }
  body += "],\"next_before\":";
  // A page cut at kPageBytes has more after it, as a full one may: the same cursor either way.
  bool more = page.cut || static_cast<int>(page.rows.size()) == limit;
  body += more && !page.rows.empty() ? json::serialize(json::value(page.rows.back().id))
                                     : std::string("null");
  body += "}";
  co_return http::json(200, std::move(body));
}

}  // namespace sb::agents
