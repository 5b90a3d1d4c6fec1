#pragma once
// A fake Telegram Bot API (core.telegram.org/bots/api): /bot<token>/getMe, getUpdates long
// polling (offset confirms and drops earlier updates; held until an update arrives or `timeout`
// seconds pass), sendMessage recording reply_to_message_id, and a 429 with
// parameters.retry_after on demand. sendMessage answers can be lost on demand: the message is
// delivered and the connection closes without an answer (as a timeout looks to the client).
// Several bots can be served at once (add_bot): each has its own token, its own update_id
// sequence and its own message ids, as on Telegram; getMe's id is the token's number before ':'.
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tests/social/fakes/fake_http.hpp"

namespace sb::test {

class FakeTelegram {
 public:
  struct Sent {
    std::string chat_id, text;
    long long reply_to_message_id = 0;
  };
  explicit FakeTelegram(std::string token = "123:tg-token",
                        std::string bot_username = "support_bot");
  void start(std::uint16_t port = 0) { server_.start(port); }
  void stop() { server_.stop(); }
  std::string base_url() const { return server_.base_url(); }

  // Another bot on the same server, whose update_ids start after `last_update_id`.
  void add_bot(std::string token, std::string bot_username, long long last_update_id);
  // A private message from user `user_id` to the bot `bot_id` (0: the first bot); returns its
  // message_id.
  long long add_private_message(long long user_id, const std::string& first_name,
                                const std::string& text, long long bot_id = 0);
  // A message (its JSON object without message_id and date, which are filled in) to the bot
  // `bot_id` (0: the first bot): a group's, a location, an upgrade's service message ...;
  // returns its message_id.
  long long add_message(const std::string& message_json, long long bot_id = 0);
  // The group `from_chat` was upgraded to the supergroup `to_chat`: sendMessage to the group is
  // refused (400, parameters.migrate_to_chat_id), as Telegram does.
  void migrate_chat(long long from_chat, long long to_chat);
  // The next `n` sendMessage are delivered (in sent()) and answered with this status and body
  // (a 502 or 504 from the gateway in front of the Bot API).
  void answer_next_sends(int status, std::string body, int n = 1);
  // The next `times` getUpdates answer 429 with parameters.retry_after `retry_after_s` (which
  // may be 0 or negative, as a broken server might send).
  void rate_limit_next(int retry_after_s, int times = 1);
  // The next getUpdates not answered yet by an earlier call gets this answer instead (a 200 with
  // a truncated or garbage body, one over the client's size cap).
  void answer_next_poll(int status, std::string body);
  // The next `n` sendMessage are delivered (in sent()), and their answers lost.
  void lose_next_send_answers(int n);
  // While held, sendMessage is delivered (in sent()) and its answer waits, the connection open
  // (a provider slower than the daemon's stop, or a daemon killed meanwhile); released, the
  // answers go.
  void hold_send_answers(bool hold);
  // A new token of the same bot (the old one revoked at @BotFather): from now on only `token`
  // is accepted, a request held with the old one included.
  void set_token(std::string token);
  std::vector<Sent> sent() const;
  int get_me_requests() const;  // answered ones
  int get_updates_requests() const;
  // The offsets getUpdates asked the bot `bot_id` (0: the first bot) with, in order; 0 for a
  // request without one.
  std::vector<long long> offsets_asked(long long bot_id = 0) const;
  // Highest offset a getUpdates asked the bot `bot_id` (0: the first bot) with.
  long long confirmed_offset(long long bot_id = 0) const;

 private:
  FakeHttpServer::Response handle(const FakeHttpServer::Request& r,
                                  std::chrono::milliseconds waited);
  struct Update {
    long long update_id;
    std::string json;
  };
  struct Bot {
    long long id;
    std::string token, username;
    std::vector<Update> updates;
    long long next_update, next_message = 1;
    long long confirmed = 0;
    std::vector<long long> offsets;
  };
  Bot& bot(long long id);
  const Bot& bot(long long id) const;
  mutable std::mutex mu_;
  std::vector<Bot> bots_;
  std::vector<Sent> sent_;
  int retry_after_ = 0;
  int rate_limited_ = 0;  // getUpdates still to answer 429
  std::deque<std::pair<int, std::string>> canned_;
  int lose_answers_ = 0;
  std::map<long long, long long> migrated_;  // group -> supergroup
  int answers_left_ = 0;
  std::pair<int, std::string> answer_;
  bool hold_sends_ = false;
  int get_me_ = 0;
  int get_updates_ = 0;
  FakeHttpServer server_;
};

}  // namespace sb::test
