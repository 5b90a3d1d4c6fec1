#pragma once
// The HTTP/1.1 server: Beast on C++20 coroutines, one io_context. Keep-alive, a deadline on
// every read and write, a body cap (413), a cap on the bodies held at once (503), the SPEC error
// shape for everything it rejects itself, and a request counter per route and status code.
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "http/metrics.hpp"
#include "http/router.hpp"

namespace sb::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;  // 0: pick a free port (tests)
  std::size_t max_body_bytes = 1048576;
  std::chrono::seconds idle_timeout{60};     // keep-alive connection with no request
  std::chrono::seconds request_timeout{30};  // to receive one whole request
  // Bytes of request bodies held at once across all connections, from the start of a body's
  // read until its response is written; 0: kDefaultBodyBudget, or max_body_bytes when larger.
  // A body that would pass it is refused with 503 before it is read (see Server::Impl::session).
  std::size_t max_body_bytes_in_flight = 0;
  static constexpr std::size_t kDefaultBodyBudget = 256 * 1024 * 1024;
  // Open connections at most; 0: the open-file limit (RLIMIT_NOFILE) less reserved_fds, or half
  // the limit when that is smaller, and kDefaultMaxConnections at most. See
  // Server::Impl::max_connections.
  std::size_t max_connections = 0;
  static constexpr std::size_t kDefaultMaxConnections = 10000;
  // Descriptors the rest of the daemon needs: SQLite (database, WAL and shm of each connection),
  // Redis, up to 128 replies in flight (an SMTP or HTTPS connection each), the providers'
  // keep-alive pools, one IMAP connection per mailbox (the caller adds those).
  std::size_t reserved_fds = 256;
};

class Server {
 public:
  Server(boost::asio::io_context& io, ServerOptions opts, const Router& router, Metrics& metrics);
  ~Server();

  // Binds and starts accepting; throws std::system_error when the address cannot be bound.
  void start();
  std::uint16_t port() const;  // the bound port
  // Stops accepting and closes idle keep-alive connections; requests in flight finish and are
  // answered. `active()` reaches 0 when every connection has ended.
  void stop();
  std::size_t active() const;
  // The caps in force once started: ServerOptions::max_connections and max_body_bytes_in_flight,
  // or the defaults they stand for.
  std::size_t max_connections() const;
  std::size_t max_body_bytes_in_flight() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sb::http
