#include "tests/social/fakes/fake_meta.hpp"

#include <algorithm>

#include <boost/json.hpp>

namespace sb::test {

namespace json = boost::json;
using Res = FakeHttpServer::Response;

FakeMetaGraph::FakeMetaGraph(std::string token)
    : token_(std::move(token)),
      server_([this](const FakeHttpServer::Request& r, std::chrono::milliseconds) -> Res {
        std::lock_guard lock(mu_);
        const std::string auth = r.header("authorization");
        const std::string token = auth.starts_with("Bearer ") ? auth.substr(7) : "";
        if (token != token_ &&
            std::find(page_tokens_.begin(), page_tokens_.end(), token) == page_tokens_.end()) {
          return {
              401,
              R"({"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190}})"};
        }
        const bool replies = r.path.size() > 9 && r.path.ends_with("/replies");
        if (r.method != "POST" ||
            ((r.path.size() < 10 || !r.path.ends_with("/messages")) && !replies)) {
          return {404,
                  R"({"error":{"message":"Unknown path","type":"OAuthException","code":803}})"};
        }
        bool whatsapp = r.path != "/me/messages";
        ++requests_;
        if (int status = std::exchange(error_status_, 0); status != 0) {
          Res res{status, std::exchange(error_body_, {})};
          res.headers = std::exchange(error_headers_, {});
          return res;
        }
        if (replies) {
          // IG Comment Replies: `message` (form-encoded) is required; the answer is the new
          // comment's id.
          if (r.header("content-type") != "application/x-www-form-urlencoded" ||
              r.body.rfind("message=", 0) != 0) {
            return {
                400,
                R"({"error":{"message":"(#100) The parameter message is required","type":"OAuthException","code":100}})"};
          }
          sent_.push_back({r.path, r.body, token});
          return {200, R"({"id":"1787344045914)" + std::to_string(next_++) + R"("})"};
        }
        if (std::exchange(outside_window_, false)) {
          if (whatsapp) {
            return {
                400,
                R"({"error":{"message":"(#131047) Re-engagement message","type":"OAuthException","code":131047,"error_data":{"messaging_product":"whatsapp","details":"Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}})"};
          }
          return {
              400,
              R"({"error":{"message":"(#10) This message is sent outside of allowed window.","type":"OAuthException","code":10,"error_subcode":2018278}})"};
        }
        json::value v = json::parse(r.body);
        json::object contact;
        if (whatsapp) {
          // `to` takes a phone number (digits, "+" allowed) and wins over `recipient`, which
          // takes a business-scoped user id: the response names whichever was used.
          const json::value* to = v.as_object().if_contains("to");
          const json::value* user = v.as_object().if_contains("recipient");
          if (to != nullptr) {
            std::string_view n = to->as_string();
            if (!n.empty() && n.front() == '+') {
              n.remove_prefix(1);
            }
            if (n.empty() || n.find_first_not_of("0123456789") != std::string_view::npos) {
              return {
                  400,
                  R"({"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100,"error_data":{"messaging_product":"whatsapp","details":"Invalid phone number"}}})"};
            }
            contact = json::object{{"input", *to}, {"wa_id", json::string(n)}};
          } else if (user != nullptr && user->is_string()) {
            contact = json::object{{"input", *user}, {"user_id", *user}};
          } else {
            return {
                400,
                R"({"error":{"message":"(#100) The parameter to is required.","type":"OAuthException","code":100}})"};
          }
        }
        sent_.push_back({r.path, r.body, token});
        if (answer_) {
          Res res{answer_->first, std::move(answer_->second)};
          answer_.reset();
          return res;
        }
        if (lose_answers_ > 0) {
          --lose_answers_;
          Res lost;
          lost.drop = true;
          return lost;
        }
        std::string id = std::to_string(next_++);
        if (whatsapp) {
          return {200, json::serialize(json::object{
                           {"messaging_product", "whatsapp"},
                           {"contacts", json::array{std::move(contact)}},
                           {"messages", json::array{json::object{{"id", "wamid.out" + id}}}}})};
        }
        return {200, json::serialize(json::object{{"recipient_id", v.at("recipient").at("id")},
                                                  {"message_id", "m_out" + id}})};
      }) {}

void FakeMetaGraph::accept_token(std::string token) {
  std::lock_guard lock(mu_);
  page_tokens_.push_back(std::move(token));
}

void FakeMetaGraph::outside_window_next() {
  std::lock_guard lock(mu_);
  outside_window_ = true;
}

void FakeMetaGraph::error_next(int status, std::string body,
                               std::vector<std::pair<std::string, std::string>> headers) {
  std::lock_guard lock(mu_);
  error_status_ = status;
  error_body_ = std::move(body);
  error_headers_ = std::move(headers);
}

int FakeMetaGraph::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

void FakeMetaGraph::lose_next_answers(int n) {
  std::lock_guard lock(mu_);
  lose_answers_ = n;
}

void FakeMetaGraph::answer_next_send(int status, std::string body) {
  std::lock_guard lock(mu_);
  answer_.emplace(status, std::move(body));
}

std::vector<FakeMetaGraph::Sent> FakeMetaGraph::sent() const {
  std::lock_guard lock(mu_);
  return sent_;
}

}  // namespace sb::test
