#include "tests/social/fakes/fake_x.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "core/crypto.hpp"
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

// The fake's own OAuth 1.0a check, written apart from channels/social/oauth1.cpp so that a
// mistake there does not verify itself here.
std::string pct(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string unpct(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// `OAuth name="value", name="value"` -> decoded pairs; nullopt when malformed.
std::optional<std::map<std::string, std::string>> oauth_params(const std::string& header) {
  const std::string scheme = "OAuth ";
  if (header.compare(0, scheme.size(), scheme) != 0) {
    return std::nullopt;
  }
  std::map<std::string, std::string> out;
  std::size_t i = scheme.size();
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',')) {
      ++i;
    }
    if (i == header.size()) {
      break;
    }
    const std::size_t eq = header.find("=\"", i);
    const std::size_t close = eq == std::string::npos ? eq : header.find('"', eq + 2);
    if (close == std::string::npos) {
      return std::nullopt;
    }
    out[unpct(header.substr(i, eq - i))] = unpct(header.substr(eq + 2, close - eq - 2));
    i = close + 1;
  }
  return out;
}

std::string b64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

Res unauthorized() {
  return {401,
          R"({"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"})"};
}
}  // namespace

config::XUserContext FakeX::user_context() {
  return {"xvz1evFS4wEEPTGEFPHBog", "kAcSOqF21Fu85e7z&jz7ZN2U+4ZRhf/V3Wp=wPAoE3Z7kBw",
          "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
          "Lsww doUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"};
}

std::optional<Res> FakeX::refuse_user_auth(const FakeHttpServer::Request& r) {
  return check_user_auth(r, post_authorizations_, auth_refusals_);
}

std::optional<Res> FakeX::check_user_auth(const FakeHttpServer::Request& r,
                                          std::vector<std::string>& authorizations,
                                          std::vector<std::string>& refusals) {
  const std::string auth = r.header("authorization");
  authorizations.push_back(auth);
  auto refuse = [&refusals](std::string why) {
    refusals.push_back(std::move(why));
    return unauthorized();
  };
  if (auth == "Bearer " + token_) {
    refusals.emplace_back("app-only bearer token");
    return Res{
        403,
        R"({"title":"Unsupported Authentication","detail":"Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].","type":"https://api.twitter.com/2/problems/unsupported-authentication","status":403})"};
  }
  auto params = oauth_params(auth);
  if (!params) {
    return refuse("not an OAuth authorization: " + auth);
  }
  for (const char* name :
       {"oauth_consumer_key", "oauth_nonce", "oauth_signature", "oauth_signature_method",
        "oauth_timestamp", "oauth_token", "oauth_version"}) {
    if (params->count(name) == 0 || (*params)[name].empty()) {
      return refuse(std::string("no ") + name);
    }
  }
  const config::XUserContext& keys = keys_;
  if ((*params)["oauth_consumer_key"] != keys.consumer_key ||
      (*params)["oauth_token"] != keys.access_token) {
    return refuse("unknown consumer key or token");
  }
  if ((*params)["oauth_signature_method"] != "HMAC-SHA1" || (*params)["oauth_version"] != "1.0") {
    return refuse("signature method or version");
  }
  const long long ts = std::stoll((*params)["oauth_timestamp"]);
  if (std::llabs(ts - now_ms() / 1000) > 300) {
    return refuse("timestamp " + std::to_string(ts) + " too far from now");
  }
  if (!nonces_.insert((*params)["oauth_nonce"]).second) {
    return refuse("nonce used before");
  }
  // Signed: the oauth_* parameters but the signature, and the query's (a JSON body is not).
  std::vector<std::pair<std::string, std::string>> signed_params;
  for (const auto& [name, value] : *params) {
    if (name != "oauth_signature" && name != "realm") {
      signed_params.emplace_back(pct(name), pct(value));
    }
  }
  for (const auto& [name, value] : r.query) {
    signed_params.emplace_back(pct(name), pct(value));
  }
  std::sort(signed_params.begin(), signed_params.end());
  std::string normalised;
  for (const auto& [name, value] : signed_params) {
    normalised += (normalised.empty() ? "" : "&") + name + "=" + value;
  }
  const std::string base =
      r.method + "&" + pct(server_.base_url() + r.path) + "&" + pct(normalised);
  const std::string expected =
      b64(sb::hmac_sha1(pct(keys.consumer_secret) + "&" + pct(keys.access_token_secret), base));
  if ((*params)["oauth_signature"] != expected) {
    return refuse("signature " + (*params)["oauth_signature"] + " is not " + expected + " over " +
                  base);
  }
  return std::nullopt;
}

void FakeX::set_credentials(std::string token, config::XUserContext keys) {
  std::lock_guard lock(mu_);
  token_ = std::move(token);
  keys_ = std::move(keys);
}

std::vector<std::string> FakeX::post_authorizations() const {
  std::lock_guard lock(mu_);
  return post_authorizations_;
}

std::vector<std::string> FakeX::auth_refusals() const {
  std::lock_guard lock(mu_);
  return auth_refusals_;
}

config::X FakeX::replying_account() const {
  config::X account{"x", base_url(), token_, user_id_, std::chrono::milliseconds(200)};
  account.user_context = user_context();
  return account;
}

FakeX::FakeX(std::string user_id, std::string token, int window_limit)
    : user_id_(std::move(user_id)),
      token_(std::move(token)),
      window_limit_(window_limit),
      server_([this](const FakeHttpServer::Request& r, std::chrono::milliseconds) {
        std::lock_guard lock(mu_);
        return is_dm(r) ? handle_dm(r) : handle(r);
      }) {}

std::string FakeX::add_mention(const std::string& author_id, const std::string& username,
                               const std::string& text, const std::string& conversation_id,
                               std::chrono::milliseconds age) {
  std::lock_guard lock(mu_);
  Tweet t{mint(), author_id, username, text, conversation_id, now_ms() - age.count()};
  if (t.conversation_id.empty()) {
    t.conversation_id = std::to_string(t.id);
  }
  // Kept in id order: a post numbered below one added earlier (set_next_id) lands inside.
  auto at = std::upper_bound(tweets_.begin(), tweets_.end(), t.id,
                             [](long long id, const Tweet& other) { return id < other.id; });
  tweets_.insert(at, t);
  return std::to_string(t.id);
}

void FakeX::set_next_id(long long id) {
  std::lock_guard lock(mu_);
  next_id_ = id - kIdStep;
}

std::string FakeX::edit_mention(const std::string& id, const std::string& text) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(tweets_.begin(), tweets_.end(),
                         [&](const Tweet& t) { return std::to_string(t.id) == id; });
  if (it == tweets_.end()) {
    return {};
  }
  Tweet edit = *it;
  tweets_.erase(it);
  edit.edit_history.push_back(id);
  edit.id = mint();
  edit.text = text;
  tweets_.push_back(edit);
  return std::to_string(edit.id);
}

void FakeX::rate_limit_next_page() {
  std::lock_guard lock(mu_);
  limit_next_ = true;
}

void FakeX::rate_limit_next_poll(std::chrono::seconds reset_in) {
  std::lock_guard lock(mu_);
  limit_poll_ = reset_in;
}

void FakeX::answer_next_poll(int status, std::string body) {
  std::lock_guard lock(mu_);
  canned_.emplace_back(status, std::move(body));
}

void FakeX::set_usage_capped(bool on) {
  std::lock_guard lock(mu_);
  capped_ = on;
}

void FakeX::lose_next_post_answers(int n) {
  std::lock_guard lock(mu_);
  lose_answers_ = n;
}

void FakeX::daily_cap_next_posts(int n, std::string scope, std::string reset) {
  std::lock_guard lock(mu_);
  daily_capped_ = n;
  daily_scope_ = std::move(scope);
  daily_reset_ = std::move(reset);
}

void FakeX::daily_cap_next_dm_posts(int n, std::string scope, std::string reset) {
  std::lock_guard lock(mu_);
  dm_daily_capped_ = n;
  dm_daily_scope_ = std::move(scope);
  dm_daily_reset_ = std::move(reset);
}

void FakeX::forbid_dm_lookups(bool on) {
  std::lock_guard lock(mu_);
  dm_forbidden_ = on;
}

void FakeX::hold_posts(bool on) {
  std::lock_guard lock(mu_);
  hold_posts_ = on;
  post_held_ = false;
}

bool FakeX::post_held() const {
  std::lock_guard lock(mu_);
  return post_held_;
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
  if (r.method == "POST" && r.path == "/2/tweets" && hold_posts_) {
    post_held_ = true;
    return Res::held();  // asked again in 20 ms: its nonce is checked once it is answered
  }
  if (r.method == "POST" && r.path == "/2/tweets") {
    if (auto refused = refuse_user_auth(r)) {
      return *refused;
    }
  } else if (r.header("authorization") != "Bearer " + token_) {
    return unauthorized();
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
  const bool poll = r.method == "GET" && r.path == "/2/users/" + user_id_ + "/mentions";
  if (poll && !canned_.empty()) {
    ++mention_requests_;
    queries_.push_back(r.query);
    auto [status, body] = std::move(canned_.front());
    canned_.pop_front();
    return {status, std::move(body)};
  }
  if (poll && limit_poll_) {
    ++rejected_;
    res = {
        429,
        R"({"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429})"};
    res.headers.emplace_back("x-rate-limit-limit", std::to_string(window_limit_));
    res.headers.emplace_back("x-rate-limit-remaining", "0");
    res.headers.emplace_back(
        "x-rate-limit-reset",
        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                           (now + *std::exchange(limit_poll_, std::nullopt)).time_since_epoch())
                           .count()));
    return res;
  }
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
  if (r.method == "POST" && r.path == "/2/tweets" && daily_capped_ > 0 &&
      window_used_ < window_limit_) {
    --daily_capped_;
    ++window_used_;
    ++post_requests_;
    ++rejected_;
    res = {
        429,
        R"({"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429})"};
    const std::string other = daily_scope_ == "user" ? "app" : "user";
    const auto day_ahead = std::chrono::duration_cast<std::chrono::seconds>(
                               (now + std::chrono::hours(20)).time_since_epoch())
                               .count();
    res.headers.emplace_back("x-" + daily_scope_ + "-limit-24hour-limit", "100");
    res.headers.emplace_back("x-" + daily_scope_ + "-limit-24hour-remaining", "0");
    res.headers.emplace_back("x-" + daily_scope_ + "-limit-24hour-reset", daily_reset_);
    res.headers.emplace_back("x-" + other + "-limit-24hour-limit", "1667");
    res.headers.emplace_back("x-" + other + "-limit-24hour-remaining", "1500");
    res.headers.emplace_back("x-" + other + "-limit-24hour-reset", std::to_string(day_ahead));
  } else if (window_used_ >= window_limit_) {
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
        p.id = std::to_string(mint());
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
  auto edit_history = [](const Tweet& t) {
    json::array ids;
    for (const std::string& id : t.edit_history) {
      ids.push_back(json::value(id));
    }
    ids.push_back(json::value(std::to_string(t.id)));
    return ids;
  };
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
                                {"edit_history_tweet_ids", edit_history(*t)}});
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

namespace {
// Numeric id strings compared as numbers (shorter is smaller).
bool id_lt(const std::string& a, const std::string& b) {
  return a.size() != b.size() ? a.size() < b.size() : a < b;
}
std::string one_to_one(const std::string& a, const std::string& b) {
  return id_lt(a, b) ? a + "-" + b : b + "-" + a;
}
std::set<std::string> csv(const std::string& s) {
  std::set<std::string> out;
  std::size_t i = 0;
  while (i <= s.size() && !s.empty()) {
    std::size_t comma = s.find(',', i);
    out.insert(s.substr(i, comma == std::string::npos ? std::string::npos : comma - i));
    if (comma == std::string::npos) {
      break;
    }
    i = comma + 1;
  }
  return out;
}
}  // namespace

std::string FakeX::add_dm(const std::string& sender_id, const std::string& username,
                          const std::string& text, const std::string& conversation_id,
                          std::chrono::milliseconds age) {
  std::lock_guard lock(mu_);
  Dm dm{mint(),
        sender_id,
        username,
        text,
        conversation_id.empty() ? one_to_one(sender_id, user_id_) : conversation_id,
        now_ms() - age.count()};
  // Kept in id order: a DM numbered below one added earlier (set_next_id) lands inside.
  auto at = std::upper_bound(dms_.begin(), dms_.end(), dm.id,
                             [](long long id, const Dm& other) { return id < other.id; });
  dms_.insert(at, dm);
  return std::to_string(dm.id);
}

void FakeX::lose_next_dm_answers(int n) {
  std::lock_guard lock(mu_);
  lose_dm_answers_ = n;
}

void FakeX::gateway_error_after_next_dm_posts(int n, int status) {
  std::lock_guard lock(mu_);
  dm_gateway_errors_ = n;
  dm_gateway_status_ = status;
}

std::vector<FakeX::DmPosted> FakeX::dm_posted() const {
  std::lock_guard lock(mu_);
  return dm_posted_;
}

int FakeX::dm_post_requests() const {
  std::lock_guard lock(mu_);
  return dm_post_requests_;
}

int FakeX::dm_requests() const {
  std::lock_guard lock(mu_);
  return dm_requests_;
}

std::vector<std::map<std::string, std::string>> FakeX::dm_queries() const {
  std::lock_guard lock(mu_);
  return dm_queries_;
}

std::vector<std::string> FakeX::dm_auth_refusals() const {
  std::lock_guard lock(mu_);
  return dm_auth_refusals_;
}

bool FakeX::is_dm(const FakeHttpServer::Request& r) const {
  return r.path == "/2/dm_events" || r.path.rfind("/2/dm_conversations/", 0) == 0;
}

Res FakeX::handle_dm(const FakeHttpServer::Request& r) {
  if (r.method == "GET") {
    ++dm_requests_;
    dm_queries_.push_back(r.query);
  } else {
    ++dm_post_requests_;
  }
  if (auto refused = check_user_auth(r, dm_authorizations_, dm_auth_refusals_)) {
    return *refused;
  }
  if (capped_) {
    return {
        429,
        R"({"title":"UsageCapExceeded","detail":"Usage cap exceeded: Monthly product cap","type":"https://api.twitter.com/2/problems/usage-capped","period":"Monthly","scope":"Product"})"};
  }
  if (r.method == "POST" && dm_daily_capped_ > 0) {
    --dm_daily_capped_;
    ++rejected_;
    Res res{
        429,
        R"({"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429})"};
    const std::string other = dm_daily_scope_ == "user" ? "app" : "user";
    const auto day_ahead =
        std::chrono::duration_cast<std::chrono::seconds>(
            (std::chrono::system_clock::now() + std::chrono::hours(20)).time_since_epoch())
            .count();
    const auto window_reset =
        std::chrono::duration_cast<std::chrono::seconds>(
            (std::chrono::system_clock::now() + std::chrono::minutes(15)).time_since_epoch())
            .count();
    res.headers.emplace_back("x-rate-limit-limit", "200");
    res.headers.emplace_back("x-rate-limit-remaining", "150");
    res.headers.emplace_back("x-rate-limit-reset", std::to_string(window_reset));
    res.headers.emplace_back("x-" + dm_daily_scope_ + "-limit-24hour-limit", "1000");
    res.headers.emplace_back("x-" + dm_daily_scope_ + "-limit-24hour-remaining", "0");
    res.headers.emplace_back("x-" + dm_daily_scope_ + "-limit-24hour-reset", dm_daily_reset_);
    res.headers.emplace_back("x-" + other + "-limit-24hour-limit", "15000");
    res.headers.emplace_back("x-" + other + "-limit-24hour-remaining", "14000");
    res.headers.emplace_back("x-" + other + "-limit-24hour-reset", std::to_string(day_ahead));
    return res;
  }
  if (r.method == "POST") {
    return dm_post(r);
  }
  if (dm_forbidden_ && r.path == "/2/dm_events") {
    return {403, R"({"title":"Forbidden","detail":"Forbidden","type":"about:blank","status":403})"};
  }
  if (r.path != "/2/dm_events") {
    return {
        404,
        R"({"title":"Not Found Error","type":"https://api.twitter.com/2/problems/resource-not-found"})"};
  }
  // The DM lookups' own 15-minute window (per user: docs.x.com gives 300 on Pro).
  auto now = std::chrono::system_clock::now();
  if (dm_window_used_ == 0 || now >= dm_window_start_ + std::chrono::minutes(15)) {
    dm_window_start_ = now;
    dm_window_used_ = 0;
  }
  Res res;
  if (dm_window_used_ >= window_limit_) {
    ++rejected_;
    res = {
        429,
        R"({"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429})"};
  } else {
    ++dm_window_used_;
    res = dm_events(r);
  }
  res.headers.emplace_back("x-rate-limit-limit", std::to_string(window_limit_));
  res.headers.emplace_back("x-rate-limit-remaining",
                           std::to_string(std::max(0, window_limit_ - dm_window_used_)));
  res.headers.emplace_back(
      "x-rate-limit-reset",
      std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                         (dm_window_start_ + std::chrono::minutes(15)).time_since_epoch())
                         .count()));
  return res;
}

Res FakeX::dm_events(const FakeHttpServer::Request& r) {
  std::size_t max = r.param("max_results").empty() ? 100 : std::stoul(r.param("max_results"));
  if (max < 1 || max > 100) {
    return {
        400,
        R"({"title":"Invalid Request","detail":"max_results must be between 1 and 100","type":"https://api.twitter.com/2/problems/invalid-request"})"};
  }
  std::set<std::string> fields = csv(r.param("dm_event.fields"));
  fields.insert({"id", "event_type"});
  const std::set<std::string> types = csv(r.param("event_types"));
  const std::set<std::string> expansions = csv(r.param("expansions"));
  // Opaque to clients; here "d<id>": older than this id.
  long long before =
      r.param("pagination_token").empty() ? 0 : std::stoll(r.param("pagination_token").substr(1));
  std::vector<const Dm*> range;
  for (auto it = dms_.rbegin(); it != dms_.rend(); ++it) {  // newest first
    if (before != 0 && it->id >= before) {
      continue;
    }
    if (!types.empty() && types.count("MessageCreate") == 0) {
      continue;  // every event here is a MessageCreate
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
  std::set<std::string> listed;
  for (const Dm* d : range) {
    json::object e;
    const std::pair<const char*, json::value> all[] = {
        {"id", json::value(std::to_string(d->id))},
        {"event_type", json::value("MessageCreate")},
        {"text", json::value(d->text)},
        {"sender_id", json::value(d->sender_id)},
        {"dm_conversation_id", json::value(d->conversation_id)},
        {"created_at", json::value(created_at(d->created_at_ms))}};
    for (const auto& [name, value] : all) {
      if (fields.count(name) > 0) {
        e[name] = value;
      }
    }
    data.push_back(std::move(e));
    if (expansions.count("sender_id") > 0 && listed.insert(d->sender_id).second) {
      users.push_back(
          json::object{{"id", d->sender_id}, {"name", d->username}, {"username", d->username}});
    }
  }
  if (more) {
    meta["next_token"] = "d" + std::to_string(range.back()->id);
  }
  json::object body{{"data", data}, {"meta", meta}};
  if (!users.empty()) {
    body["includes"] = json::object{{"users", users}};
  }
  return {200, json::serialize(body)};
}

Res FakeX::dm_post(const FakeHttpServer::Request& r) {
  // /2/dm_conversations/with/{participant_id}/messages or /2/dm_conversations/{id}/messages.
  const std::string prefix = "/2/dm_conversations/", suffix = "/messages";
  std::string middle;
  if (r.path.size() > prefix.size() + suffix.size() &&
      r.path.compare(r.path.size() - suffix.size(), suffix.size(), suffix) == 0) {
    middle = r.path.substr(prefix.size(), r.path.size() - prefix.size() - suffix.size());
  }
  std::string conversation;
  if (middle.rfind("with/", 0) == 0) {
    conversation = one_to_one(middle.substr(5), user_id_);
  } else if (!middle.empty() && std::any_of(dms_.begin(), dms_.end(), [&](const Dm& d) {
               return d.conversation_id == middle;
             })) {
    conversation = middle;
  }
  if (conversation.empty()) {
    return {
        404,
        R"({"title":"Not Found Error","type":"https://api.twitter.com/2/problems/resource-not-found"})"};
  }
  boost::system::error_code ec;
  json::value v = json::parse(r.body, ec);
  const json::value* text = ec || !v.is_object() ? nullptr : v.as_object().if_contains("text");
  if (text == nullptr || !text->is_string() || text->as_string().empty()) {
    return {
        400,
        R"({"title":"Invalid Request","detail":"One or more parameters to your request was invalid.","type":"https://api.twitter.com/2/problems/invalid-request"})"};
  }
  Dm dm{mint(), user_id_, "support", std::string(text->as_string()), conversation, now_ms()};
  dms_.push_back(dm);
  dm_posted_.push_back(DmPosted{std::to_string(dm.id), conversation, dm.text, r.path});
  if (lose_dm_answers_ > 0) {
    --lose_dm_answers_;
    Res res;
    res.drop = true;
    return res;
  }
  if (dm_gateway_errors_ > 0) {
    --dm_gateway_errors_;
    return {dm_gateway_status_, "<html><body><h1>" + std::to_string(dm_gateway_status_) +
                                    " Gateway Time-out</h1></body></html>"};
  }
  return {201, json::serialize(
                   json::object{{"data", json::object{{"dm_conversation_id", conversation},
                                                      {"dm_event_id", std::to_string(dm.id)}}}})};
}

}  // namespace sb::test
