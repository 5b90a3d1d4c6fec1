#pragma once
// The relay's private pieces, shared by relay.cpp (the path of a row: outbox -> Redis -> delete)
// and held.cpp (streams whose key refuses entries). Not for use outside relay/.
#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "relay/relay.hpp"
#include "storage/sqlite.hpp"

namespace sb {

namespace relay_detail {

constexpr int kBatch = 512;     // outbox rows read per pass
constexpr int kPerScript = 64;  // entries per EVALSHA: one Lua call amortised, Redis never
                                // busy for long (~0.3 ms)
// A re-projection reads at most this many seqs a batch (and kBatch rows), through an index of
// the open interactions (schema 18): those still in the outbox (a backlog Redis never had) cost
// a look each, so a long backlog is read in short steps too.
constexpr std::int64_t kReprojectSpan = 8192;
// Stream entries a sweep reads (XRANGE COUNT), looks up and removes at a time (sweep.cpp).
constexpr int kSweepBatch = 256;
// Back-off of a held stream: its first retry after 1 s, doubling up to 30 s.
constexpr std::chrono::milliseconds kFirstRetry{1000};
constexpr std::chrono::milliseconds kLastRetry{30000};

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

}  // namespace relay_detail

struct Relay::Conn {
  redisContext* ctx = nullptr;
  std::string sha;
  ~Conn() { close(); }
  void close() {
    if (ctx) {
      redisFree(ctx);
      ctx = nullptr;
    }
  }
  relay_detail::Reply cmd(std::initializer_list<std::string_view> args) {
    return cmd(std::vector<std::string_view>(args));
  }
  relay_detail::Reply cmd(const std::vector<std::string_view>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (auto a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    return relay_detail::Reply(static_cast<redisReply*>(
        redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data())));
  }
  // Why `what` failed: the connection's error when no reply came, else Redis's error (or
  // "unexpected reply" for an answer of the wrong shape).
  std::string failure(const relay_detail::Reply& r, const std::string& what) const {
    if (!r) {
      return ctx && ctx->err ? ctx->errstr : "no reply";
    }
    return what + " failed: " +
           (r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "unexpected reply");
  }
};

// The relay's read connection to the database (relay thread only).
struct Relay::Reader {
  storage::Db db;
  storage::Stmt fresh;      // the rows after the watermark, in seq order: the common path
  storage::Stmt held;       // one held stream's rows, from its first held row up to the watermark
  storage::Stmt lost;       // open interactions queued within a seq range whose outbox row is gone
  storage::Stmt projected;  // relay_state.projected: the highest outbox seq deleted
  storage::Stmt oldest;     // the lowest queued_seq of an open interaction (NULL: none)
  storage::Stmt unsequenced;  // an open interaction queued before schema 13 (no queued_seq)?
  storage::Stmt entries;      // the interactions of a batch of stream entries (sweep.cpp)
  storage::Stmt handed_out;   // the highest outbox seq the database ever handed out
  storage::Stmt db_id;        // relay_state.db_id: this database's random id (guard.cpp)
  explicit Reader(const std::string& path);
};

// One outbox row on its way to its stream.
struct Relay::Row {
  std::int64_t seq;
  std::string id, queue, priority;  // the interaction id also keys its once-only marker
  std::string stream;               // {prefix}:q:{queue}:{priority}
  enum class Fate {
    unsent,   // not tried: Redis as a whole failed first; read again next pass
    added,    // in its stream (now, or by an earlier attempt: its marker said so)
    refused,  // its stream refused it, or an earlier row of its stream: held in the outbox
  } fate = Fate::unsent;
  std::string error;  // Redis's answer, when refused
  // Sent at or below the mark its call expected: Redis's mark passed this seq before the entry
  // went in (a held row, or one left from before a loss), so a snapshot taken in between has the
  // mark without the entry. Once added it gets a new outbox row above the mark (requeue) instead
  // of being deleted: the mark then covers it only once the entry is in Redis.
  bool below = false;
  // interactions.queue_round: how often it was put back to work after it was finished (schema
  // 29). Each round is a projection of its own, with a marker of its own.
  std::int64_t round = 0;
  // Its once-only marker: {prefix}:relayed:{id}, and :{round} after the first round.
  std::string marker(const std::string& prefix) const {
    return prefix + ":relayed:" + id + (round == 0 ? "" : ":" + std::to_string(round));
  }
};

// An interaction given a new outbox row, after every seq handed out so far, its queued_seq
// following: one Redis refused while re-projecting it (old = 0, it has no row), or one added
// below the mark (its row `old` goes). The common path sends the new row: the once-only marker
// skips one already in Redis, and the mark rises past it.
struct Relay::Requeue {
  std::int64_t old;
  std::string id;
};

// The rows of one pass and the EVALSHA commands that carry those sent (kPerScript rows each).
struct Relay::Batch {
  std::vector<Row> rows;              // in seq order
  std::int64_t first_created_ms = 0;  // when the first row was written (Unix ms)
  std::vector<std::size_t> sent;      // indexes into rows, in the commands' order
  std::vector<std::string> commands;
  std::vector<std::int64_t> lasts;  // per command: the seq of its last row (Redis's new mark)
};

// The rows Redis took: deleted from the outbox in one writer job, by seq ranges (the common
// path's usual case is one range), their markers unlinked once that delete is durable.
struct Relay::Taken {
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges;   // inclusive
  std::vector<std::string> markers;                            // {prefix}:relayed:{id}
  std::vector<std::pair<std::string, std::size_t>> per_queue;  // entries added, for wake-ups
  std::vector<Requeue> requeued;  // rows added below the mark: a new outbox row each
  // `next_to_last`: no outbox row lies between the last row taken and this one.
  void add(const Row& r, bool next_to_last, const std::string& prefix);
  // A row Redis took at or below the mark (Row::below): its marker stays until the new row's
  // delete, which counts it as delivered.
  void add_below(const Row& r);
  std::size_t rows() const { return markers.size() + requeued.size(); }
};

}  // namespace sb
