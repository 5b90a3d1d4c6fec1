#pragma once
// The agents layer as one component of the App: agent authentication, the agent routes, the
// customer read routes, queue statistics in /metrics, and the reply send loop.
//
// Threads: handlers run on the io thread, and so does RedisExec's connection (pipelined);
// database writes go to the writer; a long-poll claim is a coroutine asleep on a timer.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "agents/queue_ops.hpp"
#include "agents/records.hpp"
#include "agents/redis_exec.hpp"
#include "agents/send_loop.hpp"
#include "agents/waiters.hpp"
#include "config/config.hpp"
#include "core/log_gate.hpp"
#include "core/sender.hpp"
#include "core/supervise.hpp"
#include "http/metrics.hpp"
#include "http/router.hpp"
#include "relay/relay.hpp"
#include "storage/writer.hpp"

namespace sb::agents {

class Service {
 public:
  // `queues`: every queue configured at start (rules, default, agents). With the queues the
  // config no longer names that hold open interactions in the database (each logged at warn),
  // they are the known queues: consumer groups are created for them on connect.
  // `api_tokens` ([api] tokens, as reloaded) may read customers and timelines too.
  Service(boost::asio::io_context& io, const config::Config& cfg, storage::Writer& writer,
          Relay& relay, Metrics& metrics, const SenderRegistry& senders,
          std::vector<std::string> queues, const http::TokenSet& api_tokens,
          SendPolicy policy = {});
  ~Service();

  void add_routes(http::Router& router);
  void start();
  // SIGTERM, first step: waiting claims answer 204 now so that shutdown is not held up.
  void shutdown();
  // SIGTERM, once requests are answered, before the io thread ends: waits until `deadline` for
  // the replies handed to senders to have their results committed (a result that arrives after
  // the io thread ended is lost, and the reply is sent again after the restart). Any thread.
  void drain_sends(std::chrono::steady_clock::time_point deadline);
  void stop();  // after the io thread has ended
  // SIGHUP: the agents, and the configured queues (`queues`: the default queue, every rule's and
  // every agent's, Rules::queues()). Known queues get consumer groups, statistics and the
  // periodic sweep; a transfer may move items into the queues of this configuration only. The
  // queues it leaves out that hold open interactions are logged at warn again.
  void reload(const std::vector<config::Agent>& agents, const std::vector<std::string>& queues);
  // SIGHUP, on the io thread once the channels took their new secrets: the replies held by an
  // account pause that ended with the old credentials are due now (SendLoop::end_old_pauses).
  void secrets_taken() { sends_.end_old_pauses(); }
  // Before a /metrics render: every queue's statistics, read on the io thread's pipelined
  // connection for the gauges. A hung Redis then delays the scrape, never the io thread, which
  // serves every request (ingest keeps accepting while Redis is down).
  boost::asio::awaitable<void> refresh_queue_stats();
  // Every known queue's statistics (for /metrics and /v1/queues), read after the call began.
  using AllStats = std::vector<std::pair<std::string, QueueStats>>;
  boost::asio::awaitable<std::shared_ptr<const AllStats>> queue_stats();

 private:
  using Response = http::Response;
  using Awaitable = boost::asio::awaitable<Response>;
  using AgentPtr = std::shared_ptr<const config::Agent>;  // outlives a reload while in use
  struct Auth {
    AgentPtr agent;  // null: `denied` says why
    std::optional<Response> denied;
    std::uint64_t epoch = 0;  // the agents table it was found in (see agents_epoch_)
  };
  Auth agent_auth(const http::Request& r) const;
  struct Call {
    AgentPtr agent;
    boost::json::object body;
    std::optional<Response> denied;  // 401 or 400: answer this
    std::uint64_t epoch = 0;
  };
  Call agent_call(const http::Request& r) const;
  // For a claim that may have waited across a reload: when the agents table changed since
  // `epoch`, authenticates `r` again and checks `queue` is still the agent's (updating `agent`
  // and `epoch`); the 401 or 403 to answer otherwise.
  std::optional<Response> recheck(const http::Request& r, AgentPtr& agent, std::uint64_t& epoch,
                                  const std::string& queue) const;
  static Response claim_forbidden(const config::Agent& agent, const std::string& queue);
  // 403 for acting (`verb`: "ack", "reply to", ...) on interaction `id` in `queue`, not one of the
  // agent's queues.
  static Response item_forbidden(const config::Agent& agent, const char* verb,
                                 const std::string& id, const std::string& queue);
  // 503 redis_unavailable with `message` and Retry-After: 1 (routes.cpp).
  static Response redis_unavailable(const std::string& message);
  // The read routes (queues, customers) take an agent or an [api] token: nullopt when `r` has
  // one, else the 401 to answer, saying whether a token was sent at all.
  std::optional<Response> reader_denied(const http::Request& r) const;

  Awaitable claim(http::Request& r);
  // What the claim of a call from `queue` answers: its payload as stored now (claim_route.cpp).
  std::string current_call(ClaimResult& c, const std::string& queue);
  Awaitable finish(http::Request& r, const char* what);  // ack | release
  Awaitable transfer(http::Request& r);
  // A transfer of an item in the dead letters (routes.cpp): answered once recorded.
  Awaitable transfer_dead(const InteractionRow& row, const config::Agent& agent,
                          const std::string& queue, const std::string& priority,
                          const std::string& new_payload, std::int64_t at);
  Awaitable reply(http::Request& r);
  // The claims an agent holds (held_routes.cpp): extend one, list them.
  Awaitable extend(http::Request& r);
  Awaitable claims(http::Request& r);
  // A reply repeated with the Idempotency-Key of `earlier` (routes.cpp).
  static Response replayed_reply(const std::string& parent_id, const std::string& agent,
                                 const std::string& key, std::string_view text,
                                 const KeyedReply& earlier);
  Awaitable queues(http::Request& r);
  Awaitable customer(http::Request& r);
  Awaitable timeline(http::Request& r);
  Awaitable attachment(http::Request& r);
  // For an operation Redis did not do: 404 when the interaction does not exist, 403 when it is
  // in a queue that is not the agent's, else 409 naming who holds it.
  Response not_held(const std::string& id, const config::Agent& agent, const char* verb,
                    const FinishResult& f);
  void add_gauges(Metrics& metrics);
  std::vector<std::string> known_queues();

  boost::asio::io_context& io_;
  const http::TokenSet& api_tokens_;
  const SenderRegistry& senders_;
  // Agents by the SHA-256 of their token (see agent_auth); replaced whole by a reload.
  using AgentTable = std::unordered_map<std::string, AgentPtr>;
  static AgentTable agent_table(const std::vector<config::Agent>& agents);
  mutable std::mutex agents_mu_;
  AgentTable agents_;
  std::uint64_t agents_epoch_ = 0;  // bumped by every reload, under agents_mu_
  std::mutex queues_mu_;
  // Every queue known since start (statistics, /v1/queues, /metrics, the periodic sweep): the
  // configured ones, and those the config no longer names but the database holds open items in,
  // found at start and at every reload (dropped_queues, service.cpp). A queue a reload dropped
  // stays listed until the next restart.
  std::set<std::string> queues_;
  // The queues of the configuration in force (the default queue, the rules' and the agents'),
  // replaced by a reload: the queues a transfer may move an item into.
  std::set<std::string> configured_;
  std::string db_path_;  // for dropped_queues at a reload
  // Whether `queue` is in configured_; when not, `known` lists them ("billing, general").
  bool configured_queue(const std::string& queue, std::string& known);
  RedisExec redis_;
  QueueOps ops_;
  Records records_;
  Waiters waiters_;  // io thread only
  // Claims waiting for work, by agent id (io thread only): at most max_waiting_claims_ each
  // (routing.max_waiting_claims_per_agent). A waiting claim holds an HTTP connection that the
  // server's connection cap may not close (it is a request in progress); without a limit one
  // agent's client, looping on claims that never time out on its side, held every connection up
  // to the cap, and the server answered everyone else 503: provider webhooks too, which Twilio
  // does not retry.
  std::unordered_map<std::string, int> waiting_claims_;
  int max_waiting_claims_ = 8;
  struct WaitingClaim;  // claim_route.cpp
  // Interaction id -> agent, the last few thousand put; io thread only.
  struct Recent {
    std::unordered_map<std::string, std::string> by_id;
    std::deque<std::string> order;
    void put(const std::string& id, const std::string& agent);
  };
  // Acks done: a retried ack is told the item is finished even before the event reaches the
  // database.
  Recent finished_;
  // Acks answered 503: Redis may have run the ack before the connection dropped, and a retry
  // then finds the item held by nobody.
  Recent unsure_acks_;
  // For an ack of `id` by `agent` that found it held by nobody: its queue when an earlier ack of
  // the same agent was answered 503 and nothing has happened to the item since (still recorded
  // as claimed, nobody else finished it), so that ack did run; else "".
  // The events recorded before are committed first (Records::settled): the claim's record may
  // still be on its way to the database.
  boost::asio::awaitable<std::string> acked_before(const std::string& id, const std::string& agent);
  // For an ack of `id` by `agent` that found it held by nobody: whether it is finished, by this
  // agent, in one of its queues (the events recorded before are committed first), so that the
  // ack is a repeat of one that was answered.
  boost::asio::awaitable<bool> finished_before(const std::string& id, const config::Agent& agent);
  // Claims answered 503 ("<agent>\n<queue>"): Redis may have run the claim before the connection
  // dropped, and the entry it took waits, held by the agent, for the agent's next claim from that
  // queue (lost_replies.cpp). Releases answered 503 (id -> agent), like unsure_acks_.
  Recent unsure_claims_;
  Recent unsure_releases_;
  void claim_unsure(const std::string& agent, const std::string& queue);
  bool take_unsure_claim(const std::string& agent, const std::string& queue);  // and forget it
  // The entry a lost claim handed to `agent` in `queue`, given to it now; found false when none.
  boost::asio::awaitable<ClaimResult> lost_claim(const std::string& queue,
                                                 const std::string& agent);
  // For a release of `id` by `agent` that found it released: its queue when an earlier release
  // of the same agent was answered 503 and did run; else "".
  boost::asio::awaitable<std::string> released_before(const std::string& id,
                                                      const std::string& agent);
  // A queue's dead-letter key refused an entry (not a stream): logged at most once a minute per
  // queue, since every sweep of a claim meets it again. io thread only.
  void dead_letters_refused(const std::string& queue, const std::string& error);
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> dead_refusal_logged_;
  // The dead letters a sweep of `queue` reported (ClaimResult::dead, dead_refused): logged and
  // recorded, then forgotten in Redis. io thread only.
  void report_dead(const std::string& queue, const ClaimResult& c);
  // Dead letters handed to the writer, by interaction id, until their record is committed.
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> dead_reported_;
  // Records a transfer (Records::transferred); once committed, its `note` (when not "") is
  // deleted from {prefix}:transfer-unrecorded. While it is being recorded, the periodic pass
  // leaves that note alone. io thread only.
  void record_transfer(const InteractionRow& row, const Transfer& t, bool late,
                       const std::string& note,
                       std::function<void(const std::string&)> committed = nullptr);
  // record_transfer, resumed once the record is committed: "" or the database's error (the note
  // then stays in Redis for the periodic pass).
  boost::asio::awaitable<std::string> record_transfer_committed(const InteractionRow& row,
                                                                const Transfer& t, bool late,
                                                                const std::string& note);
  // The transfer a note of {prefix}:transfer-unrecorded describes; nullopt when "" or unreadable.
  std::optional<Transfer> transfer_of_note(const std::string& note) const;
  // Sets `t`'s origin from the stream Redis moved it out of ("{prefix}:q:{queue}:{priority}");
  // a key of another shape (a producer of its own) leaves the row's queue as the origin.
  void set_origin(Transfer& t, const std::string& stream) const;
  // Notes being recorded, by interaction id. io thread only.
  std::unordered_map<std::string, std::string> transfers_recording_;
  // The periodic pass's look at {prefix}:transfer-unrecorded: each transfer left there (its
  // reply was lost and its agent did not retry, or the daemon stopped before the record) is
  // recorded, then its note deleted.
  boost::asio::awaitable<void> recover_transfers();
  LogGate recover_failed_{std::chrono::minutes(1)};
  // The periodic pass that moves items past max_deliveries to the dead letters in queues nobody
  // claims from (claim_route.cpp), and records the transfers whose replies were lost;
  // supervised as "queue_sweeps".
  boost::asio::awaitable<void> sweep_queues();
  boost::asio::steady_timer sweep_timer_{io_};
  std::shared_ptr<Supervised> sweeper_;
  LogGate sweep_failed_{std::chrono::minutes(1)};
  SendLoop sends_;
  Relay& relay_;
  bool stopping_ = false;  // io thread only
  std::chrono::milliseconds tick_;
  // The queue statistics of the last refresh_queue_stats, shared by the gauge families of a
  // scrape.
  std::mutex stats_mu_;
  std::vector<std::pair<std::string, QueueStats>> stats_;
  std::vector<std::pair<std::string, QueueStats>> scrape_stats();
  // Single flight for queue_stats: one round of reads at a time, and the callers that arrive
  // during a round share the next one (a result read before a caller arrived could miss an ack
  // it just made). However many scrapes come at once, Redis runs the stats script at most once
  // per queue per round, one round after another. io thread only.
  bool stats_running_ = false;
  std::vector<std::function<void(std::shared_ptr<const AllStats>)>> stats_waiting_;
  void start_stats_round();
  boost::asio::awaitable<AllStats> read_queue_stats();
};

}  // namespace sb::agents
