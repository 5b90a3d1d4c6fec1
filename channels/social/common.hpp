#pragma once
// Small pieces every social platform module shares: an HTTP request description for the
// senders and pollers (built here, sent elsewhere), a header lookup seam, the phone
// canonicaliser seam, and tolerant JSON field access.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

namespace sb::social {

// A request to make, relative to the channel's base_url: `target` is path + query to append to
// the base URL's path. Headers may hold secrets (Authorization): never log them, and never log
// a Telegram target (the bot token is part of the path).
struct HttpRequestSpec {
  std::string method;
  std::string target;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// Returns a request header's value (case-insensitive name), or nullopt when absent.
using HeaderLookup = std::function<std::optional<std::string>(std::string_view name)>;

// Canonicalises a phone number to E.164 ("+14155550100"); nullopt when it is not a number.
// `region` is the ISO 3166-1 alpha-2 default region for numbers without a country code.
using PhoneCanonicaliser =
    std::function<std::optional<std::string>(std::string_view raw, std::string_view region)>;

// Tolerant accessors: a missing key or a wrong type yields the fallback, never an exception.
// Providers add fields and occasionally send numbers as strings (and the reverse).
std::string str_at(const boost::json::object& o, std::string_view key);
const boost::json::object* obj_at(const boost::json::object& o, std::string_view key);
const boost::json::array* arr_at(const boost::json::object& o, std::string_view key);
std::optional<std::int64_t> int_at(const boost::json::object& o, std::string_view key);
bool bool_at(const boost::json::object& o, std::string_view key);

// Numeric id strings ("109876543210987654") compared as numbers: shorter is smaller, then
// lexicographic. Mastodon, X and Telegram ids outgrow 53-bit doubles, so never go through JSON
// numbers or std::stod.
bool id_less(std::string_view a, std::string_view b);

// How far back a poll reads again below its cursor (see held_back_id).
inline constexpr std::int64_t kCursorOverlapMs = 30'000;

// A cursor id held back by kCursorOverlapMs of Snowflake time, for a poll to read again what
// became visible after a newer id had been read: X's ids (posts and DM events) are only roughly
// in time order. The Snowflake's time is `id >> shift` (X: 22), counted from some epoch;
// `min_time` is the least time part a real one has, so that a small counter (or a fake's) is
// left alone. `id` itself when it is not such a decimal Snowflake. (Mastodon's notification ids
// are a plain sequence: its poller reads one advance again instead, mastodon_poller.cpp.)
std::string held_back_id(std::string_view id, int shift, std::int64_t min_time);

// ASCII lower-casing (identities are compared byte-wise after this).
std::string ascii_lower(std::string_view s);

// A channel's base_url split up, for the HTTP client and for Mastodon's instance domain.
// `path` has no trailing '/', so `path + target` is the request target.
struct BaseUrl {
  std::string scheme;  // http | https
  std::string host;    // lower-cased, no port
  std::uint16_t port = 0;
  std::string path;
};
std::optional<BaseUrl> parse_base_url(std::string_view url);

// The last path segment of a URL ("https://cdn.example/m/abc.png?x=1" -> "abc.png"), as a file
// name for an attachment the provider only links to; "" when the path ends in '/'.
std::string url_file_name(std::string_view url);

// A JSON error body of SPEC section 3: {"error":{"code":...,"message":...}}.
std::string error_body(std::string_view code, std::string_view message);

}  // namespace sb::social
