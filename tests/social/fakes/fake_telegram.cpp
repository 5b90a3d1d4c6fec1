#include "tests/social/fakes/fake_telegram.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <stdexcept>
#include <utility>

namespace sb::test {

namespace json = boost::json;
using Res = FakeHttpServer::Response;

namespace {

long long id_of(const std::string& token) {
  return std::stoll(token.substr(0, token.find(':')));
}

}  // namespace

FakeTelegram::FakeTelegram(std::string token, std::string bot_username)
    : server_([this](const FakeHttpServer::Request& r, std::chrono::milliseconds waited) {
        std::lock_guard lock(mu_);
        return handle(r, waited);
      }) {
  add_bot(std::move(token), std::move(bot_username), 500000000);
}

void FakeTelegram::add_bot(std::string token, std::string bot_username, long long last_update_id) {
  std::lock_guard lock(mu_);
  long long id = id_of(token);
  bots_.push_back(Bot{id, std::move(token), std::move(bot_username), {}, last_update_id});
}

FakeTelegram::Bot& FakeTelegram::bot(long long id) {
  return const_cast<Bot&>(std::as_const(*this).bot(id));
}

const FakeTelegram::Bot& FakeTelegram::bot(long long id) const {
  if (id == 0) {
    return bots_.front();
  }
  auto it = std::find_if(bots_.begin(), bots_.end(), [&](const Bot& b) { return b.id == id; });
  if (it == bots_.end()) {
    throw std::invalid_argument("FakeTelegram: no bot " + std::to_string(id));
  }
  return *it;
}

long long FakeTelegram::add_private_message(long long user_id, const std::string& first_name,
                                            const std::string& text, long long bot_id) {
  std::lock_guard lock(mu_);
  Bot& b = bot(bot_id);
  long long mid = b.next_message++;
  json::object from{
      {"id", user_id}, {"is_bot", false}, {"first_name", first_name}, {"language_code", "en"}};
  json::object chat{{"id", user_id}, {"first_name", first_name}, {"type", "private"}};
  json::object msg{
      {"message_id", mid}, {"from", from}, {"chat", chat}, {"date", 1767322800}, {"text", text}};
  long long uid = ++b.next_update;
  b.updates.push_back({uid, json::serialize(json::object{{"update_id", uid}, {"message", msg}})});
  return mid;
}

long long FakeTelegram::add_message(const std::string& message_json, long long bot_id) {
  std::lock_guard lock(mu_);
  Bot& b = bot(bot_id);
  long long mid = b.next_message++;
  json::object msg = json::parse(message_json).as_object();
  msg["message_id"] = mid;
  msg["date"] = 1767322800;
  long long uid = ++b.next_update;
  b.updates.push_back({uid, json::serialize(json::object{{"update_id", uid}, {"message", msg}})});
  return mid;
}

void FakeTelegram::migrate_chat(long long from_chat, long long to_chat) {
  std::lock_guard lock(mu_);
  migrated_[from_chat] = to_chat;
}

void FakeTelegram::answer_next_sends(int status, std::string body, int n) {
  std::lock_guard lock(mu_);
  answer_ = {status, std::move(body)};
  answers_left_ = n;
}

void FakeTelegram::rate_limit_next(int retry_after_s, int times) {
  std::lock_guard lock(mu_);
  retry_after_ = retry_after_s;
  rate_limited_ = times;
}

void FakeTelegram::answer_next_poll(int status, std::string body) {
  std::lock_guard lock(mu_);
  canned_.emplace_back(status, std::move(body));
}

void FakeTelegram::lose_next_send_answers(int n) {
  std::lock_guard lock(mu_);
  lose_answers_ = n;
}

void FakeTelegram::hold_send_answers(bool hold) {
  std::lock_guard lock(mu_);
  hold_sends_ = hold;
}

void FakeTelegram::set_token(std::string token) {
  std::lock_guard lock(mu_);
  bot(id_of(token)).token = std::move(token);
}

int FakeTelegram::get_me_requests() const {
  std::lock_guard lock(mu_);
  return get_me_;
}

std::vector<FakeTelegram::Sent> FakeTelegram::sent() const {
  std::lock_guard lock(mu_);
  return sent_;
}

int FakeTelegram::get_updates_requests() const {
  std::lock_guard lock(mu_);
  return get_updates_;
}

long long FakeTelegram::confirmed_offset(long long bot_id) const {
  std::lock_guard lock(mu_);
  return bot(bot_id).confirmed;
}

std::vector<long long> FakeTelegram::offsets_asked(long long bot_id) const {
  std::lock_guard lock(mu_);
  return bot(bot_id).offsets;
}

Res FakeTelegram::handle(const FakeHttpServer::Request& r, std::chrono::milliseconds waited) {
  auto it = std::find_if(bots_.begin(), bots_.end(), [&](const Bot& b) {
    return r.path.rfind("/bot" + b.token + "/", 0) == 0;
  });
  if (it == bots_.end()) {
    return {401, R"({"ok":false,"error_code":401,"description":"Unauthorized"})"};
  }
  Bot& b = *it;
  std::string method = r.path.substr(("/bot" + b.token + "/").size());
  if (method == "getMe") {
    ++get_me_;
    return {200, json::serialize(json::object{{"ok", true},
                                              {"result", json::object{{"id", b.id},
                                                                      {"is_bot", true},
                                                                      {"first_name", "Support"},
                                                                      {"username", b.username}}}})};
  }
  if (method == "getUpdates") {
    if (waited.count() == 0) {
      ++get_updates_;
      if (!canned_.empty()) {
        auto [status, body] = std::move(canned_.front());
        canned_.pop_front();
        return {status, std::move(body)};
      }
      if (rate_limited_ > 0) {
        --rate_limited_;
        int s = retry_after_;
        return {429,
                R"({"ok":false,"error_code":429,"description":"Too Many Requests: retry after )" +
                    std::to_string(s) + R"(","parameters":{"retry_after":)" + std::to_string(s) +
                    "}}"};
      }
    }
    long long offset = r.query.count("offset") ? std::stoll(r.query.at("offset")) : 0;
    int timeout = r.query.count("timeout") ? std::stoi(r.query.at("timeout")) : 0;
    if (waited.count() == 0) {
      b.offsets.push_back(offset);
    }
    // Asking with an offset confirms every earlier update: Telegram forgets them.
    if (offset > 0) {
      b.confirmed = std::max(b.confirmed, offset);
      std::erase_if(b.updates, [&](const Update& u) { return u.update_id < offset; });
    }
    json::array result;
    for (const auto& u : b.updates) {
      if (result.size() < 100) {
        result.push_back(json::parse(u.json));
      }
    }
    if (result.empty() && waited < std::chrono::seconds(timeout)) {
      return Res::held();  // long poll: hold
    }
    return {200, json::serialize(json::object{{"ok", true}, {"result", result}})};
  }
  if (method == "sendMessage") {
    if (waited.count() > 0) {  // held: delivered when it came
      if (hold_sends_) {
        return Res::held();
      }
      return {200,
              json::serialize(json::object{{"ok", true},
                                           {"result", json::object{{"message_id", b.next_message++},
                                                                   {"date", 1767322800},
                                                                   {"text", sent_.back().text}}}})};
    }
    json::value v = json::parse(r.body);
    const auto& o = v.as_object();
    Sent s;
    s.chat_id = o.at("chat_id").is_string()
                    ? std::string(o.at("chat_id").as_string())
                    : std::to_string(o.at("chat_id").to_number<long long>());
    s.text = std::string(o.at("text").as_string());
    if (o.at("chat_id").is_number()) {
      if (auto m = migrated_.find(o.at("chat_id").to_number<long long>()); m != migrated_.end()) {
        return {400, R"({"ok":false,"error_code":400,"description":"Bad Request: group chat was )"
                     R"(upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":)" +
                         std::to_string(m->second) + "}}"};
      }
    }
    if (auto* rp = o.if_contains("reply_parameters")) {
      s.reply_to_message_id = rp->at("message_id").to_number<long long>();
    } else if (auto* id = o.if_contains("reply_to_message_id")) {
      s.reply_to_message_id = id->to_number<long long>();
    }
    sent_.push_back(s);
    if (answers_left_ > 0) {
      --answers_left_;
      return {answer_.first, answer_.second};
    }
    if (hold_sends_) {
      return Res::held();
    }
    long long mid = b.next_message++;
    if (lose_answers_ > 0) {
      --lose_answers_;
      Res lost;
      lost.drop = true;
      return lost;
    }
    return {200, json::serialize(json::object{
                     {"ok", true},
                     {"result",
                      json::object{{"message_id", mid}, {"date", 1767322800}, {"text", s.text}}}})};
  }
  return {404, R"({"ok":false,"error_code":404,"description":"Not Found"})"};
}

}  // namespace sb::test
