#include "channels/social/telegram.hpp"

#include <algorithm>

#include <charconv>
#include <initializer_list>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace sb::social {

namespace json = boost::json;

namespace {

std::string bot_path(const config::Telegram& cfg, std::string_view method) {
  return "/bot" + cfg.bot_token + "/" + std::string(method);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ascii_lower(a) == ascii_lower(b);
}

std::int64_t id_of(const json::object* o) {
  return o == nullptr ? 0 : int_at(*o, "id").value_or(0);
}

// Does this group message address the bot?
bool addresses_bot(const json::object& msg, std::string_view text, const json::array* entities,
                   const TelegramBot& bot) {
  if (const json::object* parent = obj_at(msg, "reply_to_message")) {
    if (bot.id != 0 && id_of(obj_at(*parent, "from")) == bot.id) {
      return true;
    }
  }
  if (entities == nullptr) {
    return false;
  }
  std::string at_bot = "@" + bot.username;
  for (const json::value& ev : *entities) {
    const json::object* e = ev.if_object();
    if (e == nullptr) {
      continue;
    }
    std::string type = str_at(*e, "type");
    if (type == "text_mention") {
      if (bot.id != 0 && id_of(obj_at(*e, "user")) == bot.id) {
        return true;
      }
      continue;
    }
    if ((type != "mention" && type != "bot_command") || bot.username.empty()) {
      continue;
    }
    auto offset = static_cast<std::size_t>(int_at(*e, "offset").value_or(0));
    auto length = static_cast<std::size_t>(int_at(*e, "length").value_or(0));
    std::size_t begin = utf16_to_byte_offset(text, offset);
    std::size_t end = utf16_to_byte_offset(text, offset + length);
    std::string_view word = text.substr(begin, end - begin);
    if (type == "mention" && iequals(word, at_bot)) {
      return true;
    }
    if (type == "bot_command" && word.size() > at_bot.size() &&
        iequals(word.substr(word.size() - at_bot.size()), at_bot)) {
      return true;
    }
  }
  return false;
}

// Media messages: a placeholder plus what the attachment list can hold.
std::string media_text(const json::object& msg, Inbound& in) {
  static constexpr std::string_view kinds[] = {"photo", "document", "video",     "audio",
                                               "voice", "sticker",  "video_note"};
  for (std::string_view kind : kinds) {
    const json::value* v = msg.if_contains(kind);
    if (v == nullptr) {
      continue;
    }
    // photo is an array of sizes (largest last); the others are one object.
    const json::object* file = v->if_object();
    if (const json::array* sizes = v->if_array(); sizes != nullptr && !sizes->empty()) {
      file = sizes->back().if_object();
    }
    if (file != nullptr) {
      std::string name = str_at(*file, "file_name");
      if (name.empty()) {
        name = str_at(*file, "file_id");  // what a later getFile needs
      }
      std::string mime = str_at(*file, "mime_type");
      if (mime.empty() && kind == "photo") {
        mime = "image/jpeg";  // Telegram re-encodes photos as JPEG
      }
      in.attachments.push_back(Attachment{name, mime, int_at(*file, "file_size").value_or(0)});
    }
    return "[" + std::string(kind) + "]";
  }
  return {};
}

std::string coordinates(const json::object& loc) {
  const json::value* lat = loc.if_contains("latitude");
  const json::value* lon = loc.if_contains("longitude");
  if (lat == nullptr || lon == nullptr || !lat->is_number() || !lon->is_number()) {
    return {};
  }
  return "(" + std::to_string(lat->to_number<double>()) + ", " +
         std::to_string(lon->to_number<double>()) + ")";
}

// "[kind]" and the non-empty parts, space-separated.
std::string labelled(std::string_view kind, std::initializer_list<std::string> parts) {
  std::string text = "[" + std::string(kind) + "]";
  for (const std::string& p : parts) {
    if (!p.empty()) {
      text += " " + p;
    }
  }
  return text;
}

// Messages without text whose content is structured (core.telegram.org/bots/api#message):
// a readable text as WhatsApp's location gets (meta.cpp), so the agent sees what came rather
// than an empty message. A venue carries its location too: it goes first.
std::string structured_text(const json::object& msg) {
  if (const json::object* v = obj_at(msg, "venue")) {
    const json::object* loc = obj_at(*v, "location");
    return labelled("venue", {str_at(*v, "title"), str_at(*v, "address"),
                              loc == nullptr ? "" : coordinates(*loc)});
  }
  if (const json::object* loc = obj_at(msg, "location")) {
    return labelled("location", {coordinates(*loc)});
  }
  if (const json::object* c = obj_at(msg, "contact")) {
    std::string name = str_at(*c, "first_name");
    std::string last = str_at(*c, "last_name");
    if (!last.empty()) {
      name += (name.empty() ? "" : " ") + last;
    }
    return labelled("contact", {name, str_at(*c, "phone_number")});
  }
  if (const json::object* p = obj_at(msg, "poll")) {
    std::string options;
    if (const json::array* opts = arr_at(*p, "options")) {
      for (const json::value& ov : *opts) {
        if (const json::object* o = ov.if_object()) {
          options += (options.empty() ? "" : " / ") + str_at(*o, "text");
        }
      }
    }
    std::string question = str_at(*p, "question");
    return labelled("poll", {options.empty() ? question : question + ": " + options});
  }
  if (const json::object* d = obj_at(msg, "dice")) {
    return labelled("dice", {str_at(*d, "emoji"), str_at(*d, "value")});
  }
  return {};
}

}  // namespace

std::string telegram_thread_key(const config::Telegram& cfg, std::string_view chat_id, bool group,
                                std::string_view user_id) {
  std::string key = "telegram:" + cfg.name + ":chat:" + std::string(chat_id);
  if (group) {
    key += ":user:" + std::string(user_id);
  }
  return key;
}

std::size_t utf16_to_byte_offset(std::string_view s, std::size_t units) {
  std::size_t i = 0;
  std::size_t counted = 0;
  while (i < s.size() && counted < units) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : 4;
    counted += len == 4 ? 2 : 1;  // code points above U+FFFF are surrogate pairs in UTF-16
    i += len;
  }
  return std::min(i, s.size());
}

HttpRequestSpec telegram_get_me(const config::Telegram& cfg) {
  return HttpRequestSpec{"GET", bot_path(cfg, "getMe"), "", "", {}};
}

std::optional<TelegramBot> parse_telegram_get_me(std::string_view body) {
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object() || !bool_at(root.get_object(), "ok")) {
    return std::nullopt;
  }
  const json::object* result = obj_at(root.get_object(), "result");
  if (result == nullptr) {
    return std::nullopt;
  }
  return TelegramBot{int_at(*result, "id").value_or(0), str_at(*result, "username")};
}

HttpRequestSpec telegram_get_updates(const config::Telegram& cfg,
                                     std::optional<std::int64_t> offset, int timeout_s) {
  std::string target = bot_path(cfg, "getUpdates") + "?timeout=" + std::to_string(timeout_s) +
                       "&allowed_updates=%5B%22message%22%5D";
  if (offset) {
    target += "&offset=" + std::to_string(*offset);
  }
  return HttpRequestSpec{"GET", target, "", "", {}};
}

std::optional<TelegramError> parse_telegram_error(std::string_view body) {
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object()) {
    return TelegramError{0, "the response is not a JSON object", std::nullopt, {}};
  }
  const json::object& o = root.get_object();
  if (bool_at(o, "ok")) {
    return std::nullopt;
  }
  TelegramError e;
  e.error_code = static_cast<int>(int_at(o, "error_code").value_or(0));
  e.description = str_at(o, "description");
  if (const json::object* params = obj_at(o, "parameters")) {
    if (auto s = int_at(*params, "retry_after")) {
      // Clamped only so that milliseconds hold it: the wait is bounded where it is taken
      // (core/provider_wait.hpp).
      constexpr std::int64_t kYear = 366LL * 24 * 3600;
      e.retry_after = std::chrono::seconds(std::clamp(*s, -kYear, kYear));
    }
    e.migrate_to_chat_id = str_at(*params, "migrate_to_chat_id");
  }
  return e;
}

TelegramUpdates parse_telegram_updates(const config::Telegram& cfg, const TelegramBot& bot,
                                       std::string_view body,
                                       const std::map<std::string, std::string>& migrated_from) {
  TelegramUpdates out;
  if (auto err = parse_telegram_error(body)) {
    out.error = std::move(err);
    return out;
  }
  json::value root = json::parse(body);  // valid: parse_telegram_error checked it
  const json::array* result = arr_at(root.get_object(), "result");
  if (result == nullptr) {
    out.error = TelegramError{0, "the response has no result array", std::nullopt, {}};
    return out;
  }
  for (const json::value& uv : *result) {
    const json::object* update = uv.if_object();
    if (update == nullptr) {
      continue;
    }
    if (auto uid = int_at(*update, "update_id")) {
      out.next_offset = std::max(out.next_offset.value_or(0), *uid + 1);
    }
    // Only new messages; edited_message, channel_post, callback_query, ... are skipped.
    const json::object* msg = obj_at(*update, "message");
    if (msg == nullptr) {
      continue;
    }
    const json::object* from = obj_at(*msg, "from");
    const json::object* chat = obj_at(*msg, "chat");
    // The upgrade's service messages: one in the old group, one in the new supergroup (bots
    // get service messages whatever their privacy mode). Either names both chats.
    if (chat != nullptr) {
      if (std::string to = str_at(*msg, "migrate_to_chat_id"); !to.empty()) {
        out.migrations.push_back({str_at(*chat, "id"), to});
        continue;
      }
      if (std::string from_chat = str_at(*msg, "migrate_from_chat_id"); !from_chat.empty()) {
        out.migrations.push_back({from_chat, str_at(*chat, "id")});
        continue;
      }
    }
    if (from == nullptr || chat == nullptr || bool_at(*from, "is_bot")) {
      continue;
    }
    std::string chat_type = str_at(*chat, "type");
    std::string text = str_at(*msg, "text");
    const json::array* entities = arr_at(*msg, "entities");
    if (!msg->contains("text")) {
      text = str_at(*msg, "caption");
      entities = arr_at(*msg, "caption_entities");
    }
    std::string kind;
    if (chat_type == "private") {
      kind = "direct_message";
    } else if ((chat_type == "group" || chat_type == "supergroup") &&
               addresses_bot(*msg, text, entities, bot)) {
      kind = "mention";
    } else {
      continue;
    }
    std::string chat_id = str_at(*chat, "id");
    Inbound in;
    in.channel = "telegram";
    in.account = cfg.name;
    in.kind = kind;
    in.external_id = telegram_external_id(bot.id, chat_id, str_at(*msg, "message_id"));
    std::string name = str_at(*from, "first_name");
    std::string last = str_at(*from, "last_name");
    if (!last.empty()) {
      name += (name.empty() ? "" : " ") + last;
    }
    in.from = Identity{"telegram", str_at(*from, "id"), name, str_at(*from, "username")};
    std::string placeholder = media_text(*msg, in);
    if (placeholder.empty()) {
      placeholder = structured_text(*msg);
    }
    in.text = placeholder.empty() ? text : (text.empty() ? placeholder : placeholder + " " + text);
    in.occurred_at_ms = int_at(*msg, "date").value_or(0) * 1000;
    if (const json::object* parent = obj_at(*msg, "reply_to_message")) {
      in.in_reply_to = telegram_external_id(bot.id, chat_id, str_at(*parent, "message_id"));
    }
    // A private chat is one customer; a group holds many, each with a conversation of his own.
    bool group = chat_type != "private";
    std::string key = telegram_thread_key(cfg, chat_id, group, in.from->value);
    in.thread_lookup.push_back(key);
    in.thread_record.push_back(key);
    // In a supergroup upgraded from a group: the customer's conversation of the old group, when
    // he has none here yet.
    if (auto old = migrated_from.find(chat_id); group && old != migrated_from.end()) {
      in.thread_lookup.push_back(telegram_thread_key(cfg, old->second, true, in.from->value));
    }
    out.items.push_back(std::move(in));
  }
  out.ok = true;
  return out;
}

std::int64_t telegram_bot_id(std::string_view bot_token) {
  std::int64_t id = 0;
  std::string_view digits = bot_token.substr(0, bot_token.find(':'));
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  return ec == std::errc{} && p == digits.data() + digits.size() && id > 0 ? id : 0;
}

std::optional<TelegramOffset> parse_telegram_offset(std::string_view value) {
  TelegramOffset o;
  const char* end = value.data() + value.size();
  auto [p, ec] = std::from_chars(value.data(), end, o.offset);
  if (ec != std::errc{}) {
    return std::nullopt;
  }
  if (p != end) {
    if (*p != ':') {
      return std::nullopt;
    }
    auto [q, ec2] = std::from_chars(p + 1, end, o.bot_id);
    if (ec2 != std::errc{} || q != end || o.bot_id < 0) {
      return std::nullopt;
    }
  }
  return o;
}

std::string format_telegram_offset(const TelegramOffset& o) {
  return std::to_string(o.offset) + ":" + std::to_string(o.bot_id);
}

std::string telegram_external_id(std::int64_t bot_id, std::string_view chat_id,
                                 std::string_view message_id) {
  std::string id = std::string(chat_id) + ":" + std::string(message_id);
  return bot_id == 0 ? id : std::to_string(bot_id) + ":" + id;
}

std::optional<TelegramMessageRef> parse_telegram_external_id(std::string_view external_id) {
  std::size_t colon = external_id.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return std::nullopt;
  }
  TelegramMessageRef ref;
  std::string_view chat = external_id.substr(0, colon);
  std::string_view mid = external_id.substr(colon + 1);
  auto [p, ec] = std::from_chars(mid.data(), mid.data() + mid.size(), ref.message_id);
  if (ec != std::errc{} || p != mid.data() + mid.size()) {
    return std::nullopt;
  }
  // Chat ids are numbers (a channel's @username is only ever a destination, never where a
  // message came from), so a ':' left in the chat part ends the bot id.
  if (std::size_t first = chat.find(':'); first != std::string_view::npos) {
    std::string_view bot = chat.substr(0, first);
    auto [q, ec2] = std::from_chars(bot.data(), bot.data() + bot.size(), ref.bot_id);
    if (ec2 != std::errc{} || q != bot.data() + bot.size() || first + 1 == chat.size()) {
      return std::nullopt;
    }
    chat = chat.substr(first + 1);
  }
  ref.chat_id = chat;
  return ref;
}

HttpRequestSpec telegram_send_message(const config::Telegram& cfg, std::string_view chat_id,
                                      std::string_view text,
                                      std::optional<std::int64_t> reply_to_message_id) {
  json::object body;
  // chat_id as a number when it is one (it always is for chats we received from).
  std::int64_t numeric = 0;
  auto [p, ec] = std::from_chars(chat_id.data(), chat_id.data() + chat_id.size(), numeric);
  if (ec == std::errc{} && p == chat_id.data() + chat_id.size()) {
    body["chat_id"] = numeric;
  } else {
    body["chat_id"] = chat_id;
  }
  body["text"] = text;
  if (reply_to_message_id) {
    body["reply_to_message_id"] = *reply_to_message_id;
    body["allow_sending_without_reply"] = true;
  }
  return HttpRequestSpec{
      "POST", bot_path(cfg, "sendMessage"), "application/json", json::serialize(body), {}};
}

}  // namespace sb::social
