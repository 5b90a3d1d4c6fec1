#pragma once
// The three polling channels (issue 6; X twice: mentions and direct messages): one Poller per
// configured account. A poller holds its account by reference, not a copy: SocialChannels owns it,
// and a reload changes its access token there (on the io thread), which the next request carries.
// So a temporary account is refused at compile time (the `= delete` overloads): it would dangle
// once the call returns.
#include <memory>

#include "channels/social/runtime.hpp"
#include "config/config.hpp"

namespace sb::social {

// GET /api/v1/notifications?types[]=mention with min_id = the committed cursor, page after page
// until caught up, paced by X-RateLimit-Remaining/-Reset; 429 waits for the reset.
std::shared_ptr<Poller> make_mastodon_poller(Runtime& rt, const config::Mastodon& cfg);
std::shared_ptr<Poller> make_mastodon_poller(Runtime& rt, config::Mastodon&& cfg) = delete;

// GET /2/users/{id}/mentions since the committed newest_id, following next_token through a
// backlog; 429 waits for x-rate-limit-reset; a usage cap pauses the account (metric
// switchboard_social_paused{channel,account} = 1) until the next check an hour later.
std::shared_ptr<Poller> make_x_poller(Runtime& rt, const config::X& cfg);
std::shared_ptr<Poller> make_x_poller(Runtime& rt, config::X&& cfg) = delete;
// GET /2/dm_events (user context: only for an account with it), newest first, following
// next_token down to the committed newest event id (scope "direct_messages"); 429 as above.
std::shared_ptr<Poller> make_x_dm_poller(Runtime& rt, const config::X& cfg);
std::shared_ptr<Poller> make_x_dm_poller(Runtime& rt, config::X&& cfg) = delete;

// getUpdates long polling with offset = last committed update_id + 1; 429 honours retry_after.
// `long_poll_s` is Telegram's `timeout` (25 s in production).
std::shared_ptr<Poller> make_telegram_poller(Runtime& rt, const config::Telegram& cfg,
                                             int long_poll_s = 25);
std::shared_ptr<Poller> make_telegram_poller(Runtime& rt, config::Telegram&& cfg,
                                             int long_poll_s = 25) = delete;

}  // namespace sb::social
