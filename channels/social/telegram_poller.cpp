// Telegram getUpdates long polling: see telegram.hpp for the offset protocol.
#include "channels/social/pollers.hpp"
#include "channels/social/telegram.hpp"
#include "core/log.hpp"

#include <boost/json.hpp>

namespace sb::social {

namespace asio = boost::asio;
namespace json = boost::json;
using std::chrono::milliseconds;

namespace {

class TelegramPoller final : public Poller {
 public:
  TelegramPoller(Runtime& rt, const config::Telegram& cfg, int long_poll_s)
      : rt_(rt), cfg_(cfg), key_("telegram:" + cfg_.name), long_poll_s_(long_poll_s) {}

  const char* channel() const override { return "telegram"; }
  const std::string& account() const override { return cfg_.name; }

  asio::awaitable<PollResult> poll_once() override {
    auto log = logger("social");
    // getMe names the bot, to tell group messages that mention it from the rest, and says whose
    // update_ids offset_ counts. Asked again after a reload put in a new bot_token
    // (config::take_secrets), as a restart would, and again if one came while it was asked:
    // bot_ always names the bot of the token getUpdates is asked with below.
    while (!bot_ || bot_token_ != cfg_.bot_token) {
      std::string token = cfg_.bot_token;
      net::HttpRequest me = to_request(cfg_.base_url, telegram_get_me(cfg_));
      net::HttpResponse res = co_await rt_.http.request(std::move(me));
      auto bot = res.status == 200 ? parse_telegram_get_me(res.body) : std::nullopt;
      if (!bot) {
        co_return PollResult::failed(what_failed("getMe", res));
      }
      bot_ = *bot;
      bot_token_ = std::move(token);
      log->info("[telegram:{}] polling as @{}", cfg_.name, bot_->username);
    }
    if (!loaded_) {
      if (auto v = rt_.pipeline.cursor(key_, "offset")) {
        if (auto o = parse_telegram_offset(*v)) {
          offset_ = o->offset;
          offset_bot_ = o->bot_id;
        }
      }
      migrated_from_ = parse_migrations(rt_.pipeline.cursor(key_, "chat_migrations"));
      loaded_ = true;
    }
    // update_ids are numbered per bot, and asking with offset N drops every update below N: the
    // offset of another bot (the account was given another bot's token, at a restart or a
    // reload) would drop this bot's pending updates unread. Without an offset Telegram returns
    // all of them; a message the account already holds is a duplicate (its external_id names
    // the bot). A row stored before the bot id was (bot 0) is taken for this bot's, as it was.
    if (offset_ && offset_bot_ != 0 && offset_bot_ != bot_->id) {
      log->info(
          "[telegram:{}] the stored offset belongs to bot {}, not {}: reading the new bot's "
          "updates from the start",
          cfg_.name, offset_bot_, bot_->id);
      offset_.reset();
    }
    offset_bot_ = bot_->id;
    net::HttpRequest req =
        to_request(cfg_.base_url, telegram_get_updates(cfg_, offset_, long_poll_s_));
    req.timeout = std::chrono::seconds(long_poll_s_ + 15);  // the server holds the request
    net::HttpResponse res = co_await rt_.http.request(std::move(req));
    if (res.status == 0) {
      co_return PollResult::failed(res.error);
    }
    TelegramUpdates up = parse_telegram_updates(cfg_, *bot_, res.body, migrated_from_);
    if (auto learnt = learn_migrations(up.migrations)) {
      // Committed before the messages that need it: a crash in between asks for them again.
      // Kept in memory only once committed: a failed commit leaves the map as it was, so the
      // next poll, reading the same service messages, learns and stores them again.
      std::optional<CursorUpdate> mu =
          CursorUpdate{key_, "chat_migrations", format_migrations(*learnt)};
      std::vector<Inbound> none;
      std::string err = co_await store_batch(rt_, "telegram", cfg_.name, none, mu);
      if (!err.empty()) {
        co_return PollResult::failed("storing a group's upgrade to a supergroup: " + err);
      }
      for (const auto& [to, from] : *learnt) {
        if (migrated_from_.emplace(to, from).second) {
          logger("social")->info("[telegram:{}] group {} was upgraded to supergroup {}", cfg_.name,
                                 from, to);
        }
      }
      // Again, so that the supergroup's messages of this response find the old group's
      // conversations too.
      up = parse_telegram_updates(cfg_, *bot_, res.body, migrated_from_);
    }
    if (up.error) {
      if (up.error->retry_after) {
        rt_.metrics.inc("switchboard_social_rate_limited_total",
                        {{"channel", "telegram"}, {"account", cfg_.name}});
        log->warn("[telegram:{}] rate limited; retrying after {} s", cfg_.name,
                  up.error->retry_after->count());
        // Bounded both ways: retry_after 0 or below would poll again at once, in a loop.
        co_return PollResult::again_in(
            bound_poll_wait(rt_, "telegram", cfg_.name, *up.error->retry_after, "retry_after"));
      }
      co_return PollResult::failed(what_failed("getUpdates", res));
    }
    if (up.next_offset) {
      std::size_t n = up.items.size();
      // bot_ is still the bot asked: only this coroutine changes it. After a reload to another
      // bot the updates of the request held with the old token are stored as the old bot's.
      std::optional<CursorUpdate> cu =
          CursorUpdate{key_, "offset", format_telegram_offset({*up.next_offset, bot_->id})};
      std::string err = co_await store_batch(rt_, "telegram", cfg_.name, up.items, cu);
      if (!err.empty()) {
        co_return PollResult::failed("storing updates: " + err);
      }
      offset_ = *up.next_offset;  // confirms the stored updates on Telegram's side next time
      if (n > 0) {
        log->info("[telegram:{}] stored {} messages; offset {}", cfg_.name, n, offset_.value());
      }
    }
    co_return PollResult::again_in(milliseconds(0));  // the long poll itself is the wait
  }

 private:
  // The stored map of supergroups to the groups they were upgraded from (scope
  // "chat_migrations"): a JSON object, new chat id -> old chat id.
  static std::map<std::string, std::string> parse_migrations(const std::optional<std::string>& v) {
    std::map<std::string, std::string> out;
    boost::system::error_code ec;
    json::value root = v ? json::parse(*v, ec) : json::value();
    if (!ec && root.is_object()) {
      for (const auto& [to, from] : root.get_object()) {
        if (from.is_string()) {
          out[std::string(to)] = std::string(from.get_string());
        }
      }
    }
    return out;
  }
  // The known upgrades with `more` added.
  std::string format_migrations(const std::map<std::string, std::string>& more) const {
    json::object o;
    for (const auto& [to, from] : migrated_from_) {
      o[to] = from;
    }
    for (const auto& [to, from] : more) {
      o.emplace(to, from);
    }
    return json::serialize(o);
  }
  // The upgrades in `ms` not known yet (new chat id -> old chat id), or none.
  std::optional<std::map<std::string, std::string>> learn_migrations(
      const std::vector<TelegramMigration>& ms) const {
    std::map<std::string, std::string> added;
    for (const auto& m : ms) {
      if (!m.from_chat_id.empty() && !m.to_chat_id.empty() &&
          !migrated_from_.contains(m.to_chat_id)) {
        added.emplace(m.to_chat_id, m.from_chat_id);
      }
    }
    if (added.empty()) {
      return std::nullopt;
    }
    return added;
  }

  // Never the URL: it carries the bot token.
  std::string what_failed(const char* method, const net::HttpResponse& res) const {
    if (res.status == 0) {
      return std::string(method) + ": " + res.error;
    }
    auto e = parse_telegram_error(res.body);
    return std::string(method) + ": HTTP " + std::to_string(res.status) +
           (e ? " " + e->description : "");
  }

  Runtime& rt_;
  const config::Telegram& cfg_;
  std::string key_;
  int long_poll_s_;
  bool loaded_ = false;
  std::optional<std::int64_t> offset_;
  std::int64_t offset_bot_ = 0;  // the bot whose update_ids offset_ counts; 0: not known
  std::map<std::string, std::string> migrated_from_;  // supergroup chat id -> old group's
  std::optional<TelegramBot> bot_;
  std::string bot_token_;  // the token getMe named bot_ for
};

}  // namespace

std::shared_ptr<Poller> make_telegram_poller(Runtime& rt, const config::Telegram& cfg,
                                             int long_poll_s) {
  return std::make_shared<TelegramPoller>(rt, cfg, long_poll_s);
}

}  // namespace sb::social
