#include "channels/social/rate_pacing.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>

#include "core/time.hpp"

namespace sb::social {

using std::chrono::milliseconds;

std::chrono::milliseconds next_delay(int remaining, Clock::time_point reset, Clock::time_point now,
                                     const PacingPolicy& policy) {
  if (reset <= now) {
    return milliseconds(0);  // the window has rolled over; the next response reports a new one
  }
  auto until_reset = std::chrono::ceil<milliseconds>(reset - now);
  if (remaining <= 0) {
    // Spent: sleep to the reset plus a little, since the server's clock and ours differ.
    return until_reset + milliseconds(1000);
  }
  if (remaining > policy.reserve) {
    return milliseconds(0);
  }
  // Within the reserve: spread what is left evenly over the rest of the window.
  return until_reset / (remaining + 1);
}

namespace {

// Unix milliseconds as a time point, when the clock's duration holds them.
std::optional<Clock::time_point> clock_time(std::int64_t ms) {
  constexpr std::int64_t kMaxMs =
      std::chrono::duration_cast<milliseconds>(Clock::duration::max()).count();
  if (ms < -kMaxMs || ms > kMaxMs) {
    return std::nullopt;
  }
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(milliseconds(ms)));
}

}  // namespace

std::optional<Clock::time_point> parse_unix_seconds_reset(std::string_view value) {
  std::int64_t secs = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), secs);
  if (ec != std::errc{} || p != value.data() + value.size() ||
      secs > std::numeric_limits<std::int64_t>::max() / 1000 ||
      secs < std::numeric_limits<std::int64_t>::min() / 1000) {
    return std::nullopt;
  }
  return clock_time(secs * 1000);
}

RateLimitInfo parse_rate_limit_iso(const HeaderLookup& header) {
  RateLimitInfo info;
  if (!header) {
    return info;
  }
  auto as_int = [](const std::optional<std::string>& v) -> std::optional<int> {
    if (!v) {
      return std::nullopt;
    }
    int out = 0;
    auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
    if (ec != std::errc{} || p != v->data() + v->size()) {
      return std::nullopt;
    }
    return out;
  };
  info.limit = as_int(header("X-RateLimit-Limit"));
  info.remaining = as_int(header("X-RateLimit-Remaining"));
  if (auto reset = header("X-RateLimit-Reset")) {
    if (auto ms = parse_rfc3339(*reset)) {
      info.reset = clock_time(*ms);  // a year up to 9999 parses: past the clock's range
    }
  }
  return info;
}

void RequestWindow::expire(Clock::time_point now) {
  while (!sent_.empty() && sent_.front() + window_ <= now) {
    sent_.pop_front();
  }
}

std::chrono::milliseconds RequestWindow::delay(Clock::time_point now) {
  expire(now);
  if (sent_.size() < max_requests_) {
    return milliseconds(0);
  }
  // The oldest request of the full window must leave it first.
  return std::chrono::ceil<milliseconds>(sent_[sent_.size() - max_requests_] + window_ - now);
}

void RequestWindow::record(Clock::time_point now) {
  expire(now);
  sent_.push_back(now);
}

}  // namespace sb::social
