#pragma once
// Pacing requests against a provider's rate limit window (Mastodon: 300 requests per 5 minutes
// per account, reported as X-RateLimit-Limit / -Remaining / -Reset; docs.joinmastodon.org
// "Rate limits"). Two guards, the caller waits for the larger delay:
//  - next_delay(): the server's view. Burst while plenty of budget is left (a 10,000-mention
//    backlog is 250 pages and fits in one window), then spread the last `reserve` requests over
//    the time to the reset, and wait for the reset when nothing is left: slow down before the
//    budget is spent, never run into a 429.
//  - RequestWindow: our own sliding-window log, so that we never send more than N requests in
//    any window even if the server's headers are missing or lie.
#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <string_view>

#include "channels/social/common.hpp"

namespace sb::social {

using Clock = std::chrono::system_clock;

struct PacingPolicy {
  int reserve = 30;  // requests kept back for replies and for the next poll cycle
};

// Delay before the next request given the server's remaining budget and reset time.
std::chrono::milliseconds next_delay(int remaining, Clock::time_point reset, Clock::time_point now,
                                     const PacingPolicy& policy = {});

// The rate-limit headers of one response, when present and well-formed.
struct RateLimitInfo {
  std::optional<int> limit;
  std::optional<int> remaining;
  std::optional<Clock::time_point> reset;
};

// Mastodon style: X-RateLimit-Reset is ISO 8601 / RFC 3339.
RateLimitInfo parse_rate_limit_iso(const HeaderLookup& header);

// X style: a reset in Unix seconds ("1767323700"). nullopt when it is not a whole number, or
// one the clock cannot hold (past 2262 in nanoseconds, such as milliseconds sent as seconds),
// rather than a time point that overflowed into any value.
std::optional<Clock::time_point> parse_unix_seconds_reset(std::string_view value);

// A sliding window of at most `max_requests` per `window` (client side).
class RequestWindow {
 public:
  RequestWindow(std::size_t max_requests, std::chrono::milliseconds window)
      : max_requests_(max_requests), window_(window) {}

  // How long to wait from `now` until one more request is allowed (zero: send now).
  std::chrono::milliseconds delay(Clock::time_point now);
  // Records a request sent at `now`.
  void record(Clock::time_point now);

 private:
  void expire(Clock::time_point now);
  std::size_t max_requests_;
  std::chrono::milliseconds window_;
  std::deque<Clock::time_point> sent_;
};

}  // namespace sb::social
