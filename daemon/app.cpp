#include "daemon/app.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <functional>
#include <future>

#include "agents/reply_keys.hpp"
#include "agents/service.hpp"
#include "channels/api/ingest.hpp"
#include "channels/email/channel.hpp"
#include "channels/social/channels.hpp"
#include "channels/voice/routes.hpp"
#include "core/log.hpp"
#include "core/log_gate.hpp"
#include "core/stalls.hpp"
#include "core/supervise.hpp"
#include "core/time.hpp"

namespace sb {
namespace asio = boost::asio;

namespace {
// /readyz: a writer transaction (its jobs' wait included) older than this is a stall.
constexpr auto kWriterStall = std::chrono::seconds(5);
}  // namespace

// Channel state that must outlive the routes that reference it.
struct App::Channels {
  api::IngestRoutes ingest;
  voice::VoiceRoutes voice;
  std::unique_ptr<social::SocialChannels> social = nullptr;
};

App::App(config::Config cfg, AppOptions options)
    : cfg_(std::move(cfg)), options_(options), api_tokens_(cfg_.api.tokens) {
  writer_ = std::make_unique<storage::Writer>(cfg_.storage.path, storage::kDefaultCheckpointFrames,
                                              cfg_.storage.synchronous == "full"
                                                  ? storage::Synchronous::full
                                                  : storage::Synchronous::normal);
  store_ = std::make_unique<storage::Store>(*writer_, Rules::compile(cfg_.routing, cfg_.agents));
  std::vector<std::string> queues = store_->rules()->queues();
  relay_ = std::make_unique<Relay>(cfg_.redis, *writer_, queues);
  writer_->on_commit([r = relay_.get()] { r->wake(); });
  agents_ = std::make_unique<agents::Service>(io_, cfg_, *writer_, *relay_, metrics_, senders_,
                                              queues, api_tokens_);

  store_->set_call_folder(voice::call_folder());
  channels_ = std::make_unique<Channels>(
      Channels{api::IngestRoutes{*store_, metrics_, api_tokens_, cfg_.matching.default_region},
               voice::VoiceRoutes{*store_, metrics_, cfg_.channels, cfg_.matching.default_region}});
  email_ = std::make_unique<email::EmailChannel>(io_, *store_, metrics_, cfg_.channels, senders_);
  api::add_routes(router_, channels_->ingest);
  voice::add_routes(router_, channels_->voice);
  agents_->add_routes(router_);
  social::SocialOptions social_options;
  social_options.max_poll_wait = options_.max_poll_wait;
  social_options.whatsapp_warning_every = options_.whatsapp_warning_every;
  channels_->social =
      std::make_unique<social::SocialChannels>(io_, *store_, metrics_, cfg_, social_options);
  channels_->social->add_routes(router_);
  channels_->social->register_senders(senders_);
  add_ops_routes();

  http::ServerOptions opts;
  opts.host = cfg_.server.host;
  opts.port = cfg_.server.port;
  opts.max_body_bytes = cfg_.server.max_body_bytes;
  opts.max_connections = cfg_.server.max_connections;
  opts.max_body_bytes_in_flight = cfg_.server.max_body_bytes_in_flight;
  for (const auto& imap : cfg_.channels.imap) {
    opts.reserved_fds += imap.mailboxes.size();  // a connection each
  }
  server_ = std::make_unique<http::Server>(io_, opts, router_, metrics_);

  metrics_.sampled_counter(
      "switchboard_writer_commits_total",
      "Transactions committed by the writer (group commit: many requests each).",
      [w = writer_.get()]() -> std::vector<std::pair<Labels, double>> {
        return {{{}, static_cast<double>(w->commits())}};
      });
  metrics_.sampled_counter("switchboard_writer_jobs_total",
                           "Jobs (requests, relay marks) run by the writer.",
                           [w = writer_.get()]() -> std::vector<std::pair<Labels, double>> {
                             return {{{}, static_cast<double>(w->jobs_done())}};
                           });
  metrics_.gauge("switchboard_writer_queue_jobs",
                 "Jobs waiting for the writer's next transaction (requests wait for their commit).",
                 [w = writer_.get()]() -> std::vector<std::pair<Labels, double>> {
                   return {{{}, static_cast<double>(w->backlog())}};
                 });
  metrics_.sampled_counter(
      "switchboard_stalls_total",
      "Times a stage held work back for over 250 ms, by stage: io (the event loop), "
      "writer (requests waiting for their commit), relay (outbox rows waiting), claim (a "
      "waiting claim not woken), redis (the agents' Redis answering late). Each is logged at "
      "warn.",
      []() -> std::vector<std::pair<Labels, double>> {
        std::vector<std::pair<Labels, double>> out;
        for (Stall s : kStalls) {
          out.push_back({{{"stage", stall_name(s)}}, static_cast<double>(stalls(s))});
        }
        return out;
      });
  // A long-running task that an exception stopped is started again (core/supervise.hpp): the
  // work goes on, and this says it happened. Failures are values in those loops, so any
  // increase is a bug or a store call that threw; the log has each one at error.
  metrics_.sampled_counter(
      "switchboard_task_restarts_total",
      "Times a long-running task (a mailbox's or a social account's poller, the reply send loop, "
      "the periodic sweeps, the queues' dead-letter sweep, the io loop's watch) was stopped by an "
      "exception and started again, by task. Each is logged at error with the exception; alert on "
      "any increase.",
      []() -> std::vector<std::pair<Labels, double>> {
        std::vector<std::pair<Labels, double>> out;
        for (const auto& [task, n] : task_restarts()) {
          out.push_back({{{"task", task}}, static_cast<double>(n)});
        }
        return out;
      });
  // Counted at scrape time from the database (its own read connection, used on the io thread
  // only), so the number is right while Redis is down, which is when it matters. The registry
  // copies its gauge functions at every render, so the connection is held by a shared slot:
  // a connection held by the lambda itself was opened anew on every scrape.
  auto outbox_reader = std::make_shared<std::unique_ptr<storage::Db>>();
  auto outbox_db = [this, outbox_reader]() -> storage::Db& {
    auto& db = *outbox_reader;
    if (!db) {
      db = std::make_unique<storage::Db>(cfg_.storage.path, true);
    }
    return *db;
  };
  metrics_.gauge("switchboard_outbox_pending",
                 "Committed interactions not yet projected into Redis.",
                 [this, outbox_db]() -> std::vector<std::pair<Labels, double>> {
                   return {{{}, static_cast<double>(relay_->pending(outbox_db()))}};
                 });
  // The relay's lag in time rather than rows: what an agent waits beyond the commit.
  metrics_.gauge(
      "switchboard_outbox_oldest_age_seconds",
      "Age of the oldest committed interaction not yet projected into Redis; 0 when none waits.",
      [this, outbox_db]() -> std::vector<std::pair<Labels, double>> {
        auto oldest = relay_->oldest_pending_ms(outbox_db());
        double age =
            oldest > 0 ? static_cast<double>(std::max<std::int64_t>(0, now_ms() - oldest)) / 1000.0
                       : 0.0;
        return {{{}, age}};
      });
  // Redis lost entries it had taken (restarted without its append-only file, from an older
  // snapshot, flushed): the open interactions added again (relay/reproject.cpp). Alert on any
  // increase.
  metrics_.sampled_counter(
      "switchboard_reprojected_total",
      "Open interactions projected into Redis again after Redis lost them (its projection mark "
      "went back).",
      [r = relay_.get()]() -> std::vector<std::pair<Labels, double>> {
        return {{{}, static_cast<double>(r->reprojected())}};
      });
  // Entries a Redis restored from an older snapshot brought back for interactions finished or
  // moved since: removed, or moved to their current stream, before the re-projection
  // (relay/sweep.cpp).
  metrics_.sampled_counter(
      "switchboard_reconciled_entries_total",
      "Queue entries of finished or moved interactions that Redis brought back from an older "
      "snapshot, removed (or moved to the interaction's current stream) by the relay.",
      [r = relay_.get()]() -> std::vector<std::pair<Labels, double>> {
        return {{{}, static_cast<double>(r->reconciled())}};
      });
  // A Redis that may evict keys (maxmemory with a policy other than noeviction) loses queue
  // entries silently at its limit; alert on 1 (README: Redis).
  metrics_.gauge(
      "switchboard_redis_eviction_possible",
      "1 when Redis has a maxmemory limit and a maxmemory-policy other than noeviction "
      "(looked at by the relay at connection and once a minute): it may drop queue entries at "
      "its limit.",
      [r = relay_.get()]() -> std::vector<std::pair<Labels, double>> {
        return {{{}, r->redis_may_evict() ? 1.0 : 0.0}};
      });
  // Rows held back because their stream key refuses entries (WRONGTYPE...); alert on > 0.
  metrics_.gauge("switchboard_relay_held_streams",
                 "Streams whose key refuses entries; their outbox rows wait, the others flow.",
                 [r = relay_.get()]() -> std::vector<std::pair<Labels, double>> {
                   return {{{}, static_cast<double>(r->held().size())}};
                 });
  metrics_.gauge("switchboard_relay_held_rows",
                 "Outbox rows held back because their stream key refuses entries, by stream.",
                 [r = relay_.get()]() -> std::vector<std::pair<Labels, double>> {
                   std::vector<std::pair<Labels, double>> out;
                   for (const auto& h : r->held()) {
                     out.push_back({{{"stream", h.stream}}, static_cast<double>(h.rows)});
                   }
                   return out;
                 });
}

App::~App() {
  stop();
}

// The periodic work on the database, from the io_context. A call with no final event within 4
// hours is closed as "unknown" and queued (issue 5): the provider may never send the hangup.
// Checked every minute, and so are reply Idempotency-Keys past their 24 hours (cleared in small
// batches, agents/reply_keys.hpp). Every 10 s, calls held back because they ended before
// anything told their direction (Store::apply_call_event) are queued once their first event is
// 30 s old.
//
// Each step stands alone. A step hands a job to the writer, whose SQLite errors are the
// writer's to handle; one that throws here (an allocation, a bug) is logged and tried again at
// its next turn, and the others go on, so a failing stale-call sweep does not take the writer
// probe (/readyz) or the release of held calls with it. A step that fails on every turn is
// logged at most once a minute, with how many failures that line stands for.
void App::run_sweeps() {
  auto failed = std::make_shared<LogGate>(std::chrono::minutes(1));
  auto step = [failed](const char* name, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      if (auto left_out = failed->pass(name)) {
        logger("daemon")->error("[daemon] the {} sweep failed: {}; tried again at its next turn{}",
                                name, e.what(),
                                LogGate::left_out_note(*left_out, "failed the same way"));
      }
    }
  };
  sweeps_ = Supervised::spawn(
      io_.get_executor(), {"daemon", "[daemon]", "the periodic sweeps", "sweeps"},
      [this, step]() -> asio::awaitable<void> {
        asio::steady_timer timer(io_);
        for (int tick = 1;; ++tick) {
          timer.expires_after(std::chrono::seconds(10));
          auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
          if (ec) {
            co_return;
          }
          // /readyz: the database is writable now, not at the last write
          step("writer probe", [this] { writer_->probe(); });
          step("held calls", [this] { store_->release_held_calls(30 * 1000); });
          if (tick % 6 != 0) {
            continue;
          }
          step("stale calls", [this] {
            store_->close_stale_calls(storage::kStaleCallAfterMs, [](const storage::StaleSweep& r) {
              if (r.closed > 0) {
                logger("voice")->info("[voice] closed {} calls with no final event as unknown",
                                      r.closed);
              }
            });
          });
          step("reply keys", [this] { agents::expire_reply_keys(*writer_, now_ms()); });
        }
      });
}

// The io thread serves every HTTP request, claim and agents' Redis reply: a handler that blocks
// it delays all of them. A timer due every 50 ms that fires far later says the loop was held
// (for at least that long: the block may have begun up to 50 ms before the timer was due).
void App::watch_io_loop() {
  io_watch_ = Supervised::spawn(
      io_.get_executor(), {"daemon", "[daemon]", "the io loop's watch", "io_watch"},
      [this]() -> asio::awaitable<void> {
        asio::steady_timer timer(io_);
        for (;;) {
          timer.expires_after(std::chrono::milliseconds(50));
          auto due = timer.expiry();
          auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
          if (ec) {
            co_return;
          }
          auto late = std::chrono::steady_clock::now() - due;
          if (late > kStallThreshold) {
            note_stall(
                Stall::io,
                fmt::format("the io thread's event loop was held for at least {} ms: HTTP "
                            "requests, claims and agents' Redis replies waited that long",
                            std::chrono::duration_cast<std::chrono::milliseconds>(late).count()));
          }
        }
      });
}

void App::start() {
  server_->start();
  writer_->start();
  relay_->start();
  agents_->start();
  io_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sb-io");
    auto guard = asio::make_work_guard(io_);
    io_.run();
  });
  run_sweeps();
  watch_io_loop();
  email_->start();
  channels_->social->start();
  started_ = true;
  logger("daemon")->info(
      "[daemon] listening on http://{}:{}, database {} (synchronous={}: {}), redis {}:{} prefix {}",
      cfg_.server.host, port(), cfg_.storage.path, cfg_.storage.synchronous,
      cfg_.storage.synchronous == "full" ? "a 2xx survives a power loss"
                                         : "a 2xx survives a crash of the process",
      cfg_.redis.host, cfg_.redis.port, cfg_.redis.prefix);
}

void App::stop() {
  if (!started_ || stopped_) {
    return;
  }
  stopped_ = true;
  auto log = logger("daemon");
  log->info("[daemon] stopping: no new connections; finishing requests in flight");
  server_->stop();
  agents_->shutdown();  // waiting claims answer 204 now
  email_->stop();       // mailbox loops end; nothing more is submitted
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server_->active() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Replies with their senders: a result that arrives once the io thread has ended is dropped
  // and the reply is sent again after the restart, so give them a few seconds (an SMTP server
  // may take minutes to answer the final '.': those are left to the restart).
  agents_->drain_sends(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  channels_->social->stop();
  sweeps_->stop();
  io_watch_->stop();
  io_.stop();
  if (io_thread_.joinable()) {
    io_thread_.join();
  }
  agents_->stop();
  // Everything answered is committed; hand what the writer still holds to the database, then
  // let the relay flush the outbox into Redis before the writer goes.
  try {
    storage::Db db(cfg_.storage.path, true);
    log->info("[daemon] flushing the outbox ({} pending)", relay_->pending(db));
  } catch (const std::exception& e) {
    log->info("[daemon] flushing the outbox (not counted: {})", e.what());
  }
  relay_->stop(std::chrono::seconds(5));
  writer_->stop();
  log->info("[daemon] stopped");
}

std::vector<std::string> App::reload(const config::Config& fresh) {
  std::shared_ptr<const Rules> rules;
  try {
    rules = Rules::compile(fresh.routing, fresh.agents);
  } catch (const std::exception& e) {
    return {std::string("routing rules: ") + e.what()};
  }
  auto queues = rules->queues();
  store_->set_rules(std::move(rules));
  agents_->reload(fresh.agents, queues);
  api_tokens_.replace(fresh.api.tokens);
  auto log = logger("daemon");
  log->info("[daemon] reloaded {} routing rules", fresh.routing.rules.size());
  // Secrets of accounts whose secrets alone changed: the voice routes and the Meta route check
  // webhooks with them, the mailbox sessions log in, the pollers poll and the send loop sends
  // with them, all on the io thread, so they change there, between two requests (or two
  // sessions, polls, sends); the reload returns once they have, so the next one uses the new
  // value. The copies started equal and take the same change, so the voice copy's list (every
  // kind of account) names them all.
  auto take_secrets = [this, &fresh] {
    channels_->social->take_secrets(fresh.channels);
    email_->take_secrets(fresh.channels);
    return config::take_secrets(channels_->voice.channels, fresh.channels);
  };
  std::vector<std::string> rotated;
  if (started_ && !stopped_) {
    // Then, on the same thread as the senders and the send loop, the replies held by an
    // account's pause that the new credentials do not share (X's 24-hour limit of the old
    // user) are brought forward.
    std::packaged_task<std::vector<std::string>()> task([&take_secrets, this] {
      auto taken = take_secrets();
      agents_->secrets_taken();
      return taken;
    });
    auto done = task.get_future();
    asio::post(io_, [&task] { task(); });
    rotated = done.get();
  } else {
    rotated = take_secrets();
  }
  for (const auto& account : rotated) {
    log->info("[daemon] reload: channels.{} applied from its next use", account);
  }
  // Everything but the rules and the agents keeps its start-up value: say so, rather than let
  // an operator believe a new claim_timeout is in force.
  for (const auto& change : config::changes_needing_restart(cfg_, fresh)) {
    log->warn("[daemon] reload: {}: not applied until a restart", change);
  }
  return {};
}

void App::add_ops_routes() {
  router_.add("GET", "/healthz", [](http::Request&) -> asio::awaitable<http::Response> {
    co_return http::json(200, R"({"status":"ok"})");
  });
  router_.add("GET", "/readyz", [this](http::Request&) -> asio::awaitable<http::Response> {
    if (!writer_->healthy()) {
      co_return http::error(503, "database_unavailable",
                            "the database is not writable (" + cfg_.storage.path + ")");
    }
    // A writer stuck in one transaction fails nothing, so healthy() stays true, while every
    // ingest and webhook request waits for a commit that does not come. A transaction takes
    // milliseconds (tens at a checkpoint); kWriterStall is far beyond any that finishes.
    if (auto busy = writer_->busy_for(); busy > kWriterStall) {
      co_return http::error(
          503, "database_unavailable",
          fmt::format("the writer has not finished a transaction for {} s ({}); ingest and "
                      "webhook requests wait for their commit",
                      std::chrono::duration_cast<std::chrono::seconds>(busy).count(),
                      cfg_.storage.path));
    }
    if (!relay_->redis_ok()) {
      co_return http::error(503, "redis_unavailable",
                            "redis is not answering: " + relay_->redis_error() +
                                "; ingest continues and the outbox holds the work");
    }
    // Redis holds another database's queues, or is ahead of this database (a backup restored
    // without clearing it): the relay adds nothing, and agents here may be handed interactions
    // this database does not have (relay/guard.cpp).
    if (auto hold = relay_->held_by()) {
      co_return http::error(503, hold->reason, hold->detail);
    }
    // One stream key that refuses entries (an operator's SET on it) is not Redis being down:
    // every other queue flows and the held rows wait safely in the outbox, so taking this
    // instance out of rotation would help nobody. Stay ready, and name the held streams.
    auto held = relay_->held();
    if (held.empty()) {
      co_return http::json(200, R"({"status":"ready"})");
    }
    boost::json::array streams;
    for (const auto& h : held) {
      streams.push_back({{"stream", h.stream}, {"rows", h.rows}, {"error", h.error}});
    }
    co_return http::json(200, boost::json::serialize(boost::json::object{
                                  {"status", "ready"}, {"held_streams", std::move(streams)}}));
  });
  router_.add("GET", "/metrics", [this](http::Request&) -> asio::awaitable<http::Response> {
    co_await agents_->refresh_queue_stats();  // queue gauges, without blocking the io thread
    co_return http::Response{200, "text/plain; version=0.0.4", metrics_.render(), {}};
  });
}

}  // namespace sb
