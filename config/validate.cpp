#include "config/validate.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>
#include <cstring>

namespace sb::config::detail {

namespace {

constexpr std::array<std::string_view, 11> kCallStatuses = {
    "queued",    "initiated", "ringing",  "in-progress", "completed", "busy",
    "no-answer", "failed",    "canceled", "voicemail",   "unknown"};
constexpr std::array<std::string_view, 9> kChannels = {
    "email", "voice", "mastodon", "x", "messenger", "instagram", "whatsapp", "telegram", "api"};
constexpr std::array<std::string_view, 6> kKinds = {"email",          "call",    "mention",
                                                    "direct_message", "comment", "message"};

template <std::size_t N>
bool contains(const std::array<std::string_view, N>& list, std::string_view value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

template <std::size_t N>
std::string join(const std::array<std::string_view, N>& list) {
  std::string out;
  for (std::string_view item : list) {
    out += out.empty() ? "" : ", ";
    out += item;
  }
  return out;
}

std::optional<std::uint16_t> parse_port(std::string_view text, int min) {
  int value = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < min ||
      value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

}  // namespace

std::optional<HostPort> split_host_port(std::string_view text) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view host = text.substr(0, colon);
  const auto port = parse_port(text.substr(colon + 1), 0);
  if (!port) {
    return std::nullopt;
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return std::nullopt;  // a bare IPv6 address is ambiguous: it needs [brackets]
  }
  if (host.empty()) {
    return std::nullopt;
  }
  return HostPort{std::string(host), *port};
}

bool is_ip_literal(std::string_view host) {
  std::string h(host);
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

bool is_loopback(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string lowered(host);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lowered == "localhost") {
    return true;
  }
  in_addr v4{};
  if (inet_pton(AF_INET, lowered.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, lowered.c_str(), &v6) == 1) {
    return std::memcmp(&v6, &in6addr_loopback, sizeof v6) == 0;
  }
  return false;
}

std::optional<std::string> parse_redis_url(std::string_view text, Redis& out,
                                           bool password_elsewhere) {
  const auto parsed = boost::urls::parse_uri(text);
  if (!parsed) {
    return "is not a valid URL";
  }
  const boost::urls::url_view url = *parsed;
  if (url.scheme() != "redis") {
    return "must use the redis:// scheme";
  }
  if (!url.has_authority() || url.host_address().empty()) {
    return "has no host";
  }
  if (url.has_query() || url.has_fragment()) {
    return "must not have a query or a fragment";
  }
  Redis result = out;
  result.username.clear();
  result.password.clear();
  if (url.has_userinfo()) {
    const bool no_password = !url.has_password() || url.password().empty();
    if (no_password && !password_elsewhere) {
      return "has a user but no password (use redis://:password@host or user:password@host, "
             "or redis.password_env)";
    }
    result.username = url.user();
    result.password = url.password();
  }
  result.host = url.host_address();
  result.port = 6379;
  if (url.has_port()) {
    const auto port = parse_port(url.port(), 1);
    if (!port) {
      return "has an invalid port";
    }
    result.port = *port;
  }
  result.db = 0;
  std::string_view path = url.encoded_path();
  if (!path.empty() && path != "/") {
    path.remove_prefix(1);
    int db = -1;
    auto [end, ec] = std::from_chars(path.data(), path.data() + path.size(), db);
    if (ec != std::errc{} || end != path.data() + path.size() || db < 0) {
      return "has an invalid database number (the path must be /<number>)";
    }
    result.db = db;
  }
  result.url = std::string(text);
  out = std::move(result);
  return std::nullopt;
}

bool is_http_url(std::string_view text) {
  const auto parsed = boost::urls::parse_absolute_uri(text);
  if (!parsed) {
    return false;
  }
  const std::string_view scheme = parsed->scheme();
  return (scheme == "http" || scheme == "https") && !parsed->host_address().empty();
}

std::optional<std::vector<std::uint8_t>> decode_base64(std::string_view text) {
  while (!text.empty() && text.back() == '=') {
    text.remove_suffix(1);
  }
  if (text.size() % 4 == 1) {
    return std::nullopt;
  }
  std::vector<std::uint8_t> out;
  std::uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    int v = -1;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else {
      return std::nullopt;
    }
    buffer = (buffer << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((buffer >> bits) & 0xff));
    }
  }
  return out;
}

bool is_simple_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '_' || c == '-';
  });
}

bool is_valid_after(std::string_view after) {
  constexpr std::string_view move = "move:";
  return after == "keep" || after == "seen" ||
         (after.size() > move.size() && after.substr(0, move.size()) == move);
}

bool is_call_status(std::string_view status) {
  return contains(kCallStatuses, status);
}
std::string call_statuses() {
  return join(kCallStatuses);
}
bool is_interaction_channel(std::string_view channel) {
  return contains(kChannels, channel);
}
std::string interaction_channels() {
  return join(kChannels);
}
bool is_interaction_kind(std::string_view kind) {
  return contains(kKinds, kind);
}
std::string interaction_kinds() {
  return join(kKinds);
}

}  // namespace sb::config::detail
