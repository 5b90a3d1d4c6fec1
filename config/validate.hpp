#pragma once
// Internal to config/: the value checks that need no TOML (addresses, URLs, names), kept apart
// so they stay small and testable.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace sb::config::detail {

struct HostPort {
  std::string host;  // without the brackets of an IPv6 literal
  std::uint16_t port = 0;
};

// "127.0.0.1:8080", "[::1]:8080", "localhost:0" (0: any free port).
std::optional<HostPort> split_host_port(std::string_view text);

// An IPv4 or IPv6 address literal (without brackets): what the HTTP server can bind to. Host
// names are not resolved for listening.
bool is_ip_literal(std::string_view host);
// localhost, 127.0.0.0/8, ::1 (brackets allowed).
bool is_loopback(std::string_view host);

// redis://[[user]:password@]host[:port][/db]. Fills url-derived fields of `out`; on failure
// returns the reason, which never quotes the url (it may hold a password). With
// `password_elsewhere` (redis.password_env) a user without a password is accepted.
std::optional<std::string> parse_redis_url(std::string_view url, Redis& out,
                                           bool password_elsewhere = false);

// An absolute http:// or https:// URL with a host.
bool is_http_url(std::string_view url);

// Standard base64 (RFC 4648 section 4), padding optional; nullopt when malformed.
std::optional<std::vector<std::uint8_t>> decode_base64(std::string_view text);

// Names that appear in URLs and Redis keys: letters, digits, '.', '_', '-'.
bool is_simple_name(std::string_view name);

// keep | seen | move:<Folder>
bool is_valid_after(std::string_view after);

// SPEC section 3: the normalised call statuses.
bool is_call_status(std::string_view status);
std::string call_statuses();  // "queued, initiated, ..." for messages

// SPEC section 5 vocabularies, for routing conditions.
bool is_interaction_channel(std::string_view channel);
std::string interaction_channels();
bool is_interaction_kind(std::string_view kind);
std::string interaction_kinds();

}  // namespace sb::config::detail
