#pragma once
// A small outbound HTTP(S) client for provider APIs (Mastodon, X, Meta, Telegram): Beast + OpenSSL
// coroutines on the caller's executor. One client keeps idle keep-alive connections per origin
// (scheme, host, port) and reuses them; every connect, handshake, write and read runs under a
// deadline; responses are capped. TLS verifies the peer against the system store with SNI and
// a host name check. http:// is allowed (local fakes, staging proxies).
//
// Errors are values: a network failure gives status 0 and `error` set; an HTTP error status is
// an ordinary response.
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

namespace sb::net {

struct HttpRequest {
  std::string method = "GET";
  std::string url;  // absolute: http(s)://host[:port]/path?query
  std::vector<std::pair<std::string, std::string>> headers;
  std::string content_type;  // set with a body
  std::string body;
  std::chrono::milliseconds timeout{0};  // whole exchange; 0: the client's default
};

struct HttpResponse {
  int status = 0;     // 0: no HTTP answer (see error)
  std::string error;  // network / TLS / parse failure, for logs
  // With status 0: the whole request went out before the failure (a timeout or a connection
  // lost while waiting for the answer), so the server may have acted on it: the outcome of a
  // POST is unknown. False when it failed before that (resolve, connect, TLS, writing).
  bool sent = false;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  // The first header named `name` (case-insensitive), or nullopt.
  std::optional<std::string> header(std::string_view name) const;
};

struct HttpClientOptions {
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds timeout{30'000};  // default for a whole request
  std::size_t max_body_bytes = 16 * 1024 * 1024;
  std::size_t max_idle_per_origin = 4;
  std::string user_agent = "switchboard";
};

class HttpClient {
 public:
  explicit HttpClient(boost::asio::any_io_executor ex, HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request. Must be awaited on the client's executor (it is not thread-safe).
  boost::asio::awaitable<HttpResponse> request(HttpRequest req);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::net
