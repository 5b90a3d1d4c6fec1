// The one bound on provider-named waits (core/provider_wait.hpp), and the resets that would
// have overflowed the clock on their way to it.
#include <chrono>
#include <map>
#include <string>

#include <doctest/doctest.h>

#include "channels/social/rate_pacing.hpp"
#include "channels/social/telegram.hpp"
#include "channels/social/x.hpp"
#include "core/provider_wait.hpp"

using namespace sb;
using namespace sb::social;
using namespace std::chrono_literals;

namespace {
std::chrono::milliseconds bound(std::chrono::duration<double> asked,
                                std::chrono::milliseconds min = kMinProviderWait) {
  return bound_provider_wait(asked, WaitBounds{min, kMaxPollWait}, "social", "x", "test",
                             "x-rate-limit-reset");
}

HeaderLookup one_header(std::string name, std::string value) {
  return [name, value](std::string_view n) -> std::optional<std::string> {
    return n == name ? std::optional(value) : std::nullopt;
  };
}
}  // namespace

TEST_CASE("Provider waits: within bounds as asked, outside moved to the nearer bound") {
  CHECK(bound(30s) == 30s);
  CHECK(bound(1500ms) == 1500ms);
  CHECK(bound(std::chrono::hours(24 * 10)) == kMaxPollWait);
  CHECK(bound(std::chrono::seconds(std::numeric_limits<std::int64_t>::max())) == kMaxPollWait);
  CHECK(bound(-1s) == 1s);  // Telegram's retry_after -1: not an instant retry
  CHECK(bound(0s) == 1s);
  CHECK(bound(0s, 0ms) == 0ms);  // pacing: no wait is a legitimate answer
  CHECK(bound(300ms, 0ms) == 300ms);
  CHECK(bound_provider_wait(std::chrono::hours(24 * 10), WaitBounds{1s, kMaxSendWait}, "agents",
                            "x", "test", "retry_after") == 1h);
}

TEST_CASE("Provider waits: an X reset the clock cannot hold is no reset, not an overflow") {
  auto ok = parse_unix_seconds_reset("1767323700");
  REQUIRE(ok);
  CHECK(std::chrono::duration_cast<std::chrono::seconds>(ok->time_since_epoch()).count() ==
        1767323700);
  // Milliseconds sent as seconds: year 57,000, past what nanosecond ticks hold.
  CHECK_FALSE(parse_unix_seconds_reset("1767323700000"));
  CHECK_FALSE(parse_unix_seconds_reset("99999999999999999999"));
  CHECK_FALSE(parse_unix_seconds_reset("17673237x"));
  auto e = classify_x_response(429, "{}", one_header("x-rate-limit-reset", "1767323700000"));
  CHECK(e.kind == XError::Kind::rate_limited);
  CHECK_FALSE(e.reset);  // the poller then waits its minute
}

TEST_CASE("Provider waits: a Mastodon reset past the clock's range is no reset") {
  auto info = parse_rate_limit_iso(one_header("X-RateLimit-Reset", "9999-12-31T23:59:59.000Z"));
  CHECK_FALSE(info.reset);
}

TEST_CASE("Provider waits: a Telegram retry_after of any size parses without overflow") {
  auto e = parse_telegram_error(
      R"({"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":9223372036854775807}})");
  REQUIRE(e);
  REQUIRE(e->retry_after);
  CHECK(*e->retry_after > std::chrono::hours(24 * 365));
  std::chrono::milliseconds ms = *e->retry_after;  // what the sender hands the send loop
  CHECK(ms > std::chrono::hours(24 * 365));
  auto negative = parse_telegram_error(
      R"({"ok":false,"error_code":429,"description":"Too Many Requests","parameters":{"retry_after":-1}})");
  REQUIRE(negative);
  CHECK(negative->retry_after == -1s);
}
