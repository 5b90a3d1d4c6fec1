#pragma once
// The queue operations of one agent request, as awaitables over RedisExec and the scripts of
// scripts.cpp. Errors are values: `error` is non-empty when Redis failed (the caller answers
// 503); ownership outcomes are in `status`.
#include <array>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "agents/redis_exec.hpp"
#include "agents/scripts.hpp"

namespace sb::agents {

struct ClaimResult {
  std::string error;
  bool found = false;
  std::string stream, entry_id, interaction_id, priority, payload;
  std::string kind;  // the entry's `kind` field (call, email, ...); "" when it has none
  std::int64_t deliveries = 0;
  // A new entry (XREADGROUP >), never delivered before: not a redelivery, a released item or an
  // entry taken back after a lost reply, whose ids and delivery counts are older than the claim.
  bool fresh = false;
  // Dead letters to record, dead-lettered by this claim or by an earlier one whose reply was
  // lost. Once recorded, forget_dead(them).
  std::vector<DeadLetter> dead;
  // The dead-letter stream's error when it refused an entry past max_deliveries (its key is not
  // a stream): that entry stays pending for its last holder, untouched. "" when none.
  std::string dead_refused;
};

// held_by lists at most this many entries per priority (GET /v1/agent/claims says "truncated").
inline constexpr std::size_t kHeldListed = 100;

// An entry one consumer holds (held_by).
struct HeldEntry {
  std::string stream, entry_id, interaction_id;
  std::int64_t deliveries = 0;
  std::int64_t idle_ms = 0;  // since its claim (or its last extend)
};
struct HeldList {
  std::string error;
  std::vector<HeldEntry> entries;  // most urgent first, oldest first within a priority
  bool truncated = false;          // a priority held more than kHeldListed: the oldest are listed
};

// held: done; not_held: nobody holds it; other: `holder` holds it; repeated: a retried
// transfer that already happened; refused: the transfer's target stream refused the entry
// (`refusal` says why), nothing moved; foreign: the entry is in `queue`, which is not one of the
// agent's (nothing done, and who holds it is not told); gone: the entry's `stream` was deleted or
// replaced by a key of another type (`refusal` is Redis's error), and the entry with it, so
// nobody holds it.
enum class Hold { held, not_held, other, repeated, refused, foreign, gone };

// The queues an agent may reach, for the operations on one entry: its `queues`, or nullptr for
// the daemon's own calls (any queue).
using QueueList = const std::vector<std::string>*;

struct FinishResult {
  std::string error;
  Hold status = Hold::not_held;
  std::string holder;
  std::string queue;  // foreign
  std::string refusal;
  std::string stream, entry_id;  // the old entry
  std::string new_entry_id;      // transfer
  // transfer: the note Redis keeps in {prefix}:transfer-unrecorded until the record is committed
  // (forget_transfers), and an earlier transfer's note it replaced ("" when none); repeated: the
  // note still kept for that transfer, or "".
  std::string note, earlier_note;
  // transfer out of the dead letters: the dead-letter entry was gone from its stream (trimmed),
  // and the new entry was rebuilt from the database's fields (EntryOrigin).
  bool rebuilt = false;
};

// An interaction's entry fields that only the database has (the relay's projection, SPEC section
// 4), besides its id, priority and payload: what a dead letter is rebuilt from when its stream
// lost the entry.
struct EntryOrigin {
  std::string conversation_id, customer_id, channel, kind;
};

// The notes of {prefix}:transfer-unrecorded: (interaction id, note).
struct UnrecordedTransfers {
  std::string error;
  std::vector<std::pair<std::string, std::string>> notes;
};

// The stats script counts a stream's waiting entries by reading at most about twice this many
// of its entries (kStatsBody in scripts.cpp): a count that does not finish within it is Redis's
// lag, or without one a lower bound (exact = false).
inline constexpr int kStatsCountLimit = 500;

struct PriorityStats {
  std::int64_t waiting = 0, claimed = 0;
  std::int64_t oldest_ms = -1;  // Unix ms of the oldest waiting entry, -1 when none
  bool exact = true;            // false: waiting is a lower bound (at least kStatsCountLimit)
};
struct QueueStats {
  std::string error;
  std::array<PriorityStats, 4> by_priority;  // urgent, high, normal, low
  std::int64_t dead = 0;
};

class QueueOps {
 public:
  QueueOps(RedisExec& redis, std::string prefix, std::chrono::milliseconds claim_timeout,
           int max_deliveries);

  boost::asio::awaitable<ClaimResult> claim(const std::string& queue, const std::string& agent);
  // `queues`: the entry must sit in one of them (else Hold::foreign), checked in the same script
  // run as the operation.
  boost::asio::awaitable<FinishResult> ack(const std::string& interaction_id,
                                           const std::string& agent, QueueList queues);
  // For someone else: `agent`'s own claims pass it over for claim_timeout (scripts.cpp kClaim).
  boost::asio::awaitable<FinishResult> release(const std::string& interaction_id,
                                               const std::string& agent, QueueList queues);
  // An item a claim took for `agent` that no agent saw (a reload came while the claim ran):
  // back to its queue at once for anyone, `agent` included (the same agent with a new token).
  boost::asio::awaitable<FinishResult> give_back(const std::string& interaction_id,
                                                 const std::string& agent);
  // `queue` is the target, which need not be among `queues` (SPEC's example moves an item to a
  // queue its agent does not work). `at`: when it was asked for (Unix ms), kept in its note.
  // With `dead` (the item's dead letter; the caller checked its queue is the agent's), the entry
  // is taken out of the dead letters instead of from the agent's hold: Hold::held then means
  // moved (`stream` is the dead-letter stream), Hold::not_held that the dead letter is not there
  // (another transfer took it out). With `origin` too, a dead letter whose entry its stream lost
  // (MAXLEN, an operator's XDEL) and that no transfer took out is rebuilt from it (`rebuilt`).
  boost::asio::awaitable<FinishResult> transfer(
      const std::string& interaction_id, const std::string& agent, QueueList queues,
      const std::string& queue, const std::string& priority, const std::string& payload,
      std::int64_t at, const DeadLetter* dead = nullptr, const EntryOrigin* origin = nullptr);
  // The transfers Redis did whose record is not committed yet (their replies may have been lost).
  boost::asio::awaitable<UnrecordedTransfers> unrecorded_transfers();
  // These notes are recorded: each is deleted unless a later transfer replaced it.
  void forget_transfers(const std::vector<std::pair<std::string, std::string>>& notes);
  // The entries `agent` holds in `queue` (after a claim whose reply was lost).
  boost::asio::awaitable<HeldList> held_by(const std::string& queue, const std::string& agent);
  // Hands `e` to `agent`'s claim when it still holds it with the same delivery count; found is
  // false otherwise. Its claim_timeout starts again.
  boost::asio::awaitable<ClaimResult> take_back(const HeldEntry& e, const std::string& agent);
  // When `agent` holds the entry of `interaction_id`: its claim_timeout starts again (Hold::held).
  boost::asio::awaitable<FinishResult> extend(const std::string& interaction_id,
                                              const std::string& agent, QueueList queues);
  // Whether `agent` holds the entry of `interaction_id` (for reply).
  boost::asio::awaitable<FinishResult> holds(const std::string& interaction_id,
                                             const std::string& agent, QueueList queues);
  boost::asio::awaitable<QueueStats> stats(const std::string& queue);
  // The daemon's periodic pass over `queue` (Service::sweep_queues): the entries idle past
  // claim_timeout that were delivered max_deliveries times go to the dead letters (`dead`,
  // `dead_refused` as for a claim), without a claim, whose sweep does it otherwise. Nothing is
  // asked of Redis when a claim or a pass swept the queue within sweep_every().
  boost::asio::awaitable<ClaimResult> sweep(const std::string& queue);
  std::chrono::milliseconds sweep_every() const { return sweep_every_; }
  // The next claim from `queue` looks for released entries at once (a release whose reply was
  // lost did run; a claim passed over its own agent's release).
  void released_in(const std::string& queue) { next_sweep_[queue] = {}; }
  // The dead letters of ClaimResult::dead are recorded: not to be reported again.
  void forget_dead(const std::vector<DeadLetter>& dead);

  std::string stream(const std::string& queue, const std::string& priority) const {
    return prefix_ + ":q:" + queue + ":" + priority;
  }
  std::string dead_stream(const std::string& queue) const { return prefix_ + ":dead:" + queue; }
  // The queue of a dead-letter stream key "{prefix}:dead:{queue}"; "" for another key.
  std::string queue_of_dead_stream(const std::string& stream) const;
  // The queue of a stream key "{prefix}:q:{queue}:{priority}"; "" for another key.
  std::string queue_of_stream(const std::string& stream) const;
  std::chrono::milliseconds claim_timeout() const { return claim_timeout_; }

 private:
  // release and give_back: `mode` is the script's.
  boost::asio::awaitable<FinishResult> park(const std::string& interaction_id,
                                            const std::string& agent, QueueList queues,
                                            const char* mode);
  boost::asio::awaitable<FinishResult> finish(const std::string& interaction_id,
                                              const std::string& agent, QueueList queues,
                                              const char* mode);
  std::vector<std::string> stat_keys(const std::string& queue) const;
  std::vector<std::string> claim_args(bool sweep, const std::string& queue) const;
  // Released entries look as if delivered ten years ago (kReleaseIdleMs), whatever claim_timeout
  // was when they were released: the next claim's look for idle entries finds them, before and
  // after a restart that changed claim_timeout. Their idle time past this is the time since the
  // release.
  static std::chrono::milliseconds release_idle() {
    return std::chrono::milliseconds(kReleaseIdleMs);
  }
  std::vector<std::string> claim_keys(const std::string& queue) const;
  // Whether the next script run on `queue` parks an earlier version's released entries again
  // (kHelpers' repark): until one run said it left none. io thread only.
  const char* repark_arg(const std::string& queue) const {
    return reparked_.contains(queue) ? "0" : "1";
  }
  void repark_reply(const std::string& queue, const RValue& done) {
    if (done.integer == 1) {
      reparked_.insert(queue);
    }
  }

  RedisExec& redis_;
  std::string prefix_;
  std::chrono::milliseconds claim_timeout_;
  int max_deliveries_;
  // When a claim next looks for entries idle past claim_timeout (released or timed out), per
  // queue. Looking costs an XPENDING per non-empty stream, and a timeout is seconds long: once
  // per sweep_every_ is enough; a release makes the next claim look at once. io thread only.
  std::chrono::milliseconds sweep_every_;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> next_sweep_;
  // When a claim or a periodic pass (sweep) last looked, per queue: a pass comes no sooner than
  // sweep_every_ after either. io thread only.
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> last_sweep_;
  // The queues whose earlier-version releases are all parked again (repark_arg). io thread only.
  std::unordered_set<std::string> reparked_;
  // Claims issued in this turn of the io loop, per queue: one script run serves them all.
  struct PendingClaim {
    std::string agent;
    std::function<void(ClaimResult)> done;
  };
  void send_claims(const std::string& queue);
  std::unordered_map<std::string, std::vector<PendingClaim>> claims_;
  // Acks, releases and checks issued in this turn of the io loop.
  struct PendingFinish {
    std::string id, agent, mode, queues;
    std::function<void(FinishResult)> done;
  };
  void send_finishes();
  std::vector<PendingFinish> finishes_;
};

// Parses the millisecond part of a stream entry id ("1700000000000-0").
std::int64_t entry_ms(const std::string& id);

}  // namespace sb::agents
