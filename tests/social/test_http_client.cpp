// core/http_client: keep-alive reuse, servers that close, deadlines, https failures as values.
#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdlib>

#include "core/http_client.hpp"
#include "tests/social/fakes/fake_http.hpp"
#include "tests/social/fakes/fake_mastodon.hpp"
#include "tests/support/harness.hpp"

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
    FakeHttpServer::Response res{200,
                                 "{\"path\":\"" + r.path + "\",\"q\":\"" + r.query.at("a") + "\"}"};
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
  CHECK(fake.connections() == 2);  // the second request went over a new connection
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

// TLS against `openssl s_server` with a throwaway certificate for "localhost": trusted through
// SSL_CERT_FILE (which set_default_verify_paths reads), the name must match, and an untrusted
// certificate is refused.
TEST_CASE("http client: https verifies the certificate chain and the host name") {
  TempDir dir;
  std::string cert = dir.file("cert.pem"), key = dir.file("key.pem");
  std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost -keyout " +
      key + " -out " + cert + " >/dev/null 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  auto port = std::to_string(free_port());
  Process server(
      {"openssl", "s_server", "-accept", port, "-cert", cert, "-key", key, "-www", "-quiet"},
      dir.file("s_server.log"));
  net::HttpRequest probe;
  probe.url = "http://127.0.0.1:" + port + "/";
  probe.timeout = std::chrono::milliseconds(300);
  REQUIRE(eventually([&] { return !run({probe})[0].error.starts_with("connecting"); }));

  net::HttpRequest good, wrong_name;
  good.url = "https://localhost:" + port + "/";
  wrong_name.url = "https://127.0.0.1:" + port + "/";  // the certificate names localhost only
  ::setenv("SSL_CERT_FILE", cert.c_str(), 1);
  auto trusted = run({good, wrong_name});
  ::unsetenv("SSL_CERT_FILE");
  CAPTURE(trusted[0].error);
  CHECK(trusted[0].status == 200);
  CHECK(trusted[0].body.find("s_server") != std::string::npos);
  CHECK(trusted[1].status == 0);
  CHECK(trusted[1].error.find("TLS handshake") != std::string::npos);

  auto untrusted = run({good});  // the system store does not know this certificate
  CHECK(untrusted[0].status == 0);
  CHECK(untrusted[0].error.find("TLS handshake") != std::string::npos);
}
