#pragma once
// The daemon's wiring: builds every component from a Config, starts them in order and stops
// them in reverse (STYLE 7). Shared by main.cpp and the integration tests, which run a whole
// daemon in-process against a real redis-server.
#include <boost/asio/io_context.hpp>
#include <memory>
#include <thread>

#include "config/config.hpp"
#include "core/provider_wait.hpp"
#include "core/sender.hpp"
#include "http/metrics.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "relay/relay.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"

namespace sb {
class Supervised;

namespace email {
class EmailChannel;
}

namespace agents {
class Service;
}

// Settings no config file holds: a deployment runs with the defaults, tests shorten them.
struct AppOptions {
  // The longest wait a provider may make a social poller take (core/provider_wait.hpp).
  std::chrono::milliseconds max_poll_wait = kMaxPollWait;
  // How often at most the WhatsApp-without-access_token warning is repeated (tests shorten it).
  std::chrono::milliseconds whatsapp_warning_every = std::chrono::hours(1);
};

class App {
 public:
  // Opens and migrates the database; throws std::exception with a one-line reason on failure.
  explicit App(config::Config cfg, AppOptions options = {});
  ~App();

  // Binds the listener (throws when it cannot) and starts the writer, relay and io thread.
  void start();
  // SIGTERM path: stop accepting, let requests in flight finish (bounded), flush the outbox to
  // Redis (bounded), stop the writer. Idempotent.
  void stop();

  // SIGHUP path: swaps rules and agents atomically; on a bad config returns the problems and
  // keeps the old ones.
  std::vector<std::string> reload(const config::Config& fresh);

  std::uint16_t port() const { return server_->port(); }
  boost::asio::io_context& io() { return io_; }
  storage::Store& store() { return *store_; }
  storage::Writer& writer() { return *writer_; }
  Relay& relay() { return *relay_; }
  Metrics& metrics() { return metrics_; }
  // Channels that can answer register here while the App is built; the agents' reply route
  // looks senders up by (channel, account).
  SenderRegistry& senders() { return senders_; }
  const config::Config& config() const { return cfg_; }

 private:
  void add_ops_routes();
  void run_sweeps();  // the periodic work on the database: calls, reply keys
  void watch_io_loop();

  config::Config cfg_;
  AppOptions options_;
  boost::asio::io_context io_{1};
  Metrics metrics_;
  SenderRegistry senders_;
  http::Router router_;
  http::TokenSet api_tokens_;  // [api] tokens: ingest and the read routes; a reload replaces them
  std::unique_ptr<storage::Writer> writer_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<Relay> relay_;
  std::unique_ptr<agents::Service> agents_;  // issue 3: agent API, customer API, replies
  std::unique_ptr<http::Server> server_;
  struct Channels;
  std::unique_ptr<Channels> channels_;
  std::unique_ptr<email::EmailChannel> email_;
  std::thread io_thread_;
  std::shared_ptr<Supervised> sweeps_;  // run_sweeps(), restarted after an exception
  std::shared_ptr<Supervised> io_watch_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace sb
