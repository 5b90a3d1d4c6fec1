#pragma once
// Loads TOML text as "t.toml" and returns the problems as the user sees them.
#include <doctest/doctest.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

// Lets doctest print the problem lists a CHECK compares.
namespace doctest {
template <>
struct StringMaker<std::vector<std::string>> {
  static String convert(const std::vector<std::string>& lines) {
    std::string out = "{";
    for (const auto& line : lines) {
      out += "\n  " + line;
    }
    out += "\n}";
    return String(out.c_str());
  }
};
}  // namespace doctest

namespace sb::config::test {

// Raw strings in the tests start with a newline for readability; drop it so that the first
// line of the literal is line 1 of the file.
inline std::string_view body(std::string_view toml) {
  if (!toml.empty() && toml.front() == '\n') {
    toml.remove_prefix(1);
  }
  return toml;
}

inline std::vector<std::string> problems_of(std::string_view toml) {
  LoadResult result = load_string(body(toml), "t.toml");
  std::vector<std::string> out;
  for (const Problem& p : result.problems) {
    out.push_back(p.to_string());
  }
  CHECK(result.config.has_value() == out.empty());
  return out;
}

// The single problem of `toml`; fails the test when there are none or several.
inline std::string problem_of(std::string_view toml) {
  auto problems = problems_of(toml);
  std::string all;
  for (const auto& p : problems) {
    all += p + "\n";
  }
  INFO("problems:\n" << all);
  REQUIRE(problems.size() == 1);
  return problems.front();
}

inline Config load_ok(std::string_view toml) {
  LoadResult result = load_string(body(toml), "t.toml");
  for (const Problem& p : result.problems) {
    FAIL_CHECK(p.to_string());
  }
  REQUIRE(result.config.has_value());
  return *result.config;
}

// Sets (or, with nullptr, unsets) an environment variable for the lifetime of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) {
      old_ = old;
    }
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace sb::config::test
