#pragma once
// Agent replies back to the platforms (core/sender.hpp): one Sender per (channel, account).
// The parent interaction (OutboundMessage::parent_json) says what is answered: its external_id
// is the platform message to thread under, its `from` the customer.
//
// Results: 2xx -> sent(provider id); 429 / 5xx / network -> retry (with the provider's delay
// when it names one; a network failure after the request went out is marked unknown); other
// 4xx -> failed with the provider's message. X: a 403 "duplicate content" after an attempt
// whose outcome was unknown -> sent, without an id (the earlier attempt posted it). Telegram
// and Meta take no idempotency key and post a repeat twice: a request that went out and got no
// answer -> failed, marked unknown ("outcome unknown: ..."), logged and counted in
// switchboard_sends_unknown_total{channel,account}; a failure before it went out is retried.
// X: a 429 naming a used-up 24-hour posting limit (x-user- / x-app-limit-24hour-remaining 0)
// pauses all of the account's replies until that reset, at most a day, without spending their
// attempts (SendResult::account_paused; logged once per pause). Meta: a rate limit of the app,
// a Page or a WhatsApp number (codes 4, 17, 32, 613, 80007, 130429) pauses the replies of that
// scope the same way, for Retry-After or 1, 2, 4, 8, then 15 minutes. Mastodon: a 5xx is an
// unknown outcome, retried with the same Idempotency-Key within the hour Mastodon keeps it.
//
// A sender holds its account by reference, as the pollers do (pollers.hpp): a token a reload
// changes goes with the next send. A temporary account is refused (`= delete`): it would dangle.
#include <memory>

#include "channels/social/runtime.hpp"
#include "config/config.hpp"
#include "core/sender.hpp"

namespace sb::social {

// POST /api/v1/statuses: "@acct text", in_reply_to_id, the mention's visibility, and
// Idempotency-Key = the outbound interaction id.
std::shared_ptr<Sender> make_mastodon_sender(Runtime& rt, const config::Mastodon& cfg);
std::shared_ptr<Sender> make_mastodon_sender(Runtime& rt, config::Mastodon&& cfg) = delete;
// POST /2/tweets with reply.in_reply_to_tweet_id; a reply to a direct message goes by DM
// (POST /2/dm_conversations/{id}/messages), and one whose answer was lost is failed, marked
// unknown, as Telegram's.
std::shared_ptr<Sender> make_x_sender(Runtime& rt, const config::X& cfg);
std::shared_ptr<Sender> make_x_sender(Runtime& rt, config::X&& cfg) = delete;
// sendMessage with reply_to_message_id.
std::shared_ptr<Sender> make_telegram_sender(Runtime& rt, const config::Telegram& cfg);
std::shared_ptr<Sender> make_telegram_sender(Runtime& rt, config::Telegram&& cfg) = delete;
// Messenger / Instagram Send API, or WhatsApp Cloud API messages (by the parent's channel).
std::shared_ptr<Sender> make_meta_sender(Runtime& rt, const config::Meta& cfg);
std::shared_ptr<Sender> make_meta_sender(Runtime& rt, config::Meta&& cfg) = delete;

}  // namespace sb::social
