#include "core/log.hpp"

#include <mutex>

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

void set_log_level(const std::string& name) {
  std::lock_guard lock(mu);
  level = spdlog::level::from_str(name);
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->set_level(level); });
}

}  // namespace sb
