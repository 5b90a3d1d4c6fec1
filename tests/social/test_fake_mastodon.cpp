// The fake Mastodon server, driven with the parsers of channels/social the way the poller and the
// sender will: backlog paging with min_id, Link headers, rate-limit headers, 429, idempotent POST.
#include <map>
#include <set>
#include <string>

#include <doctest/doctest.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include "channels/social/link_header.hpp"
#include "channels/social/mastodon.hpp"
#include "channels/social/rate_pacing.hpp"
#include "tests/social/fakes/fake_mastodon.hpp"

using namespace sb::social;
namespace http = boost::beast::http;

namespace {

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  std::optional<std::string> header(std::string_view n) const {
    auto it = headers.find(ascii_lower(n));
    return it == headers.end() ? std::nullopt : std::optional(it->second);
  }
};

// A blocking one-shot client with a deadline.
Response send(std::uint16_t port, const HttpRequestSpec& spec) {
  boost::asio::io_context ioc;
  boost::beast::tcp_stream stream(ioc);
  stream.expires_after(std::chrono::seconds(5));
  stream.connect(boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{http::string_to_verb(spec.method), spec.target, 11};
  req.set(http::field::host, "127.0.0.1");
  for (const auto& [k, v] : spec.headers) {
    req.set(k, v);
  }
  if (!spec.content_type.empty()) {
    req.set(http::field::content_type, spec.content_type);
  }
  req.body() = spec.body;
  req.prepare_payload();
  http::write(stream, req);
  boost::beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  Response out;
  out.status = res.result_int();
  for (const auto& f : res) {
    out.headers[ascii_lower(f.name_string())] = std::string(f.value());
  }
  out.body = res.body();
  return out;
}

HttpRequestSpec get(std::string target, const std::string& token) {
  return HttpRequestSpec{"GET", std::move(target), "", "", {{"Authorization", "Bearer " + token}}};
}

}  // namespace

TEST_CASE("Fake Mastodon: a backlog pages forward with min_id, each mention once, oldest first") {
  sb::test::FakeMastodon fake("tok");
  fake.start();
  std::vector<std::string> expected;
  for (int i = 0; i < 95; ++i) {
    expected.push_back(fake.add_mention(i % 2 ? "ann" : "bob@other.example",
                                        "message " + std::to_string(i),
                                        i == 3 ? "direct" : "public"));
  }
  sb::config::Mastodon cfg;
  cfg.name = "social";
  cfg.base_url = fake.base_url();
  cfg.access_token = "tok";

  std::string cursor;
  std::vector<sb::Inbound> got;
  int pages = 0;
  for (;;) {
    auto res = send(fake.port(), get(mastodon_notifications_target(cursor), "tok"));
    REQUIRE(res.status == 200);
    auto rate = parse_rate_limit_iso([&](std::string_view n) { return res.header(n); });
    CHECK(rate.remaining.has_value());
    CHECK(rate.reset.has_value());
    auto page = parse_mastodon_notifications(cfg, res.body);
    REQUIRE(page.ok);
    ++pages;
    if (!page.items.empty()) {
      // The Link header's prev (newer) cursor is the page's newest id.
      auto links = parse_link_header(res.header("Link").value_or(""));
      CHECK(query_param(links["prev"], "min_id") == page.newest_id);
    }
    for (auto& in : page.items) {
      got.push_back(std::move(in));
    }
    if (!page.newest_id.empty()) {
      cursor = page.newest_id;
    }
    if (page.notifications < static_cast<std::size_t>(kMastodonPageLimit)) {
      break;
    }
  }
  CHECK(pages == 3);
  REQUIRE(got.size() == expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].external_id == expected[i]);
  }
  CHECK(got[0].from->value == "bob@other.example");
  CHECK(got[1].from->value == "ann@127.0.0.1");
  CHECK(got[1].text == "@support message 1");
  CHECK(got[3].kind == "direct_message");

  // since_id pages from the newest end instead.
  auto newest = send(fake.port(), get("/api/v1/notifications?limit=5&since_id=1", "tok"));
  auto page = parse_mastodon_notifications(cfg, newest.body);
  REQUIRE(page.items.size() == 5);
  CHECK(page.items.back().external_id == expected.back());

  CHECK(send(fake.port(), get(mastodon_notifications_target(""), "wrong")).status == 401);
  fake.stop();
}

TEST_CASE("Fake Mastodon: 429 once the window's budget is spent, with a reset header") {
  sb::test::FakeMastodon fake("tok", 3, std::chrono::minutes(5));
  fake.start();
  for (int i = 0; i < 3; ++i) {
    CHECK(send(fake.port(), get(mastodon_notifications_target(""), "tok")).status == 200);
  }
  auto res = send(fake.port(), get(mastodon_notifications_target(""), "tok"));
  CHECK(res.status == 429);
  CHECK(res.header("X-RateLimit-Remaining") == "0");
  auto rate = parse_rate_limit_iso([&](std::string_view n) { return res.header(n); });
  REQUIRE(rate.reset);
  auto wait = next_delay(*rate.remaining, *rate.reset, Clock::now());
  CHECK(wait > std::chrono::minutes(4));
  CHECK(fake.stats().rejected_429 == 1);
}

TEST_CASE("Fake Mastodon: a reply retried after a 503 with the same key posts once") {
  sb::test::FakeMastodon fake("tok");
  fake.start();
  std::string parent = fake.add_mention("ann", "help", "unlisted");
  sb::config::Mastodon cfg;
  cfg.name = "social";
  cfg.base_url = fake.base_url();
  cfg.access_token = "tok";
  fake.fail_next_posts(1);
  auto req = mastodon_reply(cfg, {"ann@127.0.0.1", "On it", parent, "unlisted", "01JOUTBOUND"});
  CHECK(send(fake.port(), req).status == 503);
  auto first = send(fake.port(), req);
  auto again = send(fake.port(), req);
  CHECK(first.status == 200);
  CHECK(again.status == 200);
  CHECK(parse_mastodon_status_id(first.body) == parse_mastodon_status_id(again.body));
  auto posts = fake.posted();
  REQUIRE(posts.size() == 1);
  CHECK(posts[0].status == "@ann@127.0.0.1 On it");
  CHECK(posts[0].in_reply_to_id == parent);
  CHECK(posts[0].visibility == "unlisted");
  CHECK(posts[0].idempotency_key == "01JOUTBOUND");
}
