#pragma once
// The Lua scripts behind the agent operations. Each multi-step operation is one script, so it
// is atomic in Redis: 50 agents claiming at once can never take the same entry, and an entry is
// never both transferred and acknowledged.
//
// Bookkeeping beside the SPEC keys: `{prefix}:held` is a hash interaction id -> "<stream> <entry
// id>" of the entries handed out by `claim`, so that ack/release/transfer can find an entry by
// interaction id. Who holds an entry is always read from the consumer group's pending list
// (XPENDING), the same truth a plain Redis client sees; the hash is only an index.
// A released entry is XCLAIMed to the pseudo-consumer `_released:<agent>` (the agent who
// released it) with the idle time kReleaseIdleMs, past any claim_timeout, so the next claim's
// XPENDING IDLE / XCLAIM takes it at once, in its original position, unless it is that agent's:
// its own claims pass it over until claim_timeout has passed since the release (SPEC: back to
// its queue "for someone else"). It stays in the hash, so that a call on it until then is told
// it was released (a retried release whose reply was lost is answered 200:
// Service::released_before). Versions before named no releaser: an entry they left with the bare
// `_released` is anyone's at once. Versions before also parked with claim_timeout + 1 s, which a
// restart that raised claim_timeout left below it: hidden from every claim, and counted as
// claimed, until it caught up. The first script run on a queue after a start parks such entries
// again the current way (kHelpers' repark).
// A claim whose reply was lost leaves its entry pending for the agent: kHeldBy lists what an
// agent holds in a queue, kTakeBack hands one to its next claim (Service::lost_claim).
// `{prefix}:dead-unrecorded` is a hash interaction id -> queue of the entries a claim moved to a
// dead-letter stream, until the daemon has recorded them on the interaction: the claim's reply,
// which reports them, can be lost with the connection after the script ran.
// `{prefix}:transfer-unrecorded` is a hash interaction id -> JSON note of a transfer (agent,
// target queue and priority, time, the new entry id, the old stream) until the daemon has
// recorded it on the interaction: the transfer's reply can be lost the same way, and an agent
// answered 503 may never retry. The daemon's periodic pass records what it finds there
// (Service::recover_transfers); the new entry id makes the record idempotent.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sb::agents {

enum Script {
  kClaim = 0,
  kFinish = 1,
  kTransfer = 2,
  kStats = 3,
  kEnsureGroups = 4,
  kForgetDead = 5,
  kHeldBy = 6,
  kTakeBack = 7,
  kForgetTransfers = 8,
  kUnrecordedTransfers = 9
};

// In Script order, for RedisExec.
std::vector<std::string> lua_scripts();

// An entry of a dead-letter stream {prefix}:dead:{queue}: the interaction, its queue, and the
// entry's id ("" when not known: one buried by an earlier version).
struct DeadLetter {
  std::string interaction_id, queue, entry_id;
};

inline constexpr const char* kReleasedConsumer = "_released";

// The idle time (XCLAIM IDLE, ms) a release gives its entry: ten years, fixed. A release marked
// with claim_timeout (+ 1 s, as before) depended on the claim_timeout in force when it was made:
// after a restart that raised it, the entry was idle less than the new one, so no claim took it.
// Redis stores the delivery time now - IDLE and sets one before 1970 to now (xclaimCommand), so
// this must stay below the Unix time in ms, as ten years does. Any claim_timeout below it sees a
// released entry as idle past claim_timeout.
inline constexpr std::int64_t kReleaseIdleMs = 10LL * 365 * 24 * 3600 * 1000;
// A released consumer's entry idle at least this long was parked with kReleaseIdleMs; one idle
// less was parked by an earlier version (claim_timeout + 1 s). Half of it: Redis's idle time is
// wall-clock, and a clock set back makes it shorter; no real claim is held that long.
inline constexpr std::int64_t kReleasedIdleMinMs = kReleaseIdleMs / 2;

// The consumer that holds what `agent` released: "_released:<agent>".
inline std::string released_by(const std::string& agent) {
  return std::string(kReleasedConsumer) + ':' + agent;
}

// Whether `consumer` is one that holds released entries: `_released:<agent>`, or the bare
// `_released` of earlier versions (entries still pending from before an upgrade).
inline bool is_released(std::string_view consumer) {
  std::string_view base = kReleasedConsumer;
  return consumer.starts_with(base) &&
         (consumer.size() == base.size() || consumer[base.size()] == ':');
}

}  // namespace sb::agents
