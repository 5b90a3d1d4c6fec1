#pragma once
// Time helpers: RFC 3339 in and out, durations of the config file ("500ms", "30s", "5m").
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sb {

std::int64_t now_ms();                                        // Unix ms, system clock
std::string format_rfc3339(std::int64_t unix_ms);            // "2026-01-02T03:04:05Z" (ms dropped)
std::optional<std::int64_t> parse_rfc3339(std::string_view);  // Unix ms; offsets honoured
std::optional<std::chrono::milliseconds> parse_duration(std::string_view);  // ms|s|m|h

}  // namespace sb
