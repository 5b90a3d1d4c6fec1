#pragma once
// A tiny HTTP/1.1 server for provider fakes (Mastodon, X, Telegram, Meta Graph): keep-alive, one
// handler called under the fake's own lock, on a thread of its own, on a free loopback port. A
// handler may answer `hold` to be asked again 20 ms later (long polling) until it answers.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sb::test {

class FakeHttpServer {
 public:
  struct Request {
    std::string method;
    std::string target;
    std::string path;
    std::map<std::string, std::string> query;    // decoded
    std::map<std::string, std::string> headers;  // lower-cased names
    std::string body;
    // A header's value (its name lower-cased) or a query parameter's; "" when absent.
    std::string header(const std::string& name) const { return value_of(headers, name); }
    std::string param(const std::string& key) const { return value_of(query, key); }

   private:
    static std::string value_of(const std::map<std::string, std::string>& m, const std::string& k) {
      auto it = m.find(k);
      return it == m.end() ? std::string() : it->second;
    }
  };
  struct Response {
    int status = 200;
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string content_type = "application/json; charset=utf-8";
    bool hold = false;
    bool close = false;  // answer with Connection: close, then close the connection
    bool drop = false;   // close the connection without answering (the answer lost on its way)
    Response() = default;
    Response(int s, std::string b) : status(s), body(std::move(b)) {}
    static Response held() {  // long polling: ask the handler again in 20 ms
      Response r;
      r.hold = true;
      return r;
    }
  };
  // `waited`: how long this request has been held so far.
  using Handler = std::function<Response(const Request&, std::chrono::milliseconds waited)>;

  explicit FakeHttpServer(Handler handler);
  ~FakeHttpServer();
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  // Listens on `port`, or on a free one when 0. A test that wants its client's connections
  // refused for a while takes a free port, points the client at it, and starts the fake on it
  // later.
  void start(std::uint16_t port = 0);
  void stop();  // closes the listener and every connection; idempotent
  std::uint16_t port() const;
  std::string base_url() const;
  int requests() const;
  int connections() const;  // accepted so far

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::test
