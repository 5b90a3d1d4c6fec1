#include "tests/social/fakes/fake_mastodon.hpp"

#include <algorithm>
#include <charconv>
#include <deque>
#include <map>
#include <optional>
#include <utility>

#include <boost/json.hpp>

#include "core/time.hpp"
#include "tests/social/fakes/fake_http.hpp"

namespace sb::test {

namespace json = boost::json;
using Clock = std::chrono::system_clock;

struct FakeMastodon::Impl {
  using Request = FakeHttpServer::Request;
  using Response = FakeHttpServer::Response;

  std::string token;
  int window_limit;
  std::chrono::milliseconds window;

  mutable std::mutex mu;          // guards everything below
  std::vector<Mention> mentions;  // ascending ids
  std::int64_t next_id = 1000;
  std::vector<Posted> posts;
  std::map<std::string, std::size_t> by_key;  // Idempotency-Key -> index in posts
  int fail_posts = 0;
  int lose_posts = 0, lose_status = 502;                // lose_next_posts_behind()
  std::optional<std::chrono::milliseconds> limit_next;  // rate_limit_next()
  std::deque<std::pair<int, std::string>> canned;       // answer_next_poll()
  std::vector<std::string> post_keys;  // Idempotency-Key of every POST, failed ones too
  std::vector<std::map<std::string, std::string>> queries;  // of GET /api/v1/notifications
  std::string local_domain = "127.0.0.1";
  bool instance_v2 = true, instance_v1 = true;
  std::int64_t max_limit = 80;      // set_max_limit()
  bool ignore_min_id = false;       // set_ignore_min_id()
  bool omit_onward_at_end = false;  // set_omit_onward_link_at_end()
  Stats stats;
  Clock::time_point window_start{};
  int window_used = 0;
  FakeHttpServer server;  // last: destroyed first, so no request outlives the state above

  Impl(std::string t, int limit, std::chrono::milliseconds w)
      : token(std::move(t)),
        window_limit(limit),
        window(w),
        server([this](const Request& r, std::chrono::milliseconds) { return handle(r); }) {}

  // One request per connection, as the header says (the http client's reconnect test uses it).
  static Response reply(int status, std::string body) {
    Response res(status, std::move(body));
    res.close = true;
    return res;
  }

  // The request budget: a fixed window that starts with the first request after the last one
  // expired, like Mastodon's (rack-attack) per-token throttle.
  bool take_budget(Clock::time_point now) {
    if (window_used == 0 || now >= window_start + window) {
      window_start = now;
      window_used = 0;
    }
    if (window_used >= window_limit) {
      return false;
    }
    ++window_used;
    return true;
  }

  void rate_headers(Response& res) {
    auto reset_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        (window_start + window).time_since_epoch())
                        .count();
    std::string iso = format_rfc3339(reset_ms);  // "...Z"; Mastodon adds ".000"
    iso.insert(iso.size() - 1, ".000");
    res.headers.emplace_back("X-RateLimit-Limit", std::to_string(window_limit));
    res.headers.emplace_back("X-RateLimit-Remaining",
                             std::to_string(std::max(0, window_limit - window_used)));
    res.headers.emplace_back("X-RateLimit-Reset", iso);
  }

  Response handle(const Request& req) {
    std::lock_guard lock(mu);
    // Public, unauthenticated, and throttled apart from the token's budget (per IP).
    if (req.method == "GET" && (req.path == "/api/v2/instance" || req.path == "/api/v1/instance")) {
      ++stats.instance_requests;
      if (req.path == "/api/v2/instance" && instance_v2) {
        return reply(200, json::serialize(json::object{
                              {"domain", local_domain}, {"title", "Fake"}, {"version", "4.3.0"}}));
      }
      if (req.path == "/api/v1/instance" && instance_v1) {
        return reply(200, json::serialize(json::object{
                              {"uri", local_domain}, {"title", "Fake"}, {"version", "3.5.3"}}));
      }
      return reply(404, R"({"error":"Record not found"})");
    }
    ++stats.requests;
    if (req.header("authorization") != "Bearer " + token) {
      return reply(401, R"({"error":"The access token is invalid"})");
    }
    Clock::time_point now = Clock::now();
    if (limit_next) {
      ++stats.rejected_429;
      auto res = reply(429, R"({"error":"Too many requests"})");
      std::string iso =
          format_rfc3339(std::chrono::duration_cast<std::chrono::milliseconds>(
                             (now + *std::exchange(limit_next, std::nullopt)).time_since_epoch())
                             .count());
      res.headers.emplace_back("X-RateLimit-Limit", std::to_string(window_limit));
      res.headers.emplace_back("X-RateLimit-Remaining", "0");
      res.headers.emplace_back("X-RateLimit-Reset", iso);
      return res;
    }
    if (req.method == "GET" && req.path == "/api/v1/notifications" && !canned.empty()) {
      ++stats.notification_requests;
      queries.push_back(req.query);
      auto [status, body] = std::move(canned.front());
      canned.pop_front();
      return reply(status, std::move(body));
    }
    if (!take_budget(now)) {
      ++stats.rejected_429;
      auto res = reply(429, R"({"error":"Too many requests"})");
      rate_headers(res);
      return res;
    }
    if (req.path.empty()) {
      return reply(400, R"({"error":"bad target"})");
    }
    Response res;
    if (req.method == "GET" && req.path == "/api/v1/notifications") {
      res = notifications(req);
    } else if (req.method == "POST" && req.path == "/api/v1/statuses") {
      res = post_status(req);
    } else {
      res = reply(404, R"({"error":"Record not found"})");
    }
    rate_headers(res);
    return res;
  }

  // A query parameter as a number; nullopt when absent or not a number.
  static std::optional<std::int64_t> int_param(const Request& r, const std::string& key) {
    std::string s = r.param(key);
    std::int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc{} ? std::optional<std::int64_t>(v) : std::nullopt;
  }

  Response notifications(const Request& req) {
    ++stats.notification_requests;
    queries.push_back(req.query);
    auto limit = static_cast<std::size_t>(
        std::clamp<std::int64_t>(int_param(req, "limit").value_or(40), 1, max_limit));
    auto min_id = ignore_min_id ? std::nullopt : int_param(req, "min_id");
    auto since_id = int_param(req, "since_id");
    auto max_id = int_param(req, "max_id");
    bool include_filtered = req.param("include_filtered") == "true";
    std::vector<const Mention*> range;
    for (const Mention& m : mentions) {
      if ((m.filtered && !include_filtered) || (min_id && m.notification_id <= *min_id) ||
          (since_id && m.notification_id <= *since_id) ||
          (max_id && m.notification_id >= *max_id)) {
        continue;
      }
      range.push_back(&m);
    }
    // min_id pages forward from the cursor (the oldest matches); since_id and max_id page from
    // the newest end (docs.joinmastodon.org "Paginating with the API").
    const bool forward = min_id && !since_id;
    const bool more_onward = range.size() > limit;  // what this page leaves for the next one
    if (range.size() > limit) {
      if (forward) {
        range.resize(limit);
      } else {
        range.erase(range.begin(), range.end() - static_cast<std::ptrdiff_t>(limit));
      }
    }
    std::reverse(range.begin(), range.end());  // newest first, always
    json::array out;
    std::string domain = "127.0.0.1";
    for (const Mention* m : range) {
      std::string username = m->acct.substr(0, m->acct.find('@'));
      json::object account{
          {"id", std::to_string(1000000 + std::hash<std::string>{}(m->acct) % 1000000)},
          {"username", username},
          {"acct", m->acct},
          {"display_name", username}};
      std::string created = format_rfc3339(m->created_at_ms);  // "...Z"; Mastodon adds ".000"
      created.insert(created.size() - 1, ".000");
      json::object status{
          {"id", std::to_string(m->status_id)},
          {"created_at", created},
          {"in_reply_to_id",
           m->in_reply_to_id.empty() ? json::value(nullptr) : json::value(m->in_reply_to_id)},
          {"visibility", m->visibility},
          {"spoiler_text", ""},
          {"content", m->html},
          {"account", account},
          {"media_attachments", json::array{}},
          {"mentions", json::array{json::object{{"id", "1"},
                                                {"username", "support"},
                                                {"url", "http://" + domain + "/@support"},
                                                {"acct", "support"}}}}};
      out.push_back(json::object{{"id", std::to_string(m->notification_id)},
                                 {"type", "mention"},
                                 {"created_at", created},
                                 {"account", account},
                                 {"status", status}});
    }
    auto res = reply(200, json::serialize(out));
    if (!range.empty()) {
      std::string base = "http://127.0.0.1:" + std::to_string(server.port()) +
                         "/api/v1/notifications?types%5B%5D=mention&limit=" + std::to_string(limit);
      std::string next = "<" + base + "&max_id=" + std::to_string(range.back()->notification_id) +
                         ">; rel=\"next\"";
      std::string prev = "<" + base + "&min_id=" + std::to_string(range.front()->notification_id) +
                         ">; rel=\"prev\"";
      if (omit_onward_at_end && !more_onward) {
        res.headers.emplace_back("Link", forward ? next : prev);  // only the way back
      } else {
        res.headers.emplace_back("Link", next + ", " + prev);
      }
    }
    return res;
  }

  Response post_status(const Request& req) {
    post_keys.push_back(req.header("idempotency-key"));
    if (fail_posts > 0) {
      --fail_posts;
      return reply(503, R"({"error":"Service unavailable"})");
    }
    std::string key = req.header("idempotency-key");
    auto render = [](const Posted& p) {
      return json::serialize(json::object{{"id", p.id},
                                          {"content", p.status},
                                          {"in_reply_to_id", p.in_reply_to_id},
                                          {"visibility", p.visibility}});
    };
    if (!key.empty()) {
      if (auto it = by_key.find(key); it != by_key.end()) {
        return reply(200, render(posts[it->second]));  // the same status again
      }
    }
    boost::system::error_code ec;
    json::value body = json::parse(req.body, ec);
    if (ec || !body.is_object()) {
      return reply(422, R"({"error":"Validation failed"})");
    }
    const json::object& o = body.get_object();
    auto s = [&](std::string_view k) -> std::string {
      const json::value* v = o.if_contains(k);
      return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
    };
    Posted p{std::to_string(++next_id + 500000000), s("status"), s("in_reply_to_id"),
             s("visibility").empty() ? "public" : s("visibility"), key};
    posts.push_back(p);
    if (!key.empty()) {
      by_key[key] = posts.size() - 1;
    }
    if (lose_posts > 0) {
      --lose_posts;
      return reply(lose_status,
                   "<html><body><h1>" + std::to_string(lose_status) + "</h1></body></html>");
    }
    return reply(200, render(p));
  }
};

FakeMastodon::FakeMastodon(std::string token, int window_limit, std::chrono::milliseconds window)
    : impl_(std::make_unique<Impl>(std::move(token), window_limit, window)) {}

FakeMastodon::~FakeMastodon() {
  stop();
}

void FakeMastodon::start() {
  impl_->server.start();
}

void FakeMastodon::stop() {
  impl_->server.stop();
}

std::uint16_t FakeMastodon::port() const {
  return impl_->server.port();
}

std::string FakeMastodon::base_url() const {
  return impl_->server.base_url();
}

int FakeMastodon::connections() const {
  return impl_->server.connections();
}

std::string FakeMastodon::add_mention(const std::string& acct, const std::string& text,
                                      const std::string& visibility,
                                      const std::string& in_reply_to_id, bool filtered,
                                      std::chrono::milliseconds age) {
  std::lock_guard lock(impl_->mu);
  Mention m;
  m.created_at_ms = now_ms() - age.count();
  m.notification_id = ++impl_->next_id;
  m.status_id = 100000000 + m.notification_id;
  m.acct = acct;
  m.html =
      "<p><span class=\"h-card\"><a href=\"http://127.0.0.1/@support\" class=\"u-url "
      "mention\">@<span>support</span></a></span> " +
      text + "</p>";
  m.visibility = visibility;
  m.in_reply_to_id = in_reply_to_id;
  m.filtered = filtered;
  // Kept in id order: a mention numbered below one added earlier (set_next_id) lands inside.
  auto at = std::upper_bound(
      impl_->mentions.begin(), impl_->mentions.end(), m.notification_id,
      [](std::int64_t id, const Mention& other) { return id < other.notification_id; });
  impl_->mentions.insert(at, m);
  return std::to_string(m.status_id);
}

void FakeMastodon::set_next_id(std::int64_t id) {
  std::lock_guard lock(impl_->mu);
  impl_->next_id = id - 1;
}

void FakeMastodon::set_instance(const std::string& local_domain, bool v2, bool v1) {
  std::lock_guard lock(impl_->mu);
  impl_->local_domain = local_domain;
  impl_->instance_v2 = v2;
  impl_->instance_v1 = v1;
}

void FakeMastodon::set_max_limit(int n) {
  std::lock_guard lock(impl_->mu);
  impl_->max_limit = n;
}

void FakeMastodon::set_ignore_min_id(bool v) {
  std::lock_guard lock(impl_->mu);
  impl_->ignore_min_id = v;
}

void FakeMastodon::set_omit_onward_link_at_end(bool v) {
  std::lock_guard lock(impl_->mu);
  impl_->omit_onward_at_end = v;
}

void FakeMastodon::fail_next_posts(int n) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_posts = n;
}

void FakeMastodon::lose_next_posts_behind(int n, int status) {
  std::lock_guard lock(impl_->mu);
  impl_->lose_posts = n;
  impl_->lose_status = status;
}

void FakeMastodon::rate_limit_next(std::chrono::milliseconds reset_in) {
  std::lock_guard lock(impl_->mu);
  impl_->limit_next = reset_in;
}

void FakeMastodon::answer_next_poll(int status, std::string body) {
  std::lock_guard lock(impl_->mu);
  impl_->canned.emplace_back(status, std::move(body));
}

std::vector<FakeMastodon::Posted> FakeMastodon::posted() const {
  std::lock_guard lock(impl_->mu);
  return impl_->posts;
}

std::vector<std::string> FakeMastodon::post_attempt_keys() const {
  std::lock_guard lock(impl_->mu);
  return impl_->post_keys;
}

FakeMastodon::Stats FakeMastodon::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

std::vector<std::map<std::string, std::string>> FakeMastodon::notification_queries() const {
  std::lock_guard lock(impl_->mu);
  return impl_->queries;
}

}  // namespace sb::test
