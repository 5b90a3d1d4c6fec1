#pragma once
// The relay: projects committed outbox rows into Redis Streams (DESIGN-NOTES invariant 3).
// It reads the outbox through its own read connection, sends a batch of EVALSHA calls in one
// write (pipelining), reads the replies in one pass, then asks the writer to delete the rows.
// The Lua script sets a per-operation marker and XADDs atomically, so a replay after a crash
// between XADD and the delete adds nothing; once the delete is on disk the marker is unlinked
// (it would otherwise hold Redis memory for its 7-day TTL). While Redis is down it retries
// with back-off and ingest is unaffected: the outbox simply grows.
//
// One stream key that refuses entries (an operator's `SET sb:q:billing:normal x` makes XADD
// answer WRONGTYPE) holds back only the rows for that stream (invariant 4): they stay in the
// outbox, in order, and are retried with back-off while the other streams keep flowing. A
// failure of Redis as a whole (connection, NOSCRIPT, OOM) still stops and retries everything.
//
// Redis keeps a mark, {prefix}:projected: the highest outbox seq it has taken, raised by the
// script in the same atomic step as the entries, so that whatever Redis comes back with (a
// snapshot, a replica) holds every entry up to its mark and none above it. Each call names the
// mark it expects; a lower one (Redis lost data, or an earlier call of the pipeline failed) is
// refused, so nothing overtakes a gap. On every connection, and when a call or the idle check
// finds the mark behind, the relay compares it with the database's own (relay_state) and
// re-projects the open interactions Redis lost (reproject.cpp). A Redis restored from an older
// snapshot also brings back entries of interactions finished or moved since: those are swept out
// of the queue streams first (sweep.cpp).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "config/config.hpp"
#include "storage/sqlite.hpp"
#include "storage/writer.hpp"

namespace sb {

class Relay {
 public:
  Relay(const config::Redis& redis, storage::Writer& writer, std::vector<std::string> queues);
  ~Relay();

  void start();
  // Delivers what is committed (for at most `flush_deadline`), then ends the thread. Rows of
  // held streams stay in the outbox for the next start.
  void stop(std::chrono::milliseconds flush_deadline = std::chrono::seconds(5));
  void wake();  // new outbox rows were committed

  bool redis_ok() const { return redis_ok_.load(); }
  std::string redis_error() const;
  // Outbox rows not yet in Redis (held ones included), read through `db`, a read connection of
  // the caller's: right while Redis is down and the relay is not passing. Cheap at any backlog.
  std::int64_t pending(storage::Db& db) const;
  // When the oldest of those rows was committed (Unix ms), 0 when there is none: the relay's
  // lag. Two rowid seeks, read through `db` as pending() is.
  std::int64_t oldest_pending_ms(storage::Db& db) const;
  std::uint64_t delivered() const { return delivered_.load(); }
  // Redis has a memory limit and a maxmemory-policy other than noeviction, as of the last look
  // (at each connection, then every eviction_check_every()): it may drop queue streams and the
  // relay's keys (connect.cpp).
  bool redis_may_evict() const { return may_evict_.load(); }
  // How often the relay looks at Redis's maxmemory-policy on a live connection (a minute); the
  // tests shorten it. Before start().
  void set_eviction_check_every(std::chrono::milliseconds every) { eviction_every_ = every; }
  // Open interactions added again after Redis lost them (reproject.cpp).
  std::uint64_t reprojected() const { return reprojected_.load(); }
  // Entries a Redis restored from an older snapshot brought back for interactions the database
  // has finished (removed) or moved to another queue or priority since (moved there) (sweep.cpp).
  std::uint64_t reconciled() const { return reconciled_.load(); }
  // A stream key whose XADD fails while Redis otherwise works: its rows wait in the outbox.
  struct HeldStream {
    std::string stream;  // {prefix}:q:{queue}:{priority}
    std::int64_t rows;   // outbox rows held back for it
    std::string error;   // Redis's answer to the latest attempt
  };
  std::vector<HeldStream> held() const;  // any thread; empty while every stream takes entries
  // Why the relay holds, when it does (guard.cpp): "redis_foreign" (another database's id at
  // {prefix}:db) or "redis_ahead" (Redis's projection mark past the database), and what to do.
  // Nothing is added to Redis until the prefix's keys are cleared. Any thread.
  struct HoldState {
    std::string reason, detail;
  };
  std::optional<HoldState> held_by() const;
  // Called on the relay thread after `n` entries were added to a queue's streams (claim
  // wake-ups).
  using Delivered = std::function<void(const std::string& queue, std::size_t n)>;
  void on_delivered(Delivered fn) { on_delivered_ = std::move(fn); }

  // The Lua script, exposed for tests. KEYS: the pass's note of refused streams, the projection
  // mark, then stream, marker per row. ARGV: marker ttl, the mark expected (at least), the seq
  // of the call's last row, then the 7 entry values per row. Returns {rows done, error of a
  // Redis-wide failure or '' (or "GAP ..." when the mark is behind), then row index, error for
  // each row whose stream refused it}.
  static const char* script();

 private:
  struct Conn;
  struct Reader;
  struct Row;
  struct Batch;
  struct Taken;
  struct Requeue;
  struct Held {
    std::string queue, priority;
    std::int64_t from_seq;  // its first held row: every later row of the stream waits too
    std::int64_t rows = 0;
    std::string error;
    std::chrono::steady_clock::time_point since, retry_at;
    std::chrono::milliseconds backoff;
  };
  // lost: Redis's projection mark is behind what it took (reconnect, then reconcile()).
  // held: Redis projects another database, or is ahead of this one (guard.cpp): no pass.
  enum class Outcome { idle, more, redis_failed, lost, held };
  enum class Hold { none, ahead, foreign };

  void loop();
  std::string connect(Conn& c);  // the handshake; what failed, "" when it went through
  void check_eviction(Conn& c);  // connect, then every eviction_every_: maxmemory-policy
  Outcome pass(Conn& c);         // one batch of new rows
  bool retry_held(Conn& c);      // the held streams whose back-off is over; false when Redis failed
  bool retry(Conn& c, const std::string& stream, Held& h);
  // `present`: interactions whose entry Redis has already (a sweep found it); their rows are
  // left unsent.
  void read_rows(Conn& c, storage::Stmt& select, Batch& b, bool send_held,
                 const std::unordered_set<std::string>* present = nullptr);
  bool send(Conn& c, Batch& b);
  void hold(const Row& r);
  void remove(Taken& t);
  void publish_held();
  bool unlink_markers(Conn& c);
  // reproject.cpp: Redis's mark against the database's; re-projects what Redis lost.
  Outcome reconcile(Conn& c);
  // sweep.cpp: before a re-projection, the stale entries out of the streams; the open
  // interactions whose entries stay (or were moved) go into present_.
  Outcome sweep(Conn& c);
  bool settle_writes();         // waits for the writer to commit the jobs submitted so far
  void sequence_unsequenced();  // open interactions queued before schema 13: a queued_seq < 0
  // New outbox rows (one writer job). A job that fails is submitted again (retry_requeues): the
  // interactions would otherwise be in no queue and, below Redis's mark, never re-projected.
  void requeue(std::vector<Requeue> rows);
  void retry_requeues();  // the failed ones, at most once a second
  // guard.cpp: whether Redis projects this database (adopting a Redis without an id); `mark` is
  // Redis's projection mark when it does (idle). idle, held, or redis_failed.
  Outcome guard(Conn& c, std::int64_t& mark);
  void set_error(const std::string& e);

  config::Redis cfg_;
  storage::Writer& writer_;
  std::vector<std::string> queues_;
  Delivered on_delivered_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point flush_until_;
  std::thread thread_;
  // Relay thread only:
  std::unique_ptr<Reader> reader_;
  std::int64_t watermark_ = 0;          // every outbox row up to here is in Redis or held
  std::string mark_key_;                // {prefix}:projected
  std::string db_key_;                  // {prefix}:db: the id of the database Redis projects
  std::int64_t mark_ = 0;               // Redis's projection mark, as far as the relay knows
  bool check_mark_ = true;              // compare the marks before the next pass (reconcile)
  bool lost_ = false;                   // a call or the idle check found Redis's mark behind
  bool reprojecting_ = false;           // a loss episode is under way (logged once)
  std::uint64_t episode_rows_ = 0;      // re-projected in this episode
  std::uint64_t episode_requeued_ = 0;  // and given a new outbox row (their stream refused)
  std::chrono::steady_clock::time_point episode_since_;
  bool episode_swept_ = false;               // a sweep of this episode went through (logged once)
  std::uint64_t episode_swept_entries_ = 0;  // removed or moved by its sweeps
  std::uint64_t episode_moved_ = 0;          // of those, moved to their current stream
  std::set<std::string> episode_swept_streams_;
  // The open interactions a sweep found in the streams (left there, or moved to their current
  // one): the re-projection right after it skips them. Filled and cleared within reconcile().
  std::unordered_set<std::string> present_;
  std::uint64_t episode_present_ = 0;  // rows the re-projection skipped for that
  std::string note_prefix_;            // {prefix}:relay:refused:{random}: (see the script)
  bool persistence_checked_ = false;   // Redis's appendonly looked at (connect)
  std::chrono::milliseconds eviction_every_ = std::chrono::minutes(1);
  std::chrono::steady_clock::time_point eviction_checked_;  // check_eviction's last look
  bool ahead_logged_ = false;  // Redis's mark found past every seq of the database (reconcile)
  bool down_logged_ = false;   // this episode of Redis failing is logged (set_error)
  std::uint64_t passes_ = 0;
  std::int64_t started_ms_ = 0;       // Unix ms: rows older than the relay wait from here
  bool behind_ = false;               // a relay stall is counted, and rows are still late
  std::map<std::string, Held> held_;  // by stream key
  std::mutex unlink_mu_;
  // Markers of operations whose outbox rows are deleted, with the writer's commit count at that
  // delete: a marker goes once that commit is durable (Writer::durable_commits).
  std::deque<std::pair<std::uint64_t, std::string>> unlink_;
  std::mutex requeue_mu_;
  std::vector<Requeue> failed_requeues_;  // their job failed: submitted again (requeue_mu_)
  bool requeue_failing_ = false;          // logged once per episode (requeue_mu_)
  std::chrono::steady_clock::time_point requeue_retry_at_;  // relay thread

  std::atomic<bool> redis_ok_{false};
  std::atomic<bool> may_evict_{false};
  std::atomic<Hold> hold_{Hold::none};                // logged when it changes (guard.cpp)
  std::atomic<std::int64_t> published_watermark_{0};  // watermark_ as of the last pass
  std::atomic<std::int64_t> held_rows_{0};
  std::atomic<std::uint64_t> delivered_{0};
  std::atomic<std::uint64_t> reprojected_{0};
  std::atomic<std::uint64_t> reconciled_{0};
  mutable std::mutex err_mu_;
  std::string redis_error_ = "not connected yet";
  std::string hold_why_;  // err_mu_
  mutable std::mutex held_mu_;
  std::vector<HeldStream> held_view_;  // what held() answers, published by the relay thread
};

}  // namespace sb
