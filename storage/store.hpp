#pragma once
// The Pipeline implementation: the whole data path of one interaction, in store.cpp, top to
// bottom: dedupe -> customer match -> conversation -> rules -> interaction row + outbox row
// (+ cursor) in the writer's group-committed transaction.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/time.hpp"
#include "routing/rules.hpp"
#include "storage/pipeline.hpp"
#include "storage/writer.hpp"

namespace sb::storage {

// How long after its last event a call with no final event is closed as `unknown` (SPEC: 4
// hours). Twilio's and Telnyx's default call time limit is 4 hours as well, counted from the
// answer, which may come without an event of its own (Twilio posts only `completed` unless asked
// for more): 10 minutes more let a call that ran to the limit report its own `completed`.
inline constexpr std::int64_t kStaleCallAfterMs = (4 * 3600 + 10 * 60) * 1000;

class CallLines;

// How a call event merges into the stored call (channels/voice provides the real one).
struct CallFold {
  CallInfo merged;
  std::int64_t order_key = 0;
  bool changed = false;       // anything to write
  bool became_final = false;  // the call ended with this event: queue it now
  bool final = false;         // the merged status is final (ended now or earlier)
  // Final for want of an answer from the legs it dialled, as far as they are known: one may
  // still tell it was answered (held a while where CallEventInput::legs_follow).
  bool awaits_legs = false;
};
using CallFolder =
    std::function<CallFold(const std::optional<CallInfo>& stored, std::int64_t stored_order,
                           const CallInfo& event, std::int64_t event_order)>;

// What one run of the stale-call sweep did.
struct StaleSweep {
  int closed = 0;                   // closed as "unknown" and queued
  std::vector<std::string> failed;  // "<account> <call id>: <why>", one per call not closed
  std::string error;                // the sweep found no calls: the lookup itself failed
};

// What one release of held calls did.
struct HeldRelease {
  int released = 0;  // queued
  int read = 0;      // rows the lookup read (each payload parsed), the ones it passed over too
};

class Store final : public Pipeline {
 public:
  Store(Writer& writer, std::shared_ptr<const Rules> rules);
  ~Store() override;

  void submit(std::vector<Inbound> items, std::optional<CursorUpdate> cursor, Done done) override;
  void submit_call_event(CallEventInput event, Done done) override;
  void submit_provider_statuses(std::vector<ProviderStatus> statuses, Done done) override;
  std::optional<std::string> cursor(const std::string& account, const std::string& scope) override;
  std::optional<std::int64_t> cursor_written_at(const std::string& account,
                                                const std::string& scope) override;
  std::vector<std::string> sent_here(const std::vector<std::string>& ids) override;

  // Closes calls that got no final event within `older_than_ms` of their last event as status
  // "unknown" and queues them (SPEC/issue 5: 4 hours; the daemon: kStaleCallAfterMs), each call
  // in a writer job of its own (storage/call_sweep.cpp).
  // `done` runs on the writer thread once every call found has been tried.
  void close_stale_calls(std::int64_t older_than_ms,
                         std::function<void(const StaleSweep&)> done = nullptr);

  // Queues the calls held back because they ended before anything told their direction (see
  // apply_call_event) and whose first event is older than `older_than_ms`: taken for inbound,
  // the common case for a support line. A call held for its legs (CallFold::awaits_legs) is
  // queued by the second release that finds it (the first passes it over), as it stands then.
  // One writer job per call (storage/call_sweep.cpp); `done` (writer thread) gets what it did.
  void release_held_calls(std::int64_t older_than_ms,
                          std::function<void(const HeldRelease&)> done = nullptr);

  void set_rules(std::shared_ptr<const Rules> rules);  // SIGHUP: swapped whole
  std::shared_ptr<const Rules> rules() const;
  void set_call_folder(CallFolder f) { call_folder_ = std::move(f); }
  // The sweeps' clock (Unix ms; now_ms by default). Tests set one of their own before start()
  // to step through waits of minutes and hours; the writer thread calls it.
  void set_clock(std::function<std::int64_t()> clock) { clock_ = std::move(clock); }
  // How long a held call that could not be queued waits now (0: not waiting), by interaction id.
  // Writer thread, or while the writer is idle (tests).
  std::int64_t release_wait_ms(std::string_view id) const;

  Writer& writer() { return writer_; }

  struct Statements;  // prepared statements of the data path (store.cpp)

 private:
  Statements& statements(Db& db);  // writer thread only; prepared on first use
  // `may_hold`: a call that ends undirected may be held back (CallEventInput::direction_follows);
  // `legs_follow`: one that ends missed by the legs known may be (CallEventInput::legs_follow);
  // both false for the sweeps, which queue a call as it stands.
  IngestOutcome apply_call_event(Db& db, const Inbound& in, std::int64_t order_key,
                                 bool child_leg = false, bool may_hold = false,
                                 bool legs_follow = false);
  // The sweeps (call_sweep.cpp): each call's event applied in a writer job of its own (one call,
  // one transaction: a failure undoes that call alone); `after` runs for each with its error
  // ("" when applied), `last` once after all of them. Writer thread.
  struct SweptCall;
  void apply_each(std::vector<SweptCall> calls,
                  std::function<void(const SweptCall&, const std::string&)> after,
                  std::function<void()> last);

  Writer& writer_;
  mutable std::mutex rules_mu_;
  std::shared_ptr<const Rules> rules_;
  CallFolder call_folder_;
  std::function<std::int64_t()> clock_ = now_ms;  // set_clock
  std::unique_ptr<Statements> st_;                // writer thread only
  std::unique_ptr<CallLines> lines_;              // writer thread only
  // Stale calls the sweep failed to close: interaction id -> when to try again (an hour later,
  // so a bad call costs a log line an hour, not a failing job a minute, and a passing failure
  // such as a full disk heals). Writer thread only.
  std::unordered_map<std::string, std::int64_t> sweep_retry_at_;
  // The same for held calls the release failed to queue: its own, as a held call is pending too
  // and may go stale while it waits (the 4-hour sweep must not skip it for this). Writer thread
  // only; std::less<> for lookups by a column's string_view.
  struct ReleaseRetry {
    std::int64_t at = 0;       // not tried again before (Unix ms)
    std::int64_t wait_ms = 0;  // the last wait, doubled at the next failure
  };
  std::map<std::string, ReleaseRetry, std::less<>> release_retry_at_;
  // Calls held for their legs (CallFold::awaits_legs) that the last release passed over: the
  // next one queues them, so each waits at least one release interval. Writer thread only.
  std::unordered_set<std::string> legs_held_seen_;
  // The reads beside the writer (cursor(), cursor_written_at(), sent_here()): one connection,
  // opened on first use, under read_mu_.
  Db& reader();
  std::mutex read_mu_;
  std::unique_ptr<Db> read_db_;
};

}  // namespace sb::storage
