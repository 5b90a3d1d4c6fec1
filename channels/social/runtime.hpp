#pragma once
// What the social pollers, senders and webhook routes share at run time: the io executor, the
// pipeline, metrics, one outbound HTTP client, and a periodic runner (STYLE 2: a poller is one
// poll_once; the runner adds jittered back-off after failures, and one failing account never
// delays another because each runs as its own coroutine).
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include "channels/social/common.hpp"
#include "core/http_client.hpp"
#include "core/provider_wait.hpp"
#include "core/supervise.hpp"
#include "http/metrics.hpp"
#include "storage/pipeline.hpp"

namespace sb::social {

struct Runtime {
  boost::asio::any_io_executor ex;
  Pipeline& pipeline;
  Metrics& metrics;
  net::HttpClient& http;
  std::string default_region;
  // Accounts that can be paused (X usage cap), read by the switchboard_social_paused gauge.
  std::vector<std::pair<Labels, std::shared_ptr<std::atomic<bool>>>> paused = {};
  // Set by SocialChannels::stop(): pollers end, and senders answer `retry` at once instead of
  // starting work the stopping io_context would never finish.
  std::shared_ptr<std::atomic<bool>> stopped = std::make_shared<std::atomic<bool>>(false);
  // The longest wait a provider may make a poller take (core/provider_wait.hpp); tests shorten it.
  std::chrono::milliseconds max_poll_wait = kMaxPollWait;
};

// A wait the provider named for `p`'s next request, within [1 s, rt.max_poll_wait] (`min` 0 for
// pacing, whose small delays are legitimate).
std::chrono::milliseconds bound_poll_wait(const Runtime& rt, const char* channel,
                                          const std::string& account,
                                          std::chrono::duration<double> asked,
                                          std::string_view what,
                                          std::chrono::milliseconds min = kMinProviderWait);

// A finished poll round: when to poll again (ok), or why it failed (the runner backs off).
struct PollResult {
  bool ok = true;
  std::string error;
  std::chrono::milliseconds next{0};
  static PollResult again_in(std::chrono::milliseconds d) { return {true, {}, d}; }
  static PollResult failed(std::string why) { return {false, std::move(why), {}}; }
};

class Poller {
 public:
  virtual ~Poller() = default;
  virtual const char* channel() const = 0;  // "mastodon", "x", "telegram"
  virtual const std::string& account() const = 0;
  // What it reads when an account has several pollers (X: "direct messages"), for the log;
  // "" for the account's main one.
  virtual const char* what() const { return ""; }
  // Fetches until caught up, storing each batch with its cursor in one transaction.
  virtual boost::asio::awaitable<PollResult> poll_once() = 0;
};

// Runs `p` forever on rt.ex: poll, wait, poll; after a failure log, count, and wait with jittered
// exponential back-off (1 s doubling to 5 min). `stopped` ends the loop at its next wake-up. An
// exception that escapes a poll (a bug in a poller) restarts the loop (core/supervise.hpp):
// stop() the returned task along with setting `stopped`.
std::shared_ptr<Supervised> spawn_poller(Runtime& rt, std::shared_ptr<Poller> p,
                                         std::shared_ptr<std::atomic<bool>> stopped,
                                         SuperviseOptions restarts = {});

// co_await sleep_for(ex, d): a timer wait that never throws.
boost::asio::awaitable<void> sleep_for(boost::asio::any_io_executor ex,
                                       std::chrono::milliseconds d);

// base_url + spec.target as a client request (base_url's path prefix kept).
net::HttpRequest to_request(const std::string& base_url, const HttpRequestSpec& spec);
HeaderLookup lookup_in(const net::HttpResponse& r);

// Stores one batch (with its cursor) and counts the outcomes; returns the first storage error.
// Takes (and empties) named locals of the caller, which awaits it at once.
boost::asio::awaitable<std::string> store_batch(Runtime& rt, const char* channel,
                                                const std::string& account,
                                                std::vector<Inbound>& items,
                                                std::optional<CursorUpdate>& cursor);

}  // namespace sb::social
