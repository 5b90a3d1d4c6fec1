#include "core/log.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <optional>
#include <string_view>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace sb {
namespace {
std::mutex mu;
spdlog::level::level_enum level = spdlog::level::info;
}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& layer) {
  std::lock_guard lock(mu);
  if (auto l = spdlog::get(layer)) {
    return l;
  }
  auto l = spdlog::stderr_color_mt(layer);
  l->set_level(level);
  l->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%-5l%$ %-8n %v", spdlog::pattern_time_type::utc);
  return l;
}

namespace {
// A level by its name, case-insensitively; nullopt for a name that is none.
std::optional<spdlog::level::level_enum> parse_log_level(std::string name) {
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // spdlog::level::from_str answers `off` for a name it does not know: "INFO", "verbose" or an
  // empty value silenced the daemon entirely. Only the names below are levels.
  static constexpr std::pair<std::string_view, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},         {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn},      {"error", spdlog::level::err},
      {"critical", spdlog::level::critical}, {"off", spdlog::level::off}};
  for (const auto& [n, l] : kLevels) {
    if (name == n) {
      return l;
    }
  }
  return std::nullopt;
}
}  // namespace

bool set_log_level(const std::string& name) {
  auto parsed = parse_log_level(name);
  std::lock_guard lock(mu);
  level = parsed.value_or(spdlog::level::info);
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->set_level(level); });
  return parsed.has_value();
}

}  // namespace sb
