#pragma once
// Failures that come again and again, logged as an operator wants them: the first of each kind
// at once, then at most one line per `every` that says how many were left out meanwhile. A
// webhook route is the case in point: anyone on the internet can post unsigned requests to it
// as fast as they like, and a line for each would bury every other line of the daemon (and
// fill its disk).
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace sb {

class LogGate {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LogGate(std::chrono::milliseconds every) : every_(every) {}

  // Whether a failure of kind `key` ("twilio:main bad_signature") is logged now: nullopt if not
  // (it is counted), else how many of that kind were left out since its last line. The keys
  // are few (a configured account times an error code): they are kept for good.
  std::optional<std::uint64_t> pass(const std::string& key, Clock::time_point now = Clock::now()) {
    return pass(key, 1, now);
  }
  // The same for `n` of that kind at once (one request carrying n messages): left out, all n
  // count, so the next line says how many messages it stood for, not how many requests.
  std::optional<std::uint64_t> pass(const std::string& key, std::uint64_t n,
                                    Clock::time_point now = Clock::now()) {
    std::lock_guard lock(mu_);
    auto [it, first] = kinds_.try_emplace(key);
    Kind& k = it->second;
    if (!first && now - k.logged_at < every_) {
      k.left_out += n;
      return std::nullopt;
    }
    k.logged_at = now;
    return std::exchange(k.left_out, 0);
  }

  // The end of a line pass() let through after `left_out` were left out: "" for none. `how`
  // says what the left-out ones did: " (3 more refused the same way since the last line; ...".
  static std::string left_out_note(std::uint64_t left_out,
                                   std::string_view how = "refused the same way") {
    return left_out == 0 ? std::string()
                         : " (" + std::to_string(left_out) + " more " + std::string(how) +
                               " since the last line; at most one line a minute)";
  }

 private:
  struct Kind {
    Clock::time_point logged_at{};
    std::uint64_t left_out = 0;
  };
  std::chrono::milliseconds every_;
  std::mutex mu_;
  std::unordered_map<std::string, Kind> kinds_;
};

}  // namespace sb
