#include "tests/social/fakes/fake_x.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <utility>

#include "core/time.hpp"

namespace sb::test {

namespace json = boost::json;
using Res = FakeHttpServer::Response;

namespace {
// X's form: "2026-01-02T03:04:05.000Z" (milliseconds, always ".000").
std::string created_at(std::int64_t ms) {
  std::string s = format_rfc3339(ms);
  s.insert(s.size() - 1, ".000");
  return s;
}
}  // namespace

FakeX::FakeX(std::string user_id, std::string token, int window_limit)
    : user_id_(std::move(user_id)),
      token_(std::move(token)),
      window_limit_(window_limit),
      server_([this](const FakeHttpServer::Request& r, std::chrono::milliseconds) {
        std::lock_guard lock(mu_);
        return handle(r);
      }) {}

std::string FakeX::add_mention(const std::string& author_id, const std::string& username,
                               const std::string& text, const std::string& conversation_id,
                               std::chrono::milliseconds age) {
  std::lock_guard lock(mu_);
  Tweet t{++next_id_, author_id, username, text, conversation_id, now_ms() - age.count()};
  if (t.conversation_id.empty()) {
    t.conversation_id = std::to_string(t.id);
  }
  tweets_.push_back(t);
  return std::to_string(t.id);
}

void FakeX::rate_limit_next_page() {
  std::lock_guard lock(mu_);
  limit_next_ = true;
}

void FakeX::set_usage_capped(bool on) {
  std::lock_guard lock(mu_);
  capped_ = on;
}

void FakeX::lose_next_post_answers(int n) {
  std::lock_guard lock(mu_);
  lose_answers_ = n;
}

int FakeX::post_requests() const {
  std::lock_guard lock(mu_);
  return post_requests_;
}

std::vector<FakeX::Posted> FakeX::posted() const {
  std::lock_guard lock(mu_);
  return posted_;
}

int FakeX::mention_requests() const {
  std::lock_guard lock(mu_);
  return mention_requests_;
}

std::vector<std::map<std::string, std::string>> FakeX::mention_queries() const {
  std::lock_guard lock(mu_);
  return queries_;
}

int FakeX::rejected_429() const {
  std::lock_guard lock(mu_);
  return rejected_;
}

Res FakeX::handle(const FakeHttpServer::Request& r) {
  if (r.header("authorization") != "Bearer " + token_) {
    return {
        401,
        R"({"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"})"};
  }
  if (capped_) {
    return {
        429,
        R"({"title":"UsageCapExceeded","detail":"Usage cap exceeded: Monthly product cap","type":"https://api.twitter.com/2/problems/usage-capped","period":"Monthly","scope":"Product"})"};
  }
  // A 15-minute window per endpoint family, reported the documented way.
  auto now = std::chrono::system_clock::now();
  if (window_used_ == 0 || now >= window_start_ + std::chrono::minutes(15)) {
    window_start_ = now;
    window_used_ = 0;
  }
  auto reset = std::chrono::duration_cast<std::chrono::seconds>(
                   (window_start_ + std::chrono::minutes(15)).time_since_epoch())
                   .count();
  Res res;
  if (limit_next_ && r.query.count("pagination_token") > 0) {
    limit_next_ = false;
    ++rejected_;
    res = {
        429,
        R"({"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429})"};
    res.headers.emplace_back("x-rate-limit-limit", std::to_string(window_limit_));
    res.headers.emplace_back("x-rate-limit-remaining", "0");
    res.headers.emplace_back("x-rate-limit-reset",
                             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                (now + std::chrono::seconds(1)).time_since_epoch())
                                                .count()));
    return res;
  }
  if (window_used_ >= window_limit_) {
    ++rejected_;
    res = {
        429,
        R"({"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429})"};
  } else {
    ++window_used_;
    if (r.method == "GET" && r.path == "/2/users/" + user_id_ + "/mentions") {
      res = mentions(r);
    } else if (r.method == "POST" && r.path == "/2/tweets") {
      ++post_requests_;
      json::value v = json::parse(r.body);
      Posted p{"", std::string(v.at("text").as_string()), ""};
      if (auto* reply = v.as_object().if_contains("reply")) {
        p.in_reply_to_tweet_id = std::string(reply->at("in_reply_to_tweet_id").as_string());
      }
      bool repeat = std::any_of(posted_.begin(), posted_.end(),
                                [&p](const Posted& earlier) { return earlier.text == p.text; });
      if (repeat) {
        // X's answer to a text the account posted recently: a generic 403 problem whose detail
        // alone says why.
        res = {
            403,
            R"({"detail":"You are not allowed to create a Tweet with duplicate content.","type":"about:blank","title":"Forbidden","status":403})"};
      } else {
        p.id = std::to_string(++next_id_);
        posted_.push_back(p);
        if (lose_answers_ > 0) {
          --lose_answers_;
          res.drop = true;
          return res;
        }
        res = {201, json::serialize(
                        json::object{{"data", json::object{{"id", p.id}, {"text", p.text}}}})};
      }
    } else {
      res = {
          404,
          R"({"title":"Not Found Error","type":"https://api.twitter.com/2/problems/resource-not-found"})"};
    }
  }
  res.headers.emplace_back("x-rate-limit-limit", std::to_string(window_limit_));
  res.headers.emplace_back("x-rate-limit-remaining",
                           std::to_string(std::max(0, window_limit_ - window_used_)));
  res.headers.emplace_back("x-rate-limit-reset", std::to_string(reset));
  return res;
}

Res FakeX::mentions(const FakeHttpServer::Request& r) {
  ++mention_requests_;
  queries_.push_back(r.query);
  long long since = r.param("since_id").empty() ? 0 : std::stoll(r.param("since_id"));
  // start_time: the oldest created_at returned, whole seconds, inclusive.
  std::int64_t start = 0;
  if (!r.param("start_time").empty()) {
    auto at = parse_rfc3339(r.param("start_time"));
    if (!at || r.param("start_time").find('.') != std::string::npos) {
      return {
          400,
          R"({"title":"Invalid Request","detail":"start_time must be YYYY-MM-DDTHH:mm:ssZ","type":"https://api.twitter.com/2/problems/invalid-request"})"};
    }
    start = *at;
  }
  std::size_t max = r.param("max_results").empty() ? 10 : std::stoul(r.param("max_results"));
  // The pagination token is opaque to clients; here it encodes "older than this id".
  long long before =
      r.param("pagination_token").empty() ? 0 : std::stoll(r.param("pagination_token").substr(1));
  std::vector<const Tweet*> range;
  for (auto it = tweets_.rbegin(); it != tweets_.rend(); ++it) {  // newest first
    if (it->id <= since || (before != 0 && it->id >= before) || it->created_at_ms < start) {
      continue;
    }
    range.push_back(&*it);
  }
  bool more = range.size() > max;
  if (more) {
    range.resize(max);
  }
  json::object meta{{"result_count", range.size()}};
  if (range.empty()) {
    return {200, json::serialize(json::object{{"meta", meta}})};
  }
  json::array data;
  json::array users;
  for (const Tweet* t : range) {
    data.push_back(json::object{{"id", std::to_string(t->id)},
                                {"text", t->text},
                                {"author_id", t->author_id},
                                {"conversation_id", t->conversation_id},
                                {"created_at", created_at(t->created_at_ms)},
                                {"edit_history_tweet_ids", json::array{std::to_string(t->id)}}});
    users.push_back(
        json::object{{"id", t->author_id}, {"name", t->username}, {"username", t->username}});
  }
  meta["newest_id"] = std::to_string(range.front()->id);
  meta["oldest_id"] = std::to_string(range.back()->id);
  if (more) {
    meta["next_token"] = "b" + std::to_string(range.back()->id);
  }
  return {200, json::serialize(json::object{
                   {"data", data}, {"includes", json::object{{"users", users}}}, {"meta", meta}})};
}

}  // namespace sb::test
