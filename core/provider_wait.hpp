#pragma once
// The one bound on waits a provider names: a 429's reset or retry_after, a rate-limit window's
// reset, a 503's Retry-After. Every poller and the send loop pass such a wait through here
// before they sleep on it or store it as a retry time. The numbers are only as good as the
// provider's clock and units: a reset days ahead (its clock ahead of ours, milliseconds sent as
// seconds) would stop an account's polling or its replies for that long, and a zero or negative
// wait (Telegram's retry_after -1) would ask again at once, in a loop.
//
// The caps follow the documented windows. Polls: 15 minutes, X's rate-limit window and the
// longest of the polled APIs (Mastodon's window is 5 minutes, Telegram's retry_after a few
// seconds); a provider that really means longer answers the next poll with another 429, which
// costs one request per 15 minutes. Replies: an hour, which Retry-After was always capped at;
// every retry spends one of the send loop's attempts, so replies wait longer per attempt. A
// daily limit of the whole account (X's 24-hour posting limits) waits up to a day, attempts
// unspent (kMaxAccountWait).
#include <chrono>
#include <string>
#include <string_view>

namespace sb {

inline constexpr std::chrono::milliseconds kMinProviderWait{1000};
inline constexpr std::chrono::milliseconds kMaxPollWait{15 * 60 * 1000};
inline constexpr std::chrono::milliseconds kMaxSendWait{60 * 60 * 1000};
// A limit on all of an account's replies that the provider says lasts longer than a window: X's
// 24-hour posting limits, whose reset is at most a day away, plus 5 minutes for the clocks. Such
// a wait does not spend the replies' attempts (SendResult::account_paused).
inline constexpr std::chrono::milliseconds kMaxAccountWait{(24 * 60 + 5) * 60 * 1000};

struct WaitBounds {
  std::chrono::milliseconds min = kMinProviderWait;
  std::chrono::milliseconds max;
};

// `asked` moved into [bounds.min, bounds.max]. When it was moved, warns on `layer`'s logger
// with "[channel:account]" and `what` (which header or field named the wait). Taken as
// floating-point seconds, so that no provider's number overflows on its way in.
std::chrono::milliseconds bound_provider_wait(std::chrono::duration<double> asked,
                                              WaitBounds bounds, const std::string& layer,
                                              std::string_view channel, std::string_view account,
                                              std::string_view what);

}  // namespace sb
