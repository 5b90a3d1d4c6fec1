#pragma once
// A whole daemon in-process with a real redis-server, and helpers to speak the agent API.
#include <boost/json.hpp>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "daemon/app.hpp"
#include "tests/support/harness.hpp"

namespace sb::test {

struct AgentDaemon {
  TempDir dir;
  RedisServer redis;
  std::unique_ptr<App> app;
  std::unique_ptr<HttpClient> http;
  // `tweak` edits the config; `before_start` runs between building and starting the App
  // (registering fake senders).
  explicit AgentDaemon(std::function<void(config::Config&)> tweak = nullptr,
                       std::function<void(App&)> before_start = nullptr);

  // POST /v1/interactions; returns the interaction id.
  std::string ingest(const std::string& external_id, const std::string& subject,
                     const std::string& email = "ann@example.com",
                     const std::string& thread_key = "", const std::string& source = "web-form");
  HttpResponse claim(const std::string& token, const std::string& queue, int wait_ms = 0,
                     HttpClient* client = nullptr);
  HttpResponse act(const std::string& token, const std::string& id, const std::string& action,
                   const std::string& body = "{}", HttpClient* client = nullptr);
  HttpResponse get(const std::string& token, const std::string& target);
  long long rows(const std::string& sql);
  // The entry of `queue` in GET /v1/queues.
  boost::json::object queue_stats(const std::string& queue);
  // Waits until the relay projected everything committed into Redis.
  void drained();
  // Stops the daemon and starts it again (its database and Redis stay) with the test config
  // edited by `tweak`.
  void restart(const std::function<void(config::Config&)>& tweak = nullptr);
};

class ReplyCutter;
// A tweak for AgentDaemon: the daemon's Redis connection goes through `cutter` (made with the
// config, so it outlives the daemon when declared before it). The periodic pass comes every
// claim_timeout/10: 30 s by default, so that the tests that leave it out are not raced by it.
std::function<void(config::Config&)> through(
    std::unique_ptr<ReplyCutter>& cutter,
    std::chrono::milliseconds claim_timeout = std::chrono::minutes(5), int max_deliveries = 5);
// Agent `agent`'s token in `c` becomes `token` (a leaked token rotated by SIGHUP).
void rotate_token(config::Config& c, const std::string& agent, const std::string& token);
// Alice's claim of `general` on its own thread, its answer held back 1.5 s by `cutter`: returns
// once Redis has run it (the entry is alice's in XPENDING), the claim still waiting for the
// answer, which lands in `got`. The caller joins the thread.
std::thread claim_on_its_way(AgentDaemon& d, ReplyCutter& cutter, HttpClient& client,
                             HttpResponse& got);

boost::json::object parse(const std::string& body);
std::string claimed_id(const HttpResponse& r);  // interaction.id of a 200 claim
std::string error_message(const HttpResponse& r);

}  // namespace sb::test
