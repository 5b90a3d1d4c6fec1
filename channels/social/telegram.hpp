#pragma once
// Telegram Bot API: getUpdates long polling in, sendMessage replies out (issue 6;
// core.telegram.org/bots/api). The cursor is getUpdates' `offset` = last committed update_id + 1,
// stored with the interactions it covers and the bot it counts for (TelegramOffset); asking with
// that offset also confirms (drops) the earlier updates on Telegram's side, so a crash before
// the commit replays them.
//
// Requests carry the bot token in the path (/bot<token>/...): never log a Telegram target.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "channels/social/common.hpp"
#include "config/config.hpp"
#include "core/interaction.hpp"

namespace sb::social {

// Who the bot is (getMe), to recognise mentions of it and replies to it.
struct TelegramBot {
  std::int64_t id = 0;
  std::string username;  // without '@'
};

// A Bot API answer with "ok": false.
struct TelegramError {
  int error_code = 0;
  std::string description;
  std::optional<std::chrono::seconds> retry_after;  // parameters.retry_after (429)
  // parameters.migrate_to_chat_id (a 400): the group was upgraded to a supergroup, which has
  // another chat id; the request was refused and may be sent again there.
  std::string migrate_to_chat_id;
};

// A group upgraded to a supergroup (core.telegram.org/bots/api#message: migrate_to_chat_id in
// the old group, migrate_from_chat_id in the new supergroup): the chat id changes, the members
// stay.
struct TelegramMigration {
  std::string from_chat_id, to_chat_id;
};

struct TelegramUpdates {
  bool ok = false;
  std::optional<TelegramError> error;  // set when the API said ok:false (or the body is bad)
  std::vector<Inbound> items;
  // max(update_id) + 1 over every update in the response, including ignored ones; nullopt when
  // there were none (keep the cursor).
  std::optional<std::int64_t> next_offset;
  // The upgrades the service messages of this response announced (either of the two).
  std::vector<TelegramMigration> migrations;
};

HttpRequestSpec telegram_get_me(const config::Telegram& cfg);
std::optional<TelegramBot> parse_telegram_get_me(std::string_view body);

// GET /bot<token>/getUpdates?offset=..&timeout=..&allowed_updates=["message"].
HttpRequestSpec telegram_get_updates(const config::Telegram& cfg,
                                     std::optional<std::int64_t> offset, int timeout_s = 25);

// Private chats are direct messages; group and supergroup messages are mentions when they
// mention the bot (@username, a text_mention of the bot, /command@username) or reply to it;
// everything else is skipped (but still advances next_offset). `migrated_from` maps a
// supergroup's chat id to the group it was upgraded from (TelegramMigration): a message there
// also looks up its customer's conversation of the old group, so the upgrade does not start a
// new one.
TelegramUpdates parse_telegram_updates(
    const config::Telegram& cfg, const TelegramBot& bot, std::string_view body,
    const std::map<std::string, std::string>& migrated_from = {});

// The conversation key of a message of `user_id` in chat `chat_id` (a group's customers each
// have their own; a private chat is one customer).
std::string telegram_thread_key(const config::Telegram& cfg, std::string_view chat_id, bool group,
                                std::string_view user_id);

// Any Bot API response's error, when ok is false.
std::optional<TelegramError> parse_telegram_error(std::string_view body);

// The bot a token belongs to: the number before its ':' (getMe's id); 0 when it has none.
std::int64_t telegram_bot_id(std::string_view bot_token);

// The stored cursor (scope "offset" of account "telegram:<name>"): "<offset>:<bot id>".
// update_ids are numbered per bot, and getUpdates with offset N confirms (drops) every update
// below N: an offset sent to another bot than the one it was read from would drop that bot's
// pending updates unread. A row written before the bot id was stored is the bare offset
// (bot_id 0: the bot is not known).
struct TelegramOffset {
  std::int64_t offset = 0;
  std::int64_t bot_id = 0;
};
std::optional<TelegramOffset> parse_telegram_offset(std::string_view value);
std::string format_telegram_offset(const TelegramOffset& o);

// external_id "<bot_id>:<chat_id>:<message_id>". The bot id is there because message ids are
// not unique to a chat across bots: a private chat's id is the user's id whichever bot he
// writes to, and its message ids are numbered per bot, so a user's first message to a new bot
// of the account could be "<user>:1" again and be dropped as a duplicate of his first message
// to the old one. Messages stored before the bot id was added are "<chat_id>:<message_id>"
// (bot_id 0), as are those of a bot whose getMe named no id.
std::string telegram_external_id(std::int64_t bot_id, std::string_view chat_id,
                                 std::string_view message_id);

// An external_id split back for a reply.
struct TelegramMessageRef {
  std::int64_t bot_id = 0;  // 0: not known (stored before the bot id was added)
  std::string chat_id;
  std::int64_t message_id = 0;
};
std::optional<TelegramMessageRef> parse_telegram_external_id(std::string_view external_id);

// POST /bot<token>/sendMessage {"chat_id", "text", "reply_to_message_id"}; with
// allow_sending_without_reply so a deleted original does not fail the answer.
HttpRequestSpec telegram_send_message(const config::Telegram& cfg, std::string_view chat_id,
                                      std::string_view text,
                                      std::optional<std::int64_t> reply_to_message_id);

// Byte offset in UTF-8 `s` of UTF-16 code unit offset `units` (Telegram entity offsets and
// lengths count UTF-16 units); s.size() when beyond the end.
std::size_t utf16_to_byte_offset(std::string_view s, std::size_t units);

}  // namespace sb::social
