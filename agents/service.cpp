#include "agents/service.hpp"

#include <algorithm>
#include <future>
#include <map>
#include <stdexcept>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include "agents/scripts.hpp"
#include "core/crypto.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "routing/rules.hpp"

namespace sb::agents {
namespace asio = boost::asio;

namespace {
std::vector<std::vector<std::string>> group_commands(const std::string& prefix,
                                                     const std::set<std::string>& queues) {
  std::vector<std::vector<std::string>> out;
  for (const auto& q : queues) {
    for (const char* p : kPriorities) {
      out.push_back({"XGROUP", "CREATE", prefix + ":q:" + q + ":" + p, "agents", "0", "MKSTREAM"});
    }
  }
  return out;
}

// The queues the database holds open interactions in (queued or claimed) that `configured` does
// not name: a reload or a restart dropped them (no rule, agent or default_queue names them any
// more). Their items stay in {prefix}:q:{queue}:*, where no agent may claim and from where no
// transfer can move them, since both need the queue to be the agent's: each is logged at warn
// with what to do. Authorisation stays as strict as ever (letting any agent transfer out of such
// a queue would hand its items to agents the operator never gave them to): the operator adds the
// queue to an agent's queues, and that agent claims the items and finishes or transfers each.
//
// The database is asked rather than Redis (SCAN {prefix}:q:*): it is the truth that Redis
// projects, it answers while Redis is down at start, and it tells waiting from held; a SCAN
// walks the whole keyspace and then each stream. Its query reads the open interactions only
// (open_items_by_queue).
std::set<std::string> dropped_queues(const std::string& db_path,
                                     const std::set<std::string>& configured) {
  std::set<std::string> out;
  std::map<std::string, OpenItems> open;
  try {
    storage::Db db(db_path, true);
    open = open_items_by_queue(db);
  } catch (const std::exception& e) {
    logger("agents")->warn(
        "[agents] could not look for queues dropped from the config that still hold items: {}",
        e.what());
    return out;
  }
  for (const auto& [queue, n] : open) {
    if (queue.empty() || configured.contains(queue)) {
      continue;
    }
    logger("agents")->warn(
        "[agents] queue {} is no longer in the config but holds {} {} ({} held): add it back to "
        "an agent's queues; that agent can claim them, then finish or transfer each",
        queue, n.items, n.items == 1 ? "item" : "items", n.held);
    out.insert(queue);
  }
  return out;
}

// The queues known at start: the configured ones and those dropped_queues finds.
std::set<std::string> queues_at_start(const std::string& db_path,
                                      const std::vector<std::string>& configured) {
  std::set<std::string> known(configured.begin(), configured.end());
  known.merge(dropped_queues(db_path, known));
  return known;
}

// SHA-256 of an agent token, as raw bytes: the key agents are found by.
std::string token_digest(std::string_view token) {
  std::string digest = sha256(token);
  if (digest.empty()) {
    throw std::runtime_error("SHA-256 is unavailable in this OpenSSL");
  }
  return digest;
}
}  // namespace

Service::Service(asio::io_context& io, const config::Config& cfg, storage::Writer& writer,
                 Relay& relay, Metrics& metrics, const SenderRegistry& senders,
                 std::vector<std::string> queues, const http::TokenSet& api_tokens,
                 SendPolicy policy)
    : io_(io),
      api_tokens_(api_tokens),
      senders_(senders),
      agents_(agent_table(cfg.agents)),
      queues_(queues_at_start(cfg.storage.path, queues)),
      configured_(queues.begin(), queues.end()),
      db_path_(cfg.storage.path),
      redis_(io, cfg.redis, lua_scripts(), group_commands(cfg.redis.prefix, queues_)),
      ops_(redis_, cfg.redis.prefix, cfg.routing.claim_timeout, cfg.routing.max_deliveries),
      records_(io, writer, cfg.storage.path),
      sends_(io, records_, senders, metrics, policy),
      relay_(relay) {
  max_waiting_claims_ = cfg.routing.max_waiting_claims_per_agent;
  // A waiting claim looks again at least this often, so an item whose claim timed out is
  // redelivered to a waiting agent without new work arriving.
  tick_ = std::clamp(cfg.routing.claim_timeout / 2, std::chrono::milliseconds(50),
                     std::chrono::milliseconds(1000));
  relay_.on_delivered([this](const std::string& queue, std::size_t n) {
    asio::post(io_, [this, queue, n] { waiters_.notify(queue, n); });
  });
  add_gauges(metrics);
}

Service::~Service() {
  stop();
}

void Service::start() {
  redis_.start();
  sends_.start();
  sweeper_ = Supervised::spawn(
      io_.get_executor(), {"agents", "[agents]", "the periodic dead-letter sweep", "queue_sweeps"},
      [this] { return sweep_queues(); });
}

void Service::shutdown() {
  asio::post(io_, [this] {
    stopping_ = true;
    waiters_.wake_all();
    sweep_timer_.cancel();
    if (sweeper_) {
      sweeper_->stop();  // a restart's back-off ends now
    }
  });
  sends_.stop();
}

void Service::drain_sends(std::chrono::steady_clock::time_point deadline) {
  const auto began = std::chrono::steady_clock::now();
  while (sends_.in_flight() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (sends_.in_flight() > 0) {
    // Attempts of senders without an idempotency key, still out: settled now as the restart
    // would, their results committed before the writer stops (a second at most).
    auto waited = std::chrono::round<std::chrono::seconds>(deadline - began);
    auto settled = sends_.settle_interrupted(
        "the stop's wait of " + std::to_string(waited.count()) + " s for it ended first");
    if (settled.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
      logger("agents")->warn(
          "[agents] the replies still out at the end of the stop's wait are not recorded as "
          "unknown yet: the restart settles them");
    }
  }
  if (auto n = sends_.in_flight(); n > 0) {
    logger("agents")->warn(
        "[agents] {} replies are still with their senders or unrecorded: they stay pending and "
        "are handed to their senders again after the restart",
        n);
  }
}

// The relay's on_delivered hook stays set: the relay thread has ended (App::stop) before this
// Service is destroyed, and resetting it here would race with a call in progress.
void Service::stop() {
  redis_.stop();
  records_.flush_now();  // the io thread has ended: events it had not handed over yet
}

void Service::reload(const std::vector<config::Agent>& agents,
                     const std::vector<std::string>& queues) {
  std::set<std::string> configured(queues.begin(), queues.end());
  // Read before the locks: claims and /metrics wait on queues_mu_.
  auto dropped = dropped_queues(db_path_, configured);
  std::vector<std::string> streams;
  {
    auto table = agent_table(agents);
    std::lock_guard lock(agents_mu_);
    agents_ = std::move(table);
    ++agents_epoch_;
    std::lock_guard qlock(queues_mu_);
    auto add = [&](const std::string& q) {
      if (queues_.insert(q).second) {
        for (const char* p : kPriorities) {
          streams.push_back(ops_.stream(q, p));
        }
      }
    };
    for (const auto& q : configured) {
      add(q);
    }
    for (const auto& q : dropped) {
      add(q);
    }
    configured_ = std::move(configured);
  }
  if (!streams.empty()) {  // a queue first known at the reload: its consumer groups
    redis_.eval(kEnsureGroups, std::move(streams), {}, [](RValue v) {
      if (v.is_error()) {
        logger("agents")->warn("[agents] creating consumer groups failed: {}", v.str);
      }
    });
  }
  // Waiting claims look at the new table now (Service::recheck): an agent removed, or whose
  // token or queues changed, is answered at once instead of after up to wait_ms, and is handed
  // nothing more.
  asio::post(io_, [this] { waiters_.wake_all(); });
  logger("agents")->info("[agents] reloaded {} agents", agents.size());
}

asio::awaitable<std::string> Service::acked_before(const std::string& id,
                                                   const std::string& agent) {
  auto& unsure = unsure_acks_.by_id;
  auto it = unsure.find(id);
  if (it == unsure.end() || it->second != agent || finished_.by_id.contains(id)) {
    co_return std::string();
  }
  if (auto e = co_await records_.settled(); !e.empty()) {
    co_return std::string();
  }
  // Had that ack not run, the item would still be held by this agent, or (its claim timed
  // out) held by another, recorded as claimed by another who finished it, or dead-lettered.
  auto row = records_.find(id);
  if (!row || row->state != "claimed" || finished_.by_id.contains(id)) {
    co_return std::string();
  }
  it = unsure.find(id);  // (`it` may be stale after the co_await)
  if (it == unsure.end() || it->second != agent) {
    co_return std::string();  // a concurrent retry took it
  }
  unsure.erase(it);
  co_return row->queue.empty() ? std::string("unknown") : row->queue;
}

asio::awaitable<bool> Service::finished_before(const std::string& id, const config::Agent& agent) {
  if (auto e = co_await records_.settled(); !e.empty()) {
    co_return false;  // not known: the 409 says what Redis knows
  }
  if (records_.finished_by(id) != agent.id) {
    co_return false;  // another agent's finish, or put back to work since (send_failed)
  }
  auto row = records_.find(id);
  if (!row) {
    co_return false;
  }
  co_return std::find(agent.queues.begin(), agent.queues.end(), row->queue) != agent.queues.end();
}

void Service::report_dead(const std::string& queue, const ClaimResult& c) {
  if (!c.dead_refused.empty()) {
    dead_letters_refused(queue, c.dead_refused);
  }
  // Every sweep reports what {prefix}:dead-unrecorded holds, and the periodic pass and claims
  // sweep the same queue: a dead letter whose record is on its way is not logged and written
  // again for a second (the write is idempotent; the repeated line said it was moved again).
  auto now = std::chrono::steady_clock::now();
  std::vector<DeadLetter> fresh;
  for (const auto& d : c.dead) {
    auto [it, first] = dead_reported_.try_emplace(d.interaction_id, now);
    if (!first && now - it->second < std::chrono::seconds(1)) {
      continue;
    }
    if (first) {
      logger("agents")->warn(
          "[agents:{}] interaction {} timed out max_deliveries times: moved to {}", d.queue,
          d.interaction_id, ops_.dead_stream(d.queue));
    }
    it->second = now;
    fresh.push_back(d);
  }
  if (!fresh.empty()) {
    // Redis forgets them ({prefix}:dead-unrecorded) only once the record is committed: should
    // the write fail or the daemon die first, the next sweep (a claim's or the periodic pass)
    // reports them again.
    records_.dead_lettered(fresh, [this, fresh] {
      ops_.forget_dead(fresh);
      for (const auto& d : fresh) {
        dead_reported_.erase(d.interaction_id);
      }
    });
  }
}

std::optional<Transfer> Service::transfer_of_note(const std::string& note) const {
  if (note.empty()) {
    return std::nullopt;
  }
  boost::json::error_code ec;
  auto v = boost::json::parse(note, ec);
  if (ec || !v.is_object()) {
    return std::nullopt;
  }
  const auto& o = v.get_object();
  auto str = [&o](const char* name) -> std::string {
    auto* f = o.if_contains(name);
    return f && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  Transfer t{str("agent"), str("queue"), str("priority"), str("entry"), 0, "", "", ""};
  try {
    t.at = std::stoll(str("at"));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (t.actor.empty() || t.queue.empty() || t.priority.empty() || t.entry_id.empty()) {
    return std::nullopt;
  }
  set_origin(t, str("from"));
  auto* rebuilt = o.if_contains("rebuilt");
  t.rebuilt = rebuilt && rebuilt->is_bool() && rebuilt->get_bool();
  return t;
}

void Service::set_origin(Transfer& t, const std::string& stream) const {
  t.from_queue = ops_.queue_of_stream(stream);
  t.from_priority = t.from_queue.empty() ? "" : stream.substr(stream.rfind(':') + 1);
  // Out of the dead letters: its origin is the queue and priority the row kept while it was
  // dead (from_queue empty: the row's).
  if (t.from_queue.empty() && !ops_.queue_of_dead_stream(stream).empty()) {
    t.from_dead = stream;
  }
}

void Service::record_transfer(const InteractionRow& row, const Transfer& t, bool late,
                              const std::string& note,
                              std::function<void(const std::string&)> committed) {
  if (!note.empty()) {
    transfers_recording_[row.id] = note;
  }
  records_.transferred(row, t, late, [this, id = row.id, note, committed](const std::string& err) {
    if (committed) {
      committed(err);
    }
    if (note.empty()) {
      return;
    }
    if (auto it = transfers_recording_.find(id);
        it != transfers_recording_.end() && it->second == note) {
      transfers_recording_.erase(it);
    }
    // Redis forgets the note only once the record is committed: should the write fail or the
    // daemon die first, the next periodic pass records it.
    if (err.empty()) {
      ops_.forget_transfers({{id, note}});
    }
  });
}

asio::awaitable<std::string> Service::record_transfer_committed(const InteractionRow& row,
                                                                const Transfer& t, bool late,
                                                                const std::string& note) {
  // Not a coroutine: async_initiate with use_awaitable already returns the awaitable.
  return asio::async_initiate<decltype(asio::use_awaitable), void(std::string)>(
      [this](auto handler, InteractionRow row, Transfer t, bool late, std::string note) {
        auto ex = asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        record_transfer(row, t, late, note, [h, ex](const std::string& err) {
          asio::post(ex, [h, err] { (*h)(err); });
        });
      },
      asio::use_awaitable, row, t, late, note);
}

asio::awaitable<void> Service::recover_transfers() {
  auto left = co_await ops_.unrecorded_transfers();
  if (!left.error.empty()) {
    if (auto left_out = recover_failed_.pass("read")) {
      logger("agents")->warn(
          "[agents] the periodic pass could not read the transfers not yet recorded: {}{}",
          left.error, LogGate::left_out_note(*left_out, "failed"));
    }
    co_return;
  }
  std::vector<std::pair<std::string, std::string>> drop;
  for (const auto& [id, note] : left.notes) {
    if (auto it = transfers_recording_.find(id);
        it != transfers_recording_.end() && it->second == note) {
      continue;  // its record is on its way (the route's, or an earlier pass's)
    }
    auto t = transfer_of_note(note);
    if (!t) {
      logger("agents")->warn("[agents] interaction {}: an unreadable transfer note ({}) dropped",
                             id, note);
      drop.emplace_back(id, note);
      continue;
    }
    auto row = records_.find(id);
    if (!row) {
      logger("agents")->warn(
          "[agents] interaction {} was transferred to {} by {}, but no interaction has that id "
          "in the database: its transfer note is dropped",
          id, t->queue, t->actor);
      drop.emplace_back(id, note);
      continue;
    }
    // Its agent's reply was lost and no retry came, or the daemon stopped before the record
    // (or before the note's HDEL, after it: Records::transferred then writes nothing).
    logger("agents")->info(
        "[agents:{}] interaction {} was transferred to {} by {} at {} and Redis still has its "
        "note: recorded now, unless its record is there already",
        t->from_queue.empty() ? row->queue : t->from_queue, id, t->queue, t->actor,
        format_ms(t->at));
    record_transfer(*row, *t, true, note);
  }
  if (!drop.empty()) {
    ops_.forget_transfers(drop);
  }
}

// Only a sweep moves an item past max_deliveries to the dead letters, and claims sweep: without
// this pass an item whose last holder timed out in a queue nobody claims from any more (its
// agents went away) stayed pending for that holder, its record `claimed`, and dead_letters 0.
// Every known queue is looked at every claim_timeout/10 (no sooner than a claim's own sweeps
// come: QueueOps::sweep skips a queue a claim swept lately). A Redis that is away ends the round
// (the claims' 503s and the relay say so); a queue's own broken key costs that queue's pass only.
asio::awaitable<void> Service::sweep_queues() {
  auto every = std::max(ops_.claim_timeout() / 10, ops_.sweep_every());
  while (!stopping_) {
    sweep_timer_.expires_after(every);
    auto [ec] = co_await sweep_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || stopping_) {
      co_return;
    }
    bool redis_away = false;
    for (const auto& q : known_queues()) {
      auto c = co_await ops_.sweep(q);
      if (!c.error.empty()) {
        if (auto left_out = sweep_failed_.pass(q)) {
          logger("agents")->warn("[agents:{}] the periodic dead-letter sweep failed: {}{}", q,
                                 c.error, LogGate::left_out_note(*left_out, "failed"));
        }
        if (c.error.starts_with(kRedisUnavailable)) {
          redis_away = true;
          break;
        }
        continue;
      }
      report_dead(q, c);
    }
    if (!redis_away && !stopping_) {
      co_await recover_transfers();
    }
  }
}

std::vector<std::string> Service::known_queues() {
  std::lock_guard lock(queues_mu_);
  return {queues_.begin(), queues_.end()};
}

bool Service::configured_queue(const std::string& queue, std::string& known) {
  std::lock_guard lock(queues_mu_);
  if (configured_.contains(queue)) {
    return true;
  }
  for (const auto& q : configured_) {
    known += (known.empty() ? "" : ", ") + q;
  }
  return false;
}

Service::AgentTable Service::agent_table(const std::vector<config::Agent>& agents) {
  AgentTable table;
  for (const auto& a : agents) {
    table.emplace(token_digest(a.token), std::make_shared<const config::Agent>(a));
  }
  return table;
}

// The token is found by its SHA-256, not compared with every agent's token in turn (4.5k
// instructions a request with bench_agents' 50 agents, 9% of the io thread, and linear in the
// team's size). The map's lookup time depends on the digest only, which tells nothing about any
// token; the match is then confirmed in constant time.
Service::Auth Service::agent_auth(const http::Request& r) const {
  auto token = http::bearer_token(r);
  if (token.empty()) {
    return {nullptr,
            http::unauthorized("an agent token is required: Authorization: Bearer <token>")};
  }
  std::string digest = token_digest(token);
  AgentPtr found;
  std::uint64_t epoch = 0;
  {
    std::lock_guard lock(agents_mu_);
    epoch = agents_epoch_;
    if (auto it = agents_.find(digest); it != agents_.end()) {
      found = it->second;
    }
  }
  if (!found || !http::secret_equals(token, found->token)) {
    // An [api] token (the ingest API's, which also reads customers and queues) is valid, just not
    // here: said so, rather than "not valid", which sent its user looking for a typo.
    if (api_tokens_.contains(token)) {
      return {nullptr,
              http::unauthorized("this is an API token ([api] tokens): agent routes need an "
                                 "agent's token ([[agents]] token)"),
              epoch};
    }
    return {nullptr, http::unauthorized("the agent token is not valid"), epoch};
  }
  return {std::move(found), std::nullopt, epoch};
}

std::optional<http::Response> Service::recheck(const http::Request& r, AgentPtr& agent,
                                               std::uint64_t& epoch,
                                               const std::string& queue) const {
  {
    std::lock_guard lock(agents_mu_);
    if (agents_epoch_ == epoch) {
      return std::nullopt;
    }
  }
  auto auth = agent_auth(r);
  if (!auth.agent) {
    return http::unauthorized("the agent token is not valid: agent " + agent->id +
                              " was removed or given another token by a configuration reload");
  }
  agent = std::move(auth.agent);
  epoch = auth.epoch;
  if (std::find(agent->queues.begin(), agent->queues.end(), queue) == agent->queues.end()) {
    return claim_forbidden(*agent, queue);
  }
  return std::nullopt;
}

std::optional<http::Response> Service::reader_denied(const http::Request& r) const {
  auto token = http::bearer_token(r);
  if (token.empty()) {
    return http::unauthorized("an agent or API token is required: Authorization: Bearer <token>");
  }
  if (api_tokens_.contains(token) || agent_auth(r).agent != nullptr) {
    return std::nullopt;
  }
  return http::unauthorized("the token is not valid: it is neither an agent's nor an API token");
}

// The gauges are synchronous callbacks; a blocking read from them held the io thread for the
// whole Redis timeout per queue while Redis hung (SIGSTOP, a stalled host: connections are
// still accepted), stalling every request. So the scrape reads first, asynchronously.
asio::awaitable<void> Service::refresh_queue_stats() {
  auto fresh = co_await queue_stats();
  std::lock_guard lock(stats_mu_);
  stats_ = *fresh;
}

asio::awaitable<std::shared_ptr<const Service::AllStats>> Service::queue_stats() {
  // Not a coroutine: async_initiate with use_awaitable already returns the awaitable. /metrics
  // asks no token, and each round costs Redis a script run per queue: concurrent callers join
  // the next round instead of starting their own (start_stats_round).
  return asio::async_initiate<decltype(asio::use_awaitable), void(std::shared_ptr<const AllStats>)>(
      [this](auto handler) {
        auto ex = asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        stats_waiting_.push_back([h, ex](std::shared_ptr<const AllStats> s) {
          asio::post(ex, [h, s = std::move(s)]() mutable { (*h)(std::move(s)); });
        });
        if (!stats_running_) {
          start_stats_round();
        }
      },
      asio::use_awaitable);
}

void Service::start_stats_round() {
  stats_running_ = true;
  auto waiting = std::make_shared<decltype(stats_waiting_)>(std::move(stats_waiting_));
  stats_waiting_.clear();
  asio::co_spawn(io_, read_queue_stats(), [this, waiting](std::exception_ptr e, AllStats all) {
    if (e) {
      all.clear();
      for (const auto& q : known_queues()) {
        all.emplace_back(q, QueueStats{});
        all.back().second.error =
            std::string(kRedisUnavailable) + "the statistics could not be read";
      }
    }
    auto shared = std::make_shared<const AllStats>(std::move(all));
    for (auto& w : *waiting) {
      w(shared);
    }
    stats_running_ = false;
    // Callers that came during this round: theirs starts now.
    if (!stats_waiting_.empty()) {
      start_stats_round();
    }
  });
}

asio::awaitable<Service::AllStats> Service::read_queue_stats() {
  AllStats fresh;
  std::string failed;
  for (const auto& q : known_queues()) {
    QueueStats s;
    if (failed.empty()) {
      s = co_await ops_.stats(q);
      // Redis away: the other queues are not asked this round (each would wait to fail). An
      // error of this queue's own keys (WRONGTYPE after an operator's SET) hides this queue's
      // gauges only.
      if (s.error.starts_with(kRedisUnavailable)) {
        failed = s.error;
      }
    } else {
      s.error = failed;
    }
    fresh.emplace_back(q, std::move(s));
  }
  co_return fresh;
}

std::vector<std::pair<std::string, QueueStats>> Service::scrape_stats() {
  std::lock_guard lock(stats_mu_);
  return stats_;
}

void Service::add_gauges(Metrics& metrics) {
  using Samples = std::vector<std::pair<Labels, double>>;
  // SPEC: switchboard_queue_depth{queue}, one series per queue; the split by priority is a
  // series of its own, so that `switchboard_queue_depth{queue="vip"} > 50` means what it says.
  // The stats script reads at most so far into a stream to count it (kStatsBody): the HELP
  // text says what a depth past that means.
  static const std::string depth_note = fmt::format(
      " Exact, except for a priority with over {0} waiting and over {0} entries before them "
      "(held, or acked without XDEL by a plain Redis client) when Redis gives no lag: then at "
      "least {0} (switchboard_queue_depth_exact 0).",
      kStatsCountLimit);
  metrics.gauge("switchboard_queue_depth",
                "Items waiting in a queue (not held by an agent)." + depth_note,
                [this]() -> Samples {
                  Samples out;
                  for (const auto& [q, s] : scrape_stats()) {
                    double n = 0;
                    for (const auto& p : s.by_priority) {
                      n += static_cast<double>(p.waiting);
                    }
                    if (s.error.empty()) {
                      out.push_back({{{"queue", q}}, n});
                    }
                  }
                  return out;
                });
  metrics.gauge("switchboard_queue_depth_by_priority",
                "Items waiting in a queue (not held by an agent), by priority." + depth_note,
                [this]() -> Samples {
                  Samples out;
                  for (const auto& [q, s] : scrape_stats()) {
                    if (!s.error.empty()) {
                      continue;
                    }
                    for (int i = 0; i < 4; ++i) {
                      out.push_back({{{"queue", q}, {"priority", kPriorities[i]}},
                                     static_cast<double>(s.by_priority[i].waiting)});
                    }
                  }
                  return out;
                });
  metrics.gauge("switchboard_queue_depth_exact",
                fmt::format("1 when switchboard_queue_depth is exact, 0 when it is a lower bound "
                            "(a priority with over {} waiting the daemon could not count).",
                            kStatsCountLimit),
                [this]() -> Samples {
                  Samples out;
                  for (const auto& [q, s] : scrape_stats()) {
                    bool exact = true;
                    for (const auto& p : s.by_priority) {
                      exact = exact && p.exact;
                    }
                    if (s.error.empty()) {
                      out.push_back({{{"queue", q}}, exact ? 1.0 : 0.0});
                    }
                  }
                  return out;
                });
  metrics.gauge("switchboard_queue_claimed", "Items held by agents, not yet finished.",
                [this]() -> Samples {
                  Samples out;
                  for (const auto& [q, s] : scrape_stats()) {
                    double n = 0;
                    for (const auto& p : s.by_priority) {
                      n += static_cast<double>(p.claimed);
                    }
                    if (s.error.empty()) {
                      out.push_back({{{"queue", q}}, n});
                    }
                  }
                  return out;
                });
  metrics.gauge(
      "switchboard_queue_oldest_age_seconds",
      "Age of the oldest waiting item of a queue (0 when none waits).", [this]() -> Samples {
        Samples out;
        auto now = now_ms();
        for (const auto& [q, s] : scrape_stats()) {
          std::int64_t oldest = -1;
          for (const auto& p : s.by_priority) {
            if (p.oldest_ms >= 0 && (oldest < 0 || p.oldest_ms < oldest)) {
              oldest = p.oldest_ms;
            }
          }
          if (s.error.empty()) {
            out.push_back(
                {{{"queue", q}}, oldest < 0 ? 0.0 : static_cast<double>(now - oldest) / 1000.0});
          }
        }
        return out;
      });
  auto dead_letters = [this]() -> Samples {
    Samples out;
    for (const auto& [q, s] : scrape_stats()) {
      if (s.error.empty()) {
        out.push_back({{{"queue", q}}, static_cast<double>(s.dead)});
      }
    }
    return out;
  };
  metrics.gauge("switchboard_dead_letters",
                "Entries in a queue's dead-letter stream ({prefix}:dead:{queue}).", dead_letters);
  // The old name of the same gauge: a _total suffix says counter, but the stream shrinks when an
  // operator trims it. Kept for dashboards that use it; deprecated (README).
  metrics.gauge("switchboard_dead_letters_total",
                "Deprecated: the same as switchboard_dead_letters (a gauge despite the suffix).",
                dead_letters);
}

}  // namespace sb::agents
