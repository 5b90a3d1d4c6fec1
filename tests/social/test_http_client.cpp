// core/http_client: keep-alive reuse, servers that close, deadlines, https failures as values.
#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <cstdlib>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include "core/http_client.hpp"
#include "tests/social/fakes/fake_http.hpp"
#include "tests/social/fakes/fake_mastodon.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using namespace sb::test;
namespace asio = boost::asio;

namespace {
// The requests in order on one client; `pause` between two of them (the pool keeps connections).
std::vector<net::HttpResponse> run(std::vector<net::HttpRequest> reqs,
                                   std::chrono::milliseconds pause = {}) {
  asio::io_context io;
  net::HttpClient client(io.get_executor());
  auto fut = asio::co_spawn(
      io,
      [&]() -> asio::awaitable<std::vector<net::HttpResponse>> {
        std::vector<net::HttpResponse> out;
        for (auto& r : reqs) {
          if (!out.empty() && pause.count() > 0) {
            asio::steady_timer t(io, pause);
            co_await t.async_wait(asio::use_awaitable);
          }
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

TEST_CASE(
    "http client: a POST that timed out on a reused connection is not sent again (the provider "
    "may have posted it)") {
  std::atomic<int> posts{0};
  FakeHttpServer server([&](const FakeHttpServer::Request& r, std::chrono::milliseconds waited) {
    if (r.method == "GET") {
      return FakeHttpServer::Response(200, "{}");  // keep-alive: the connection goes to the pool
    }
    if (waited.count() == 0) {
      ++posts;
    }
    return FakeHttpServer::Response::held();  // sendMessage takes effect, the answer never comes
  });
  server.start();
  net::HttpRequest warm;
  warm.url = server.base_url() + "/warm";
  net::HttpRequest post;
  post.method = "POST";
  post.url = server.base_url() + "/bot123/sendMessage";
  post.content_type = "application/json";
  post.body = R"({"chat_id":1,"text":"hello"})";
  post.timeout = std::chrono::milliseconds(200);
  auto out = run({warm, post});
  CHECK(out[0].status == 200);
  CHECK(out[1].status == 0);
  CHECK(out[1].error.find("timed out") != std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(posts.load() == 1);
}

TEST_CASE(
    "http client: a keep-alive connection the server closed while idle is not used: a POST after "
    "it goes over a new connection and gets its answer") {
  // A server that answers keep-alive, then closes the connection 30 ms later without saying so
  // (an idle timeout shorter than the client's pause).
  asio::io_context sio;
  asio::ip::tcp::acceptor acceptor(sio, {asio::ip::make_address("127.0.0.1"), 0});
  auto port = acceptor.local_endpoint().port();
  std::atomic<int> accepted{0}, answered{0};
  std::thread srv([&] {
    for (int i = 0; i < 2; ++i) {
      asio::ip::tcp::socket s(sio);
      boost::system::error_code ec;
      acceptor.accept(s, ec);
      if (ec) {
        return;
      }
      ++accepted;
      std::string in;
      asio::read_until(s, asio::dynamic_buffer(in), "\r\n\r\n", ec);
      if (ec) {
        return;  // the test's wake-up connection: no request on it
      }
      auto cl = in.find("Content-Length: ");
      if (cl != std::string::npos) {
        auto head = in.find("\r\n\r\n") + 4;
        auto want = head + std::stoul(in.substr(cl + 16));
        while (!ec && in.size() < want) {
          char b[256];
          in.append(b, s.read_some(asio::buffer(b), ec));
        }
      }
      asio::write(s, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")),
                  ec);
      ++answered;
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      s.close();
    }
  });
  net::HttpRequest get;
  get.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  net::HttpRequest post;
  post.method = "POST";
  post.url = get.url + "send";
  post.content_type = "application/json";
  post.body = "{}";
  post.timeout = std::chrono::seconds(2);
  auto out = run({get, post}, std::chrono::milliseconds(150));
  if (accepted.load() < 2) {  // the server still waits for a second connection: end its accept
    asio::ip::tcp::socket wake(sio);
    boost::system::error_code ec;
    wake.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
    wake.close();
  }
  srv.join();
  CHECK(out[0].status == 200);
  CHECK(out[1].status == 200);
  CHECK(out[1].body == "ok");
  CHECK(answered.load() == 2);
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

TEST_CASE(
    "http client: a failure says whether the request went out - a timeout or a connection lost "
    "while waiting for the answer yes, a refused connection no") {
  FakeHttpServer server([](const FakeHttpServer::Request& r, std::chrono::milliseconds) {
    if (r.path == "/lost") {
      FakeHttpServer::Response res;
      res.drop = true;  // the server took the request, the answer never comes
      return res;
    }
    return FakeHttpServer::Response::held();
  });
  server.start();
  net::HttpRequest timed;
  timed.method = "POST";
  timed.url = server.base_url() + "/2/tweets";
  timed.content_type = "application/json";
  timed.body = R"({"text":"hello"})";
  timed.timeout = std::chrono::milliseconds(200);
  net::HttpRequest lost = timed;
  lost.url = server.base_url() + "/lost";
  // A port nobody listens on: a listener opened and closed again.
  std::uint16_t closed_port = 0;
  {
    asio::io_context tmp;
    asio::ip::tcp::acceptor a(tmp, {asio::ip::make_address("127.0.0.1"), 0});
    closed_port = a.local_endpoint().port();
  }
  net::HttpRequest refused = timed;
  refused.url = "http://127.0.0.1:" + std::to_string(closed_port) + "/2/tweets";
  auto out = run({timed, lost, refused});
  CHECK(out[0].status == 0);
  CHECK(out[0].error.find("timed out") != std::string::npos);
  CHECK(out[0].sent);
  CHECK(out[1].status == 0);
  CHECK(out[1].sent);
  CHECK(out[2].status == 0);
  CHECK(out[2].error.find("connecting") != std::string::npos);
  CHECK_FALSE(out[2].sent);
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

TEST_CASE("http client: an endless chunk extension in a response is refused, not buffered") {
  // Beast caps a response's header and body, not a chunk-size line or the trailers: without a
  // cap on the read buffer, this line grew the client's memory until the request's deadline.
  asio::io_context sio;
  asio::ip::tcp::acceptor acceptor(sio, {asio::ip::make_address("127.0.0.1"), 0});
  auto port = acceptor.local_endpoint().port();
  std::atomic<std::size_t> sent{0};
  std::thread srv([&] {
    asio::ip::tcp::socket s(sio);
    boost::system::error_code ec;
    acceptor.accept(s, ec);
    std::string in;
    asio::read_until(s, asio::dynamic_buffer(in), "\r\n\r\n", ec);
    asio::write(
        s, asio::buffer(std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;x=")),
        ec);
    std::string block(64 * 1024, 'a');
    while (!ec && sent < 32 * 1024 * 1024) {
      sent += asio::write(s, asio::buffer(block), ec);
    }
  });
  net::HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  req.timeout = std::chrono::seconds(20);
  auto out = run({req});
  srv.join();
  CAPTURE(sent.load());
  CHECK(out[0].status == 0);
  CHECK(out[0].error.find("response framing line too long") != std::string::npos);
  CHECK(sent.load() < 8 * 1024 * 1024);  // the client stopped reading and closed early
}

TEST_CASE("http client: Host carries a port other than the default, and an IPv6 base_url works") {
  // RFC 9112 section 3.2: Host is the authority of the target URI (without userinfo). An IPv6
  // literal was resolved with its brackets, "[::1]", and failed.
  std::string host_seen;
  FakeHttpServer server([&](const FakeHttpServer::Request& r, std::chrono::milliseconds) {
    host_seen = r.header("host");
    return FakeHttpServer::Response(200, "{}");
  });
  server.start();
  net::HttpRequest v4;
  v4.url = "http://user:pw@127.0.0.1:" + std::to_string(server.port()) + "/a";
  auto out = run({v4});
  CHECK(out[0].status == 200);
  CHECK(host_seen == "127.0.0.1:" + std::to_string(server.port()));

  asio::io_context sio;
  asio::ip::tcp::acceptor acceptor(sio, {asio::ip::make_address("::1"), 0});
  auto port = acceptor.local_endpoint().port();
  std::string v6_request;
  std::thread srv([&] {
    asio::ip::tcp::socket s(sio);
    boost::system::error_code ec;
    acceptor.accept(s, ec);
    asio::read_until(s, asio::dynamic_buffer(v6_request), "\r\n\r\n", ec);
    asio::write(s, asio::buffer(std::string("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")), ec);
  });
  net::HttpRequest v6;
  v6.url = "http://[::1]:" + std::to_string(port) + "/b";
  v6.timeout = std::chrono::seconds(5);
  auto got = run({v6});
  if (got[0].status == 0) {  // the server still waits: end its accept
    asio::ip::tcp::socket wake(sio);
    boost::system::error_code ec;
    wake.connect({asio::ip::make_address("::1"), port}, ec);
  }
  srv.join();
  CAPTURE(got[0].error);
  CHECK(got[0].status == 200);
  CHECK(got[0].body == "ok");
  CHECK(v6_request.find("\r\nHost: [::1]:" + std::to_string(port) + "\r\n") != std::string::npos);
}
