#include "tests/social/fakes/fake_mastodon.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include "core/time.hpp"

namespace sb::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using Clock = std::chrono::system_clock;

struct FakeMastodon::Impl {
  std::string token;
  int window_limit;
  std::chrono::milliseconds window;

  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::thread thread;
  bool running = false;

  mutable std::mutex mu;          // guards everything below
  std::vector<Mention> mentions;  // ascending ids
  std::int64_t next_id = 1000;
  std::vector<Posted> posts;
  std::map<std::string, std::size_t> by_key;  // Idempotency-Key -> index in posts
  int fail_posts = 0;
  std::vector<std::string> post_keys;  // Idempotency-Key of every POST, failed ones too
  Stats stats;
  Clock::time_point window_start{};
  int window_used = 0;

  Impl(std::string t, int limit, std::chrono::milliseconds w)
      : token(std::move(t)), window_limit(limit), window(w) {}

  void accept() {
    acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        return;  // closed by stop()
      }
      serve(std::make_shared<beast::tcp_stream>(std::move(socket)));
      accept();
    });
  }

  void serve(std::shared_ptr<beast::tcp_stream> stream) {
    auto buffer = std::make_shared<beast::flat_buffer>();
    auto req = std::make_shared<http::request<http::string_body>>();
    stream->expires_after(std::chrono::seconds(10));
    http::async_read(
        *stream, *buffer, *req, [this, stream, buffer, req](beast::error_code ec, std::size_t) {
          if (ec) {
            return;
          }
          auto res = std::make_shared<http::response<http::string_body>>(handle(*req));
          res->keep_alive(false);
          res->prepare_payload();
          http::async_write(*stream, *res, [stream, res](beast::error_code, std::size_t) {
            beast::error_code ignored;
            stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
          });
        });
  }

  static http::response<http::string_body> reply(http::status status, std::string body) {
    http::response<http::string_body> res{status, 11};
    res.set(http::field::content_type, "application/json; charset=utf-8");
    res.body() = std::move(body);
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

  void rate_headers(http::response<http::string_body>& res) {
    auto reset_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        (window_start + window).time_since_epoch())
                        .count();
    res.set("X-RateLimit-Limit", std::to_string(window_limit));
    res.set("X-RateLimit-Remaining", std::to_string(std::max(0, window_limit - window_used)));
    std::string iso = format_rfc3339(reset_ms);  // "...Z"; Mastodon adds ".000"
    iso.insert(iso.size() - 1, ".000");
    res.set("X-RateLimit-Reset", iso);
  }

  http::response<http::string_body> handle(const http::request<http::string_body>& req) {
    std::lock_guard lock(mu);
    ++stats.requests;
    if (req[http::field::authorization] != "Bearer " + token) {
      return reply(http::status::unauthorized, R"({"error":"The access token is invalid"})");
    }
    Clock::time_point now = Clock::now();
    if (!take_budget(now)) {
      ++stats.rejected_429;
      auto res = reply(http::status::too_many_requests, R"({"error":"Too many requests"})");
      rate_headers(res);
      return res;
    }
    auto url = boost::urls::parse_origin_form(req.target());
    if (!url) {
      return reply(http::status::bad_request, R"({"error":"bad target"})");
    }
    http::response<http::string_body> res;
    if (req.method() == http::verb::get && url->path() == "/api/v1/notifications") {
      res = notifications(*url);
    } else if (req.method() == http::verb::post && url->path() == "/api/v1/statuses") {
      res = post_status(req);
    } else {
      res = reply(http::status::not_found, R"({"error":"Record not found"})");
    }
    rate_headers(res);
    return res;
  }

  static std::optional<std::int64_t> param(const boost::urls::url_view& url, std::string_view key) {
    for (auto p : url.params()) {
      if (p.key == key) {
        std::int64_t v = 0;
        auto [ptr, ec] = std::from_chars(p.value.data(), p.value.data() + p.value.size(), v);
        if (ec == std::errc{}) {
          return v;
        }
      }
    }
    return std::nullopt;
  }

  http::response<http::string_body> notifications(const boost::urls::url_view& url) {
    ++stats.notification_requests;
    auto limit =
        static_cast<std::size_t>(std::clamp<std::int64_t>(param(url, "limit").value_or(40), 1, 80));
    auto min_id = param(url, "min_id");
    auto since_id = param(url, "since_id");
    auto max_id = param(url, "max_id");
    std::vector<const Mention*> range;
    for (const Mention& m : mentions) {
      if ((min_id && m.notification_id <= *min_id) ||
          (since_id && m.notification_id <= *since_id) ||
          (max_id && m.notification_id >= *max_id)) {
        continue;
      }
      range.push_back(&m);
    }
    // min_id pages forward from the cursor (the oldest matches); since_id and max_id page from
    // the newest end (docs.joinmastodon.org "Paginating with the API").
    if (range.size() > limit) {
      if (min_id && !since_id) {
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
      json::object status{
          {"id", std::to_string(m->status_id)},
          {"created_at", "2026-01-02T03:04:05.000Z"},
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
                                 {"created_at", "2026-01-02T03:04:05.000Z"},
                                 {"account", account},
                                 {"status", status}});
    }
    auto res = reply(http::status::ok, json::serialize(out));
    if (!range.empty()) {
      std::string base = "http://127.0.0.1:" + std::to_string(acceptor.local_endpoint().port()) +
                         "/api/v1/notifications?types%5B%5D=mention&limit=" + std::to_string(limit);
      res.set(http::field::link,
              "<" + base + "&max_id=" + std::to_string(range.back()->notification_id) +
                  ">; rel=\"next\", <" + base +
                  "&min_id=" + std::to_string(range.front()->notification_id) + ">; rel=\"prev\"");
    }
    return res;
  }

  http::response<http::string_body> post_status(const http::request<http::string_body>& req) {
    post_keys.emplace_back(req["Idempotency-Key"]);
    if (fail_posts > 0) {
      --fail_posts;
      return reply(http::status::service_unavailable, R"({"error":"Service unavailable"})");
    }
    std::string key(req["Idempotency-Key"]);
    auto render = [](const Posted& p) {
      return json::serialize(json::object{{"id", p.id},
                                          {"content", p.status},
                                          {"in_reply_to_id", p.in_reply_to_id},
                                          {"visibility", p.visibility}});
    };
    if (!key.empty()) {
      if (auto it = by_key.find(key); it != by_key.end()) {
        return reply(http::status::ok, render(posts[it->second]));  // the same status again
      }
    }
    boost::system::error_code ec;
    json::value body = json::parse(req.body(), ec);
    if (ec || !body.is_object()) {
      return reply(http::status::unprocessable_entity, R"({"error":"Validation failed"})");
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
    return reply(http::status::ok, render(p));
  }
};

FakeMastodon::FakeMastodon(std::string token, int window_limit, std::chrono::milliseconds window)
    : impl_(std::make_unique<Impl>(std::move(token), window_limit, window)) {}

FakeMastodon::~FakeMastodon() {
  stop();
}

void FakeMastodon::start() {
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  impl_->accept();
  impl_->running = true;
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

void FakeMastodon::stop() {
  if (!impl_->running) {
    return;
  }
  impl_->running = false;
  asio::post(impl_->ioc, [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->ioc.stop();
  });
  impl_->thread.join();
}

std::uint16_t FakeMastodon::port() const {
  return impl_->acceptor.local_endpoint().port();
}

std::string FakeMastodon::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port());
}

std::string FakeMastodon::add_mention(const std::string& acct, const std::string& text,
                                      const std::string& visibility,
                                      const std::string& in_reply_to_id) {
  std::lock_guard lock(impl_->mu);
  Mention m;
  m.notification_id = ++impl_->next_id;
  m.status_id = 100000000 + m.notification_id;
  m.acct = acct;
  m.html =
      "<p><span class=\"h-card\"><a href=\"http://127.0.0.1/@support\" class=\"u-url "
      "mention\">@<span>support</span></a></span> " +
      text + "</p>";
  m.visibility = visibility;
  m.in_reply_to_id = in_reply_to_id;
  impl_->mentions.push_back(m);
  return std::to_string(m.status_id);
}

void FakeMastodon::fail_next_posts(int n) {
  std::lock_guard lock(impl_->mu);
  impl_->fail_posts = n;
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

}  // namespace sb::test
