// The HTTP server as a client on a raw socket sees it: framing it must refuse, and the
// answers it owes while doing so. Bytes go out exactly as written here, which the harness's
// Beast client would not send.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>
#include <ctime>
#include <future>
#include <thread>

#include "daemon/app.hpp"
#include "http/metrics.hpp"
#include "storage/sqlite.hpp"
#include "tests/support/harness.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;

namespace {

// A blocking loopback connection; every wait is bounded by `wait`.
class RawConn {
 public:
  explicit RawConn(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~RawConn() { ::close(fd_); }
  int fd() const { return fd_; }
  // False once the peer closed or reset the connection.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  bool readable(std::chrono::milliseconds wait) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(wait.count())) == 1;
  }
  // Everything the server sends until it closes, or until nothing came for `wait`. `closed`:
  // whether it ended with the server's orderly close (FIN), not the wait running out.
  std::string read_all(std::chrono::milliseconds wait, bool* closed = nullptr) {
    std::string out;
    char buf[16 * 1024];
    if (closed) {
      *closed = false;
    }
    while (readable(wait)) {
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        if (closed) {
          *closed = n == 0;
        }
        break;
      }
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  int fd_;
};

struct Daemon {
  TempDir dir;
  RedisServer redis;
  std::unique_ptr<App> app;
  Daemon() {
    app = std::make_unique<App>(test_config(dir, redis.port()));
    app->start();
  }
};

int status_of(const std::string& response) {
  return response.size() > 12 ? std::atoi(response.c_str() + 9) : 0;
}

std::string error_message(const std::string& response) {
  auto at = response.find("\r\n\r\n");
  REQUIRE(at != std::string::npos);
  return std::string(json::parse(response.substr(at + 4)).at("error").at("message").as_string());
}

std::string error_code(const std::string& response) {
  auto at = response.find("\r\n\r\n");
  REQUIRE(at != std::string::npos);
  return std::string(json::parse(response.substr(at + 4)).at("error").at("code").as_string());
}

long long stored_interactions(const TempDir& dir) {
  storage::Db db(dir.file("switchboard.db"), true);
  auto st = db.prepare("SELECT count(*) FROM interactions");
  REQUIRE(st.step());
  return st.int64(0);
}

// A request the server must serve on a fresh connection: it kept serving after a refusal.
int healthz_on_new_connection(std::uint16_t port) {
  RawConn c(port);
  if (!c.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) {
    return 0;
  }
  return status_of(c.read_all(std::chrono::seconds(3)));
}

}  // namespace

TEST_CASE("ingest server: an endless chunk extension is refused, not buffered") {
  // The body cap counts chunk data only; Beast 1.81 puts no limit on a chunk-size line (or on
  // trailers), so the read buffer must. Without one, this line grows the daemon's memory until
  // the client stops or the 60 s idle deadline.
  Daemon d;
  RawConn c(d.app->port());
  REQUIRE(
      c.send("POST /v1/interactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\n"
             "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1;x="));
  std::string block(64 * 1024, 'a');
  std::size_t sent = 0;
  while (sent < 32 * 1024 * 1024 && !c.readable(std::chrono::milliseconds(0))) {
    if (!c.send(block)) {
      break;
    }
    sent += block.size();
  }
  auto res = c.read_all(std::chrono::seconds(3));
  CAPTURE(sent);
  CAPTURE(res.substr(0, 200));
  CHECK(status_of(res) == 400);
  CHECK(error_message(res).find("chunk") != std::string::npos);

  // The cap is on framing, not on bodies: a chunked body near max_body_bytes, in one chunk with
  // a short extension and a trailer, is stored.
  std::string text(900 * 1024, 'b');
  std::string body =
      R"({"source":"web","external_id":"big-1","from":{"email":"a@b.co"},"text":")" + text + "\"}";
  char size[32];
  std::snprintf(size, sizeof size, "%zx", body.size());
  RawConn ok(d.app->port());
  REQUIRE(ok.send(
      "POST /v1/interactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\n"
      "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
      std::string(size) + ";note=1\r\n" + body + "\r\n0\r\nX-Trailer: 1\r\n\r\n"));
  CHECK(status_of(ok.read_all(std::chrono::seconds(5))) == 202);
}

TEST_CASE("ingest: occurred_at with signed or impossible fields is refused, naming the field") {
  // std::from_chars takes a leading '-': "T-1:-1:-1Z" parsed as a time before midnight.
  Daemon d;
  HttpClient http(d.app->port());
  auto post = [&](const std::string& t) {
    return http.post_json("/v1/interactions",
                          R"({"source":"web","external_id":"t-)" + t +
                              R"(","from":{"email":"a@b.co"},"occurred_at":")" + t + "\"}",
                          "test-token");
  };
  for (std::string t : {"2026-01-02T-1:00:00Z", "2026-01-02T03:-4:05Z", "2026-01-02T03:04:-5Z",
                        "2026-01-02T03:04:05+-1:00", "-026-01-02T03:04:05Z", "2026-02-30T03:04:05Z",
                        "2026-04-31T03:04:05Z"}) {
    CAPTURE(t);
    auto r = post(t);
    CHECK(r.status == 400);
    CHECK(r.body.find("occurred_at") != std::string::npos);
  }
  // The edges that are real stay accepted.
  for (std::string t : {"2028-02-29T23:59:59Z", "2026-12-31T00:00:00.5+14:00"}) {
    CAPTURE(t);
    CHECK(post(t).status == 202);
  }
}

TEST_CASE("ingest server: a 405 lists the methods the route allows") {
  // RFC 9110 section 15.5.6: a 405 MUST carry Allow with the resource's methods.
  Daemon d;
  HttpClient http(d.app->port());
  auto r = http.request("GET", "/v1/interactions");
  CHECK(r.status == 405);
  CHECK(r.headers["allow"] == "POST");
  auto p = http.request("DELETE", "/metrics");
  CHECK(p.status == 405);
  CHECK(p.headers["allow"] == "GET");
}

TEST_CASE("ingest: a body that is not JSON is refused with what is wrong and where") {
  // Boost.JSON's own words for invalid UTF-8 are "syntax error", as for a missing value.
  Daemon d;
  HttpClient http(d.app->port());
  auto bad_utf8 = http.post_json("/v1/interactions",
                                 "{\"source\":\"web\",\"external_id\":\"u1\",\"from\":{\"email\":"
                                 "\"a@b.co\"},\"text\":\"ok \xff\"}",
                                 "test-token");
  CHECK(bad_utf8.status == 400);
  CHECK(bad_utf8.body.find("not valid JSON: invalid UTF-8 at byte offset 72") != std::string::npos);
  auto syntax =
      http.post_json("/v1/interactions", R"({"source":"web","external_id":})", "test-token");
  CHECK(syntax.status == 400);
  CHECK(syntax.body.find("not valid JSON: syntax error at byte offset 30") != std::string::npos);
}

TEST_CASE("ingest server: a request framed by a Transfer-Encoding other than chunked is refused") {
  // RFC 9112 section 6.3: when chunked is not the final coding the body length is unknown; the
  // server MUST answer 400 and close. Beast reads such a request as bodiless, so whatever the
  // client meant as its body was parsed as the next request (here: a smuggled GET).
  Daemon d;
  RawConn c(d.app->port());
  REQUIRE(
      c.send("POST /v1/interactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\n"
             "Transfer-Encoding: gzip\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto res = c.read_all(std::chrono::seconds(3));
  CAPTURE(res);
  CHECK(status_of(res) == 400);
  CHECK(error_message(res).find("Transfer-Encoding") != std::string::npos);
  CHECK(res.find("Connection: close") != std::string::npos);
  CHECK(res.find("\"ok\"") == std::string::npos);  // the GET in the body was not served
}

TEST_CASE("ingest server: an HTTP/1.0 request with Transfer-Encoding is answered, then closed") {
  // RFC 9112 section 6.1: HTTP/1.0 has no chunked coding, so a 1.0 message with Transfer-Encoding
  // has faulty framing and the server MUST close the connection after answering it, even when
  // it asks for keep-alive: a 1.0 intermediary may have framed that body differently.
  Daemon d;
  const std::string body = R"({"source":"web","external_id":"te10","from":{"email":"a@b.co"}})";
  char size[32];
  std::snprintf(size, sizeof size, "%zx", body.size());
  RawConn c(d.app->port());
  REQUIRE(
      c.send("POST /v1/interactions HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer test-token\r\n"
             "Content-Type: application/json\r\nConnection: keep-alive\r\n"
             "Transfer-Encoding: chunked\r\n\r\n" +
             std::string(size) + "\r\n" + body +
             "\r\n0\r\n\r\nGET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  auto res = c.read_all(std::chrono::seconds(3));
  CAPTURE(res);
  CHECK(status_of(res) == 202);
  CHECK(res.find("Connection: close") != std::string::npos);
  CHECK(res.find("\"ok\"") == std::string::npos);  // the pipelined GET was not served
}

TEST_CASE(
    "ingest server: HEAD is answered like GET, without a body, and the connection stays usable") {
  // RFC 9110 section 9.3.2: HEAD is GET without content (uptime monitors probe /healthz so). A
  // body after a HEAD response is read by the client as the start of the next response.
  Daemon d;
  RawConn c(d.app->port());
  REQUIRE(
      c.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
             "HEAD /v1/interactions HTTP/1.1\r\nHost: x\r\n\r\n"
             "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto res = c.read_all(std::chrono::seconds(3));
  CAPTURE(res);
  CHECK(status_of(res) == 200);
  auto second = res.find("\r\n\r\n") + 4;
  REQUIRE(second < res.size());
  CHECK(res.compare(second, 9, "HTTP/1.1 ") == 0);
  CHECK(status_of(res.substr(second)) == 405);  // POST only: still no body
  auto third = res.find("\r\n\r\n", second) + 4;
  REQUIRE(third < res.size());
  CHECK(res.compare(third, 15, "HTTP/1.1 200 OK") == 0);
  CHECK(res.substr(res.find("\r\n\r\n", third) + 4) == R"({"status":"ok"})");
}

TEST_CASE("ingest server: a 401 names the scheme to authenticate with") {
  // RFC 9110 section 11.6.1: a 401 MUST carry WWW-Authenticate with a challenge.
  Daemon d;
  HttpClient http(d.app->port());
  auto none = http.post_json("/v1/interactions", "{}", "");
  CHECK(none.status == 401);
  CHECK(none.headers["www-authenticate"] == "Bearer");
  auto wrong = http.post_json("/v1/interactions", "{}", "nope");
  CHECK(wrong.status == 401);
  CHECK(wrong.headers["www-authenticate"] == "Bearer");
}

TEST_CASE("ingest server: an error echoing bytes that are not UTF-8 is still UTF-8 JSON") {
  // SPEC section 3: JSON bodies are UTF-8. A 404 names the path and a 415 the Content-Type, as
  // sent; Beast lets bytes 0x80-0xFF through in both.
  Daemon d;
  RawConn c(d.app->port());
  REQUIRE(
      c.send("GET /caf\xc3\xa9/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"
             "POST /v1/interactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\n"
             "Content-Type: text/\xe9t\xe9\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"));
  auto res = c.read_all(std::chrono::seconds(3));
  auto first_end = res.find("HTTP/1.1 415");
  REQUIRE(first_end != std::string::npos);
  auto not_found = res.substr(0, first_end);
  auto unsupported = res.substr(first_end);
  CHECK(status_of(not_found) == 404);
  CHECK(error_message(not_found) == "no route for /caf\xc3\xa9/\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(error_message(unsupported).find("text/\xef\xbf\xbdt\xef\xbf\xbd") != std::string::npos);
}

TEST_CASE("ingest server: a listen address in use is one clear line naming it") {
  Daemon d;
  TempDir other;
  auto cfg = test_config(other, d.redis.port());
  cfg.server.port = d.app->port();
  cfg.server.listen = "127.0.0.1:" + std::to_string(d.app->port());
  App second(cfg);
  std::string what;
  try {
    second.start();
  } catch (const std::exception& e) {
    what = e.what();
  }
  CHECK(what ==
        "cannot listen on 127.0.0.1:" + std::to_string(d.app->port()) + ": Address already in use");
}

TEST_CASE("metrics: a gauge's value is written as the shortest text that reads back the same") {
  Metrics m;
  m.gauge("sb_test_age_seconds", "An age.", [] {
    return std::vector<std::pair<Labels, double>>{{{{"queue", "general"}}, 18.858},
                                                  {{{"queue", "vip"}}, 3.0}};
  });
  auto text = m.render();
  CHECK(text.find("sb_test_age_seconds{queue=\"general\"} 18.858\n") != std::string::npos);
  CHECK(text.find("sb_test_age_seconds{queue=\"vip\"} 3\n") != std::string::npos);
}

TEST_CASE("metrics: ingest sources beyond the first 100 are counted under account _other") {
  // `source` is the client's to choose; each value used to add a series for good.
  Daemon d;
  HttpClient http(d.app->port());
  for (int i = 0; i < 1000; ++i) {
    auto r = http.post_json("/v1/interactions",
                            R"({"source":"src-)" + std::to_string(i) + R"(","external_id":"m-)" +
                                std::to_string(i) + R"(","from":{"email":"a@b.co"}})",
                            "test-token");
    REQUIRE(r.status == 202);
  }
  auto text = http.request("GET", "/metrics").body;
  std::size_t series = 0;
  long long total = 0;
  std::string other;
  for (std::size_t at = 0;
       (at = text.find("switchboard_interactions_total{", at)) != std::string::npos; ++at) {
    auto line = text.substr(at, text.find('\n', at) - at);
    ++series;
    total += std::atoll(line.c_str() + line.rfind(' ') + 1);
    if (line.find("account=\"_other\"") != std::string::npos) {
      other = line;
    }
  }
  CHECK(series <= 101);
  CHECK(total == 1000);
  CHECK(other == R"(switchboard_interactions_total{channel="api",account="_other"} 900)");
  CHECK(text.find("account=\"src-99\"") != std::string::npos);
  CHECK(text.find("account=\"src-100\"") == std::string::npos);
}

TEST_CASE("ingest server: every response carries Date, an IMF-fixdate of now") {
  // RFC 9110 section 6.6.1: an origin server with a clock MUST send Date in 2xx, 3xx and 4xx.
  Daemon d;
  HttpClient http(d.app->port());
  for (const char* path : {"/healthz", "/no-such-route"}) {
    CAPTURE(path);
    auto before = std::time(nullptr);
    auto r = http.request("GET", path);
    auto after = std::time(nullptr);
    auto date = r.headers["date"];
    CAPTURE(date);
    REQUIRE(date.size() == 29);
    CHECK(date.substr(25) == " GMT");
    std::tm tm{};
    REQUIRE(strptime(date.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) != nullptr);
    auto t = timegm(&tm);
    CHECK(t >= before);
    CHECK(t <= after);
  }
}

TEST_CASE("ingest server: Expect: 100-continue is answered before the body is sent") {
  // RFC 9110 section 10.1.1: curl, for one, sends Expect: 100-continue with a large body and
  // waits (1 s) for 100 (Continue) or a final status before sending it.
  Daemon d;
  const std::string body = R"({"source":"web","external_id":"e-1","from":{"email":"a@b.co"}})";
  const std::string head =
      "POST /v1/interactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\n"
      "Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: ";
  RawConn c(d.app->port());
  REQUIRE(c.send(head + std::to_string(body.size()) + "\r\n\r\n"));
  REQUIRE(c.readable(std::chrono::milliseconds(300)));
  char buf[64] = {};
  auto n = ::recv(c.fd(), buf, sizeof buf - 1, 0);
  CHECK(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0) ==
        "HTTP/1.1 100 Continue\r\n\r\n");
  REQUIRE(c.send(body));
  REQUIRE(c.readable(std::chrono::seconds(3)));
  n = ::recv(c.fd(), buf, sizeof buf - 1, 0);
  CHECK(status_of(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0)) == 202);

  // A body larger than max_body_bytes by its Content-Length: the final 413 at once.
  RawConn big(d.app->port());
  REQUIRE(big.send(head + "2000000\r\n\r\n"));
  auto refused = big.read_all(std::chrono::milliseconds(300));
  CHECK(status_of(refused) == 413);
  // The body sent with the header: no 100, the answer.
  RawConn eager(d.app->port());
  REQUIRE(eager.send(head + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body));
  auto answered = eager.read_all(std::chrono::seconds(3));
  CHECK(answered.starts_with("HTTP/1.1 200 "));  // e-1 again: a duplicate
}

TEST_CASE("/readyz is 503 while the writer is stuck in a transaction, and 200 once it ends") {
  // A wedged writer fails nothing, so "the last commit failed" never turned /readyz to 503,
  // while every ingest and webhook request waited for its commit.
  Daemon d;
  HttpClient http(d.app->port());
  REQUIRE(eventually([&] { return http.request("GET", "/readyz").status == 200; }));
  auto begun = std::chrono::steady_clock::now();
  d.app->writer().submit(
      {[](storage::Db&) { std::this_thread::sleep_for(std::chrono::seconds(8)); }, {}});
  std::this_thread::sleep_for(std::chrono::seconds(1));
  CHECK(http.request("GET", "/readyz").status == 200);  // a slow commit is no stall yet
  HttpResponse stuck;
  REQUIRE(eventually(
      [&] {
        stuck = http.request("GET", "/readyz");
        return stuck.status == 503;
      },
      std::chrono::seconds(7)));
  auto after = std::chrono::steady_clock::now() - begun;
  CHECK(after < std::chrono::seconds(7));
  CHECK(stuck.body.find("database_unavailable") != std::string::npos);
  CHECK(stuck.body.find("the writer has not finished a transaction for ") != std::string::npos);
  CHECK(eventually([&] { return http.request("GET", "/readyz").status == 200; },
                   std::chrono::seconds(5)));
}

// A keep-alive connection holds a descriptor: one idle past idle_timeout is closed (the deadline
// of the read that waits for its next request), one that keeps sending requests is not.
TEST_CASE("http server: a keep-alive connection idle past idle_timeout is closed, a busy one not") {
  boost::asio::io_context io;
  http::Router router;
  router.add("GET", "/ping", [](http::Request&) -> boost::asio::awaitable<http::Response> {
    co_return http::json(200, R"({"pong":true})");
  });
  Metrics metrics;
  http::ServerOptions opts;
  opts.port = 0;
  opts.idle_timeout = std::chrono::seconds(2);
  http::Server server(io, opts, router, metrics);
  server.start();
  std::thread runner([&] { io.run(); });
  const std::string ping = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n";
  RawConn idle(server.port());
  RawConn busy(server.port());
  REQUIRE(idle.send(ping));
  CHECK(status_of(idle.read_all(std::chrono::milliseconds(300))) == 200);
  // `busy` sends a request every 500 ms: never idle for 2 s, so never closed.
  auto start = std::chrono::steady_clock::now();
  bool idle_closed = false;
  double closed_after_s = 0;
  while (std::chrono::steady_clock::now() - start < std::chrono::milliseconds(4500)) {
    REQUIRE(busy.send(ping));
    CHECK(status_of(busy.read_all(std::chrono::milliseconds(100))) == 200);
    if (!idle_closed && idle.readable(std::chrono::milliseconds(400))) {
      char c;
      idle_closed = ::recv(idle.fd(), &c, 1, 0) == 0;  // orderly close, nothing more sent
      closed_after_s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
  }
  CHECK(idle_closed);
  CHECK(closed_after_s >= 1.5);  // not before its 2 s (the sweep runs every second)
  CHECK(closed_after_s <= 3.6);
  server.stop();
  CHECK(eventually([&] { return server.active() == 0; }, std::chrono::seconds(5)));
  io.stop();
  runner.join();
}

TEST_CASE("ingest server: a chunked body over max_body_bytes is 413, stores nothing, and closes") {
  // A Content-Length over the cap is refused from the header alone; a chunked body's size is
  // known only as its chunks arrive, and Beast counts them against the same limit.
  Daemon d;
  std::string text(1200 * 1024, 'c');
  std::string body = R"({"source":"web","external_id":"chunked-big","from":{"email":"a@b.co"},)"
                     R"("text":")" +
                     text + "\"}";
  RawConn c(d.app->port());
  REQUIRE(
      c.send("POST /v1/interactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\n"
             "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"));
  // 256 KiB chunks: the fifth crosses the 1 MiB cap. The server answers at once and reads on
  // for a while (lingering close), so these sends all go through.
  constexpr std::size_t kChunk = 256 * 1024;
  for (std::size_t at = 0; at < body.size(); at += kChunk) {
    auto part = body.substr(at, kChunk);
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", part.size());
    if (!c.send(size + part + "\r\n")) {
      break;
    }
  }
  c.send("0\r\n\r\n");
  bool closed = false;
  auto res = c.read_all(std::chrono::seconds(5), &closed);
  CAPTURE(res.substr(0, 300));
  CHECK(status_of(res) == 413);
  CHECK(error_code(res) == "body_too_large");
  CHECK(error_message(res) ==
        "the request body is larger than server.max_body_bytes (1048576 bytes)");
  CHECK(res.find("Connection: close") != std::string::npos);
  CHECK(closed);
  CHECK(stored_interactions(d.dir) == 0);

  CHECK(healthz_on_new_connection(d.app->port()) == 200);
  HttpClient http(d.app->port());
  CHECK(http.post_json("/v1/interactions",
                       R"({"source":"web","external_id":"small","from":{"email":"a@b.co"}})",
                       "test-token")
            .status == 202);
  CHECK(stored_interactions(d.dir) == 1);
}

TEST_CASE("metrics: a 413 counts under the route it was sent to, not under unmatched") {
  // The head of a request over max_body_bytes was read whole: an operator graphing
  // switchboard_http_requests_total{route="/v1/interactions"} must see the refused bodies.
  Daemon d;
  {
    // Over the cap by Content-Length: refused from the head alone.
    RawConn c(d.app->port());
    REQUIRE(
        c.send("POST /v1/interactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
               "test-token\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n"));
    CHECK(status_of(c.read_all(std::chrono::seconds(3))) == 413);
  }
  {
    // Over the cap as chunks arrive, on a path with a parameter and a query.
    RawConn c(d.app->port());
    REQUIRE(
        c.send("POST /webhooks/calls/pbx?x=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
               "chunked\r\n\r\n"));
    const std::string chunk(512 * 1024, 'c');
    for (int i = 0; i < 3 && c.send("80000\r\n" + chunk + "\r\n"); ++i) {
    }
    CHECK(status_of(c.read_all(std::chrono::seconds(3))) == 413);
  }
  auto metrics = HttpClient(d.app->port()).request("GET", "/metrics").body;
  CAPTURE(metrics);
  CHECK(metrics.find("switchboard_http_requests_total{route=\"/v1/interactions\",code=\"413\"} "
                     "1\n") != std::string::npos);
  CHECK(metrics.find("switchboard_http_requests_total{route=\"/webhooks/calls/{name}\","
                     "code=\"413\"} 1\n") != std::string::npos);
  CHECK(metrics.find("route=\"unmatched\",code=\"413\"") == std::string::npos);
}

TEST_CASE(
    "ingest server: a header block over the limit is 431 naming it, and the connection "
    "closes") {
  // RFC 6585 section 5: 431 Request Header Fields Too Large tells the client to send fewer or
  // shorter fields; a 400 "header limit exceeded" read as broken syntax.
  Daemon d;
  {
    // Under the limit (32 KiB, the request line included) is served.
    RawConn c(d.app->port());
    REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(30 * 1024, 'a') +
                   "\r\nConnection: close\r\n\r\n"));
    CHECK(status_of(c.read_all(std::chrono::seconds(3))) == 200);
  }
  RawConn c(d.app->port());
  // Many fields or one long one: the limit is on the whole block.
  std::string fields;
  for (int i = 0; i < 400; ++i) {
    fields += "X-Field-" + std::to_string(i) + ": " + std::string(100, 'b') + "\r\n";
  }
  REQUIRE(c.send("POST /v1/interactions HTTP/1.1\r\nHost: x\r\n" + fields +
                 "Content-Length: 2\r\n\r\n{}"));
  bool closed = false;
  auto res = c.read_all(std::chrono::seconds(3), &closed);
  CAPTURE(res);
  CHECK(res.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
  CHECK(error_code(res) == "header_too_large");
  CHECK(error_message(res) ==
        "the request line and header fields are larger than 32768 bytes, the server's limit");
  CHECK(res.find("Connection: close") != std::string::npos);
  CHECK(closed);
  CHECK(healthz_on_new_connection(d.app->port()) == 200);
  auto metrics = HttpClient(d.app->port()).request("GET", "/metrics").body;
  CHECK(metrics.find("switchboard_http_requests_total{route=\"unmatched\",code=\"431\"} 1\n") !=
        std::string::npos);
}

TEST_CASE(
    "ingest server: a garbage request line is 400, the connection closes, and the daemon "
    "serves on") {
  Daemon d;
  // A word that is no request line, a request line with a fourth part, a method of control
  // bytes, and HTTP/0.9's two-part line (which HTTP/1.1 servers refuse).
  for (std::string garbage :
       {std::string("HELLO\r\n\r\n"), std::string("GET /healthz HTTP/1.1 extra\r\n\r\n"),
        std::string("\x01\x02\x03 /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        std::string("GET /healthz\r\n\r\n")}) {
    CAPTURE(garbage);
    RawConn c(d.app->port());
    REQUIRE(c.send(garbage));
    bool closed = false;
    auto res = c.read_all(std::chrono::seconds(3), &closed);
    CAPTURE(res);
    CHECK(status_of(res) == 400);
    CHECK(error_code(res) == "bad_request");
    CHECK(error_message(res).starts_with("malformed HTTP request: "));
    CHECK(res.find("Connection: close") != std::string::npos);
    CHECK(closed);
    CHECK(healthz_on_new_connection(d.app->port()) == 200);
  }
  // After a good request on a keep-alive connection: the first is answered, then the 400.
  RawConn c(d.app->port());
  REQUIRE(c.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHELLO\r\n\r\n"));
  bool closed = false;
  auto res = c.read_all(std::chrono::seconds(3), &closed);
  CAPTURE(res);
  CHECK(res.starts_with("HTTP/1.1 200 OK\r\n"));
  auto second = res.find("HTTP/1.1 400 Bad Request\r\n");
  CHECK(second != std::string::npos);
  CHECK(closed);
  CHECK(healthz_on_new_connection(d.app->port()) == 200);
}

TEST_CASE(
    "ingest server: an unknown or missing token is 401 from the header alone, with no 100 "
    "Continue and no body read") {
  // The body was read (after a 100 Continue inviting it) before the handler looked at the token:
  // anyone who could connect made the daemon take and hold max_body_bytes per connection.
  Daemon d;
  for (std::string auth : {std::string(), std::string("Authorization: Bearer nope\r\n")}) {
    for (std::string target : {"/v1/interactions", "/v1/agent/claim"}) {
      CAPTURE(auth);
      CAPTURE(target);
      RawConn c(d.app->port());
      REQUIRE(c.send("POST " + target + " HTTP/1.1\r\nHost: x\r\n" + auth +
                     "Content-Type: application/json\r\nExpect: 100-continue\r\n"
                     "Content-Length: 900000\r\n\r\n"));
      bool closed = false;
      auto res = c.read_all(std::chrono::seconds(2), &closed);
      CAPTURE(res.substr(0, 300));
      CHECK(res.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
      CHECK(res.find("100 Continue") == std::string::npos);
      CHECK(res.find("WWW-Authenticate: Bearer\r\n") != std::string::npos);
      CHECK(res.find("Connection: close\r\n") != std::string::npos);
      CHECK(closed);
    }
  }
  // Without Expect: the 401 comes while the body is still on its way.
  RawConn c(d.app->port());
  REQUIRE(
      c.send("POST /v1/interactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
             "Content-Type: application/json\r\nContent-Length: 900000\r\n\r\n" +
             std::string(100 * 1024, ' ')));
  auto res = c.read_all(std::chrono::seconds(2));
  CHECK(status_of(res) == 401);
  CHECK(error_message(res) == "unknown api token");
  // A known token is still invited to send its body.
  RawConn ok(d.app->port());
  REQUIRE(
      ok.send("POST /v1/interactions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-token\r\n"
              "Content-Type: application/json\r\nExpect: 100-continue\r\n"
              "Content-Length: 900000\r\n\r\n"));
  REQUIRE(ok.readable(std::chrono::seconds(2)));
  char buf[64] = {};
  auto n = ::recv(ok.fd(), buf, sizeof buf - 1, 0);
  CHECK(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0) ==
        "HTTP/1.1 100 Continue\r\n\r\n");
  CHECK(stored_interactions(d.dir) == 0);
}

TEST_CASE(
    "ingest server: a body sent to an unknown route is not read: 404 or 405 at once, then the "
    "connection closes") {
  // The route was looked up only once the whole body was in memory.
  Daemon d;
  for (auto [line, status] : {std::pair<std::string, int>{"POST /v1/nowhere", 404},
                              std::pair<std::string, int>{"POST /healthz", 405}}) {
    CAPTURE(line);
    RawConn c(d.app->port());
    REQUIRE(c.send(line + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" +
                   std::string(1000, 'x')));
    bool closed = false;
    auto res = c.read_all(std::chrono::seconds(2), &closed);
    CAPTURE(res.substr(0, 300));
    CHECK(status_of(res) == status);
    CHECK(res.find("Connection: close\r\n") != std::string::npos);
    CHECK(closed);
  }
  // A body that came whole with its header is skipped, and the connection goes on.
  RawConn c(d.app->port());
  REQUIRE(
      c.send("POST /v1/nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
             "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto res = c.read_all(std::chrono::seconds(3));
  CAPTURE(res);
  CHECK(status_of(res) == 404);
  CHECK(error_message(res.substr(0, res.find("HTTP/1.1 200 OK"))) == "no route for /v1/nowhere");
  CHECK(res.find("HTTP/1.1 200 OK\r\n") != std::string::npos);
}

// A server of its own, with small caps: two bodies of 100 KiB fill the budget. The route has a
// Gate (as the token routes do), so its bodies may take the whole budget.
TEST_CASE(
    "http server: a body past max_body_bytes_in_flight is refused with 503 before it is read") {
  boost::asio::io_context io;
  http::Router router;
  router.add(
      "POST", "/size",
      [](http::Request& r) -> boost::asio::awaitable<http::Response> {
        co_return http::json(200, "{\"size\":" + std::to_string(r.body.size()) + "}");
      },
      [](const http::Request&) -> std::optional<http::Response> { return std::nullopt; });
  Metrics metrics;
  http::ServerOptions opts;
  opts.port = 0;
  opts.max_body_bytes = 128 * 1024;
  opts.max_body_bytes_in_flight = 200 * 1024;
  http::Server server(io, opts, router, metrics);
  server.start();
  CHECK(server.max_body_bytes_in_flight() == 200 * 1024);
  std::thread runner([&] { io.run(); });
  constexpr std::size_t kBody = 100 * 1024;
  const std::string head = "POST /size HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n";
  auto sized = [&](std::size_t n) {
    return head + "Content-Length: " + std::to_string(n) + "\r\n\r\n";
  };
  auto invited = [](RawConn& c) {
    if (!c.readable(std::chrono::seconds(2))) {
      return std::string();
    }
    char buf[64] = {};
    auto n = ::recv(c.fd(), buf, sizeof buf - 1, 0);
    return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  };
  // Two bodies on their way hold the whole budget (each is counted once invited).
  RawConn a(server.port());
  RawConn b(server.port());
  REQUIRE(a.send(sized(kBody)));
  REQUIRE(invited(a) == "HTTP/1.1 100 Continue\r\n\r\n");
  REQUIRE(b.send(sized(kBody)));
  REQUIRE(invited(b) == "HTTP/1.1 100 Continue\r\n\r\n");
  REQUIRE(a.send(std::string(1000, 'a')));
  // A third is refused at once, by Content-Length or by its first chunk line.
  for (std::string third : {sized(kBody), head + "Transfer-Encoding: chunked\r\n\r\n" +
                                              "19000\r\n" + std::string(1000, 'c')}) {
    RawConn c(server.port());
    REQUIRE(c.send(third));
    bool closed = false;
    auto res = c.read_all(std::chrono::seconds(2), &closed);
    CAPTURE(res.substr(0, 300));
    CHECK(res.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    CHECK(res.find("100 Continue") == std::string::npos);
    CHECK(res.find("Retry-After: 1\r\n") != std::string::npos);
    CHECK(error_code(res) == "server_busy");
    CHECK(error_message(res) ==
          "the server holds as many request bodies as it may at once "
          "(server.max_body_bytes_in_flight, 204800 bytes); retry shortly");
    CHECK(closed);
  }
  {
    // A small body that came with its header is in memory already: it is served.
    RawConn c(server.port());
    REQUIRE(c.send(
        "POST /size HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"));
    auto res = c.read_all(std::chrono::seconds(2));
    CHECK(status_of(res) == 200);
    CHECK(res.ends_with("{\"size\":5}"));
  }
  // Once a body is answered its share is free again.
  REQUIRE(a.send(std::string(kBody - 1000, 'a')));
  auto answered = a.read_all(std::chrono::milliseconds(500));
  CHECK(status_of(answered) == 200);
  CHECK(answered.ends_with("{\"size\":102400}"));
  RawConn e(server.port());
  REQUIRE(e.send(sized(kBody)));
  CHECK(invited(e) == "HTTP/1.1 100 Continue\r\n\r\n");
  server.stop();
  io.stop();
  runner.join();
}

// Every way a body can end badly gives its share of the budget back: a leak of a few bytes per
// failure would, over weeks, leave a daemon that answers every body 503.
TEST_CASE("http server: the body budget is whole again after bodies that end badly") {
  boost::asio::io_context io;
  http::Router router;
  auto pass = [](const http::Request&) -> std::optional<http::Response> { return std::nullopt; };
  router.add(
      "POST", "/size",
      [](http::Request& r) -> boost::asio::awaitable<http::Response> {
        co_return http::json(200, "{\"size\":" + std::to_string(r.body.size()) + "}");
      },
      pass);
  router.add(
      "POST", "/throw",
      [](http::Request&) -> boost::asio::awaitable<http::Response> {
        throw std::runtime_error("handler failed");
        co_return http::json(200, "{}");
      },
      pass);
  Metrics metrics;
  http::ServerOptions opts;
  opts.port = 0;
  opts.max_body_bytes = 128 * 1024;
  opts.max_body_bytes_in_flight = 200 * 1024;
  opts.request_timeout = std::chrono::seconds(1);
  http::Server server(io, opts, router, metrics);
  server.start();
  std::thread runner([&] { io.run(); });
  constexpr std::size_t kBody = 100 * 1024;
  auto sized = [](const std::string& path, std::size_t n) {
    return "POST " + path +
           " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " + std::to_string(n) +
           "\r\n\r\n";
  };
  auto invited = [](RawConn& c) {
    if (!c.readable(std::chrono::seconds(2))) {
      return false;
    }
    char buf[64] = {};
    auto n = ::recv(c.fd(), buf, sizeof buf - 1, 0);
    return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0) ==
           "HTTP/1.1 100 Continue\r\n\r\n";
  };
  // The whole budget is free when two bodies of half of it are both invited. The server gives a
  // share back once it sees the connection end, a moment after the client's close: retried for
  // up to 3 s.
  auto whole = [&] {
    return eventually(
        [&] {
          RawConn a(server.port());
          RawConn b(server.port());
          return a.send(sized("/size", kBody)) && invited(a) && b.send(sized("/size", kBody)) &&
                 invited(b);
        },
        std::chrono::seconds(3));
  };
  REQUIRE(whole());
  struct Case {
    std::string what;
    std::string request;
    int status;  // 0: no answer expected (the client hangs up, or the server times it out)
  };
  const std::vector<Case> cases = {
      {"hung up mid-body", sized("/size", kBody) + std::string(1000, 'x'), 0},
      {"stalled mid-body past request_timeout", sized("/size", kBody) + std::string(1000, 'x'), 0},
      {"a chunked body past max_body_bytes",
       "POST /size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" +
           std::string(0x10000, 'c') + "\r\n11000\r\n" + std::string(0x11000, 'c'),
       413},
      {"a malformed chunk after a good one",
       "POST /size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n" +
           std::string(0x1000, 'c') + "\r\nzz\r\n",
       400},
      {"a handler that throws", sized("/throw", 5000) + std::string(5000, 't'), 500},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    {
      RawConn conn(server.port());
      REQUIRE(conn.send(c.request));
      if (c.what.starts_with("stalled")) {
        auto res = conn.read_all(std::chrono::seconds(3));  // 100 Continue, then the close
        CHECK(res.find("HTTP/1.1 100 Continue") == 0);
      } else if (c.status != 0) {
        auto res = conn.read_all(std::chrono::seconds(2));
        res.erase(0, res.starts_with("HTTP/1.1 100 Continue\r\n\r\n") ? 25 : 0);
        CHECK(status_of(res) == c.status);
      }
    }
    CHECK(whole());
  }
  server.stop();
  io.stop();
  runner.join();
}

// Webhook routes have no Gate: anyone may send them a body, refused only once it is read.
TEST_CASE(
    "http server: bodies of routes without a Gate hold half the budget at most, the rest stays "
    "for the routes whose token was checked") {
  boost::asio::io_context io;
  http::Router router;
  auto size = [](http::Request& r) -> boost::asio::awaitable<http::Response> {
    co_return http::json(200, "{\"size\":" + std::to_string(r.body.size()) + "}");
  };
  router.add("POST", "/hook", size);
  router.add("POST", "/size", size,
             [](const http::Request&) -> std::optional<http::Response> { return std::nullopt; });
  Metrics metrics;
  http::ServerOptions opts;
  opts.port = 0;
  opts.max_body_bytes = 64 * 1024;
  opts.max_body_bytes_in_flight = 200 * 1024;  // 100 KiB for /hook's bodies
  http::Server server(io, opts, router, metrics);
  server.start();
  std::thread runner([&] { io.run(); });
  auto sized = [](const std::string& path, std::size_t n) {
    return "POST " + path +
           " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: " + std::to_string(n) +
           "\r\n\r\n";
  };
  auto answer = [](RawConn& c) {
    if (!c.readable(std::chrono::seconds(2))) {
      return std::string();
    }
    char buf[512] = {};
    auto n = ::recv(c.fd(), buf, sizeof buf - 1, 0);
    return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  };
  constexpr std::size_t kBody = 60 * 1024;
  RawConn a(server.port());
  REQUIRE(a.send(sized("/hook", kBody)));
  REQUIRE(answer(a) == "HTTP/1.1 100 Continue\r\n\r\n");
  // A second trickling webhook body would pass half the budget: refused.
  RawConn b(server.port());
  REQUIRE(b.send(sized("/hook", kBody)));
  auto refused = answer(b);
  CAPTURE(refused);
  CHECK(refused.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
  // The token routes still have their share.
  RawConn c(server.port());
  REQUIRE(c.send(sized("/size", kBody)));
  CHECK(answer(c) == "HTTP/1.1 100 Continue\r\n\r\n");
  REQUIRE(c.send(std::string(kBody, 'c')));
  auto served = c.read_all(std::chrono::milliseconds(500));
  CHECK(served.ends_with("{\"size\":61440}"));
  // Once the first webhook body is answered its share is free again.
  REQUIRE(a.send(std::string(kBody, 'a')));
  CHECK(a.read_all(std::chrono::milliseconds(500)).ends_with("{\"size\":61440}"));
  RawConn d(server.port());
  REQUIRE(d.send(sized("/hook", kBody)));
  CHECK(answer(d) == "HTTP/1.1 100 Continue\r\n\r\n");
  server.stop();
  io.stop();
  runner.join();
}

TEST_CASE("http server: unset, the connection cap is the open-file limit less 256, 10000 at most") {
  // With the open-file limit near a million (systemd hosts), the limit alone was no cap at all.
  rlimit was{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &was) == 0);
  rlimit raised = was;
  raised.rlim_cur = was.rlim_max == RLIM_INFINITY ? 1 << 20 : was.rlim_max;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &raised) == 0);
  boost::asio::io_context io;
  http::Router router;
  Metrics metrics;
  http::ServerOptions opts;
  opts.port = 0;
  http::Server server(io, opts, router, metrics);
  server.start();
  std::size_t limit = raised.rlim_cur;
  CHECK(server.max_connections() ==
        std::min<std::size_t>(limit > 512 ? limit - 256 : limit / 2, 10000));
  if (limit < 10256) {
    MESSAGE("the hard open-file limit is ", limit, ": the 10000 bound was not reached");
  }
  REQUIRE(setrlimit(RLIMIT_NOFILE, &was) == 0);
}

TEST_CASE(
    "http server: accepts failing for want of file descriptors are logged once, and their end "
    "with the count") {
  // Out of descriptors the accept fails every 50 ms (the connection waits in the backlog): a
  // warning each time flooded the log for as long as it lasted.
  LogCapture log("http");
  boost::asio::io_context io;
  http::Router router;
  Metrics metrics;
  http::ServerOptions opts;
  opts.port = 0;
  opts.max_connections = 100;
  http::Server server(io, opts, router, metrics);
  server.start();
  std::thread runner([&] { io.run(); });
  // A timer waited on before the descriptors run out: the server's retry timer is the first of
  // the io_context, and under -fsanitize=vptr the first check of each dynamic type probes memory
  // through a pipe(), which finds no descriptor either ("object has invalid vptr ... memory
  // cannot be printed" from Asio's timer service, 36 false reports). Checked once, a type is
  // cached.
  {
    boost::asio::steady_timer warm(io, std::chrono::milliseconds(1));
    std::promise<void> waited;
    warm.async_wait([&](boost::system::error_code) { waited.set_value(); });
    waited.get_future().wait();
  }
  rlimit was{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &was) == 0);
  rlimit low = was;
  low.rlim_cur = std::min<rlim_t>(was.rlim_cur, 4096);
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  // Every descriptor taken but one, which the client's socket takes: the server has none left.
  std::vector<int> taken;
  for (int fd; (fd = ::dup(0)) >= 0;) {
    taken.push_back(fd);
  }
  REQUIRE(!taken.empty());
  ::close(taken.back());
  taken.pop_back();
  {
    RawConn c(server.port());
    std::this_thread::sleep_for(std::chrono::milliseconds(600));  // about 12 failed accepts
    for (int fd : taken) {
      ::close(fd);
    }
    REQUIRE(setrlimit(RLIMIT_NOFILE, &was) == 0);
    CHECK(eventually([&] { return !log.lines_with("accepting again after").empty(); }));
  }
  server.stop();
  io.stop();
  runner.join();
  auto failed = log.lines_with("accept failed");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].find("Too many open files") != std::string::npos);
  auto again = log.lines_with("accepting again after");
  REQUIRE(again.size() == 1);
  CHECK(std::stoi(again[0].substr(again[0].find("after ") + 6)) >= 5);
}
