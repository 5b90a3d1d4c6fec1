#include "tests/social/fakes/fake_telegram.hpp"

#include <algorithm>
#include <boost/json.hpp>

namespace sb::test {

namespace json = boost::json;
using Res = FakeHttpServer::Response;

FakeTelegram::FakeTelegram(std::string token, std::string bot_username)
    : token_(std::move(token)),
      username_(std::move(bot_username)),
      server_([this](const FakeHttpServer::Request& r, std::chrono::milliseconds waited) {
        std::lock_guard lock(mu_);
        return handle(r, waited);
      }) {}

long long FakeTelegram::add_private_message(long long user_id, const std::string& first_name,
                                            const std::string& text) {
  std::lock_guard lock(mu_);
  long long mid = next_message_++;
  json::object from{
      {"id", user_id}, {"is_bot", false}, {"first_name", first_name}, {"language_code", "en"}};
  json::object chat{{"id", user_id}, {"first_name", first_name}, {"type", "private"}};
  json::object msg{
      {"message_id", mid}, {"from", from}, {"chat", chat}, {"date", 1767322800}, {"text", text}};
  long long uid = ++next_update_;
  updates_.push_back({uid, json::serialize(json::object{{"update_id", uid}, {"message", msg}})});
  return mid;
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
  token_ = std::move(token);
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

long long FakeTelegram::confirmed_offset() const {
  std::lock_guard lock(mu_);
  return confirmed_;
}

Res FakeTelegram::handle(const FakeHttpServer::Request& r, std::chrono::milliseconds waited) {
  std::string prefix = "/bot" + token_ + "/";
  if (r.path.rfind(prefix, 0) != 0) {
    return {401, R"({"ok":false,"error_code":401,"description":"Unauthorized"})"};
  }
  std::string method = r.path.substr(prefix.size());
  if (method == "getMe") {
    ++get_me_;
    return {200, json::serialize(json::object{{"ok", true},
                                              {"result", json::object{{"id", 7000001},
                                                                      {"is_bot", true},
                                                                      {"first_name", "Support"},
                                                                      {"username", username_}}}})};
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
    // Asking with an offset confirms every earlier update: Telegram forgets them.
    if (offset > 0) {
      confirmed_ = std::max(confirmed_, offset);
      std::erase_if(updates_, [&](const Update& u) { return u.update_id < offset; });
    }
    json::array result;
    for (const auto& u : updates_) {
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
                                           {"result", json::object{{"message_id", next_message_++},
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
    if (auto* rp = o.if_contains("reply_parameters")) {
      s.reply_to_message_id = rp->at("message_id").to_number<long long>();
    } else if (auto* id = o.if_contains("reply_to_message_id")) {
      s.reply_to_message_id = id->to_number<long long>();
    }
    sent_.push_back(s);
    if (hold_sends_) {
      return Res::held();
    }
    long long mid = next_message_++;
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
