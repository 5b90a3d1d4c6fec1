#include "core/log.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <optional>
#include <string_view>

#include <spdlog/sinks/stdout_color_sinks.h>

#include "core/utf8.hpp"

namespace sb {
namespace {
std::mutex mu;
spdlog::level::level_enum level = spdlog::level::info;

bool needs_escape(std::string_view text) {
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c >= 0x7F) {
      return true;  // a control, or a non-ASCII byte that log_escape looks at more closely
    }
  }
  return false;
}

// Escapes each message before any sink formats it: in the logger rather than in a formatter,
// so that a sink added later (a test's, a file's) gets escaped lines too.
class EscapingLogger final : public spdlog::logger {
 public:
  using spdlog::logger::logger;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string_view payload(msg.payload.data(), msg.payload.size());
    if (!needs_escape(payload)) {
      spdlog::logger::sink_it_(msg);
      return;
    }
    std::string escaped = log_escape(payload);
    spdlog::details::log_msg copy = msg;
    copy.payload = spdlog::string_view_t(escaped.data(), escaped.size());
    spdlog::logger::sink_it_(copy);
  }
};
}  // namespace

std::string log_escape(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 16);
  auto hex = [&](unsigned char c) {
    out += "\\x";
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xF]);
  };
  while (!text.empty()) {
    const auto c = static_cast<unsigned char>(text[0]);
    const std::size_t n = utf8_sequence_length(text);
    if (n == 0) {
      hex(c);  // not UTF-8
      text.remove_prefix(1);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      hex(c);
    } else if (c == 0xC2 && static_cast<unsigned char>(text[1]) <= 0x9F) {
      hex(c);  // C1: U+0080-U+009F are C2 80 - C2 9F
      hex(static_cast<unsigned char>(text[1]));
    } else {
      out.append(text.substr(0, n));
    }
    if (n != 0) {
      text.remove_prefix(n);
    }
  }
  return out;
}

std::shared_ptr<spdlog::logger> logger(const std::string& layer) {
  std::lock_guard lock(mu);
  if (auto l = spdlog::get(layer)) {
    return l;
  }
  auto l = std::make_shared<EscapingLogger>(
      layer, std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  spdlog::initialize_logger(l);  // registered, as spdlog::stderr_color_mt would
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
