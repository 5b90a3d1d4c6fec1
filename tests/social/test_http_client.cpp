// core/http_client: keep-alive reuse, servers that close, deadlines, https failures as values.
#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include "core/http_client.hpp"
#include "tests/social/fakes/fake_http.hpp"
#include "tests/social/fakes/fake_mastodon.hpp"

using namespace sb;
using namespace sb::test;
namespace asio = boost::asio;

namespace {
std::vector<net::HttpResponse> run(std::vector<net::HttpRequest> reqs) {
  asio::io_context io;
  net::HttpClient client(io.get_executor());
  auto fut = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<std::vector<net::HttpResponse>> {
        std::vector<net::HttpResponse> out;
        for (auto& r : reqs) {
          out.push_back(co_await client.request(r));
        }
        co_return out;
      },
      asio::use_future);
  io.run();
  return fut.get();
}
}  // namespace

TEST_CASE("http client: keep-alive connections are reused, headers and bodies come back") {
  FakeHttpServer server([](const FakeHttpServer::Request& r, std::chrono::milliseconds) {
    FakeHttpServer::Response res{200, "{\"path\":\"" + r.path + "\",\"q\":\"" + r.query.at("a") + "\"}"};
    res.headers.emplace_back("X-RateLimit-Remaining", "299");
    return res;
  });
  server.start();
  std::vector<net::HttpRequest> reqs(3);
  for (int i = 0; i < 3; ++i) {
    reqs[i].url = server.base_url() + "/p" + std::to_string(i) + "?a=b%20c";
  }
  auto out = run(reqs);
  REQUIRE(out.size() == 3);
  CHECK(out[2].status == 200);
  CHECK(out[2].body == R"({"path":"/p2","q":"b c"})");
  CHECK(out[2].header("x-ratelimit-remaining").value_or("") == "299");
  CHECK(out[2].header("X-RATELIMIT-REMAINING").value_or("") == "299");
  CHECK(server.connections() == 1);
}

TEST_CASE("http client: a server that closes each connection (Connection: close) is reconnected") {
  FakeMastodon fake;
  fake.start();
  std::vector<net::HttpRequest> reqs(2);
  for (auto& r : reqs) {
    r.url = fake.base_url() + "/api/v1/notifications?min_id=0";
    r.headers = {{"Authorization", "Bearer test-token"}};
  }
  auto out = run(reqs);
  CHECK(out[0].status == 200);
  CHECK(out[1].status == 200);
}

TEST_CASE("http client: deadlines, refused connections and TLS failures are values") {
  FakeHttpServer slow([](const FakeHttpServer::Request&, std::chrono::milliseconds) {
    return FakeHttpServer::Response::held();  // never answers
  });
  slow.start();
  net::HttpRequest timed;
  timed.url = slow.base_url() + "/";
  timed.timeout = std::chrono::milliseconds(200);
  net::HttpRequest tls;  // https to a plain-HTTP port: the handshake fails
  tls.url = "https://127.0.0.1:" + std::to_string(slow.port()) + "/";
  tls.timeout = std::chrono::milliseconds(500);
  net::HttpRequest bad;
  bad.url = "ftp://example.com/";
  auto out = run({timed, tls, bad});
  CHECK(out[0].status == 0);
  CHECK(out[0].error.find("timed out") != std::string::npos);
  CHECK(out[1].status == 0);
  CHECK(!out[1].error.empty());
  CHECK(out[2].status == 0);
  CHECK(out[2].error == "not an http(s) URL");
}
