// The 4-hour sweep (issue 5): a call with no final event within 4 hours (and a margin) of its
// last event is closed as "unknown" and queued. Each stale call is closed by a writer job of its
// own, so the transaction boundary is the call: when one cannot be closed (its stored payload
// unreadable, a constraint failing), the writer's isolated pass (a savepoint per job,
// storage/writer.cpp) undoes that job alone and commits the others; the failure is logged with the
// call id and the call is tried again an hour later. A single job for all of them failed whole, and
// the same way every minute.
#include <memory>

#include "core/log.hpp"
#include "storage/call_parties.hpp"
#include "storage/call_payload.hpp"
#include "storage/store.hpp"

namespace sb::storage {

// A call a sweep changes: the event applied to it in a writer job of its own.
struct Store::SweptCall {
  std::string id;  // interaction id
  Inbound event;   // what changes it: the "unknown" status, or its parties with no status
  std::int64_t order_key = 0;
};

namespace {

constexpr std::size_t kMaxPerSweep = 1000;
constexpr std::int64_t kRetryAfterMs = 3600 * 1000;
constexpr std::int64_t kFirstReleaseRetryMs = 60 * 1000;
constexpr std::int64_t kDayMs = 24 * 3600 * 1000;

// A sweep's event for the pending call of the row `q` is on: its columns 1-3 are channel,
// account and external_id (both sweeps select id, channel, account, external_id, order_key).
Inbound call_event_of(Stmt& q, CallInfo call) {
  Inbound in;
  in.channel = q.text(1);
  in.account = q.text(2);
  in.external_id = q.text(3);
  in.kind = "call";
  in.call = std::move(call);
  return in;
}

}  // namespace

void Store::apply_each(std::vector<SweptCall> calls,
                       std::function<void(const SweptCall&, const std::string&)> after,
                       std::function<void()> last) {
  if (calls.empty()) {
    last();
    return;
  }
  auto left = std::make_shared<std::size_t>(calls.size());
  auto each = std::make_shared<decltype(after)>(std::move(after));
  auto end = std::make_shared<decltype(last)>(std::move(last));
  for (auto& c : calls) {
    auto call = std::make_shared<SweptCall>(std::move(c));
    writer_.submit(Job{[this, call](Db& db) { apply_call_event(db, call->event, call->order_key); },
                       [call, left, each, end](const std::string& why) {
                         (*each)(*call, why);
                         if (--*left == 0) {
                           (*end)();
                         }
                       }});
  }
}

void Store::close_stale_calls(std::int64_t older_than_ms,
                              std::function<void(const StaleSweep&)> done) {
  auto stale = std::make_shared<std::vector<SweptCall>>();
  auto find = [this, older_than_ms, stale](Db& db) {
    stale->clear();       // a job may run twice (Writer::run_batch)
    auto q = db.prepare(  // served by the partial index interactions_pending_calls
        "SELECT id, channel, account, external_id, order_key FROM interactions "
        "WHERE state = 'pending_call' AND last_event_at < ?1");
    std::int64_t now = clock_();
    q.bind(1, now - older_than_ms);
    // Calls whose hour is over are tried again; so an entry of a call that a real final event
    // closed meanwhile goes too, instead of staying for good.
    std::erase_if(sweep_retry_at_, [now](const auto& e) { return e.second <= now; });
    while (stale->size() < kMaxPerSweep && q.step()) {
      std::string id = q.text(0);
      if (sweep_retry_at_.contains(id)) {
        continue;  // failed within the hour
      }
      stale->push_back(
          SweptCall{std::move(id), call_event_of(q, CallInfo{"unknown", "", -1, ""}), q.int64(4)});
    }
  };
  // Runs on the writer thread after the lookup's commit; the close jobs go to the back of the
  // queue, each with its own outcome.
  auto close_each = [this, stale, done = std::move(done)](const std::string& error) {
    if (!error.empty()) {
      if (done) {
        done(StaleSweep{0, {}, error});
      }
      return;
    }
    auto result = std::make_shared<StaleSweep>();
    apply_each(
        std::move(*stale),
        [this, result](const SweptCall& call, const std::string& why) {
          if (why.empty()) {
            ++result->closed;
            return;
          }
          sweep_retry_at_[call.id] = clock_() + kRetryAfterMs;
          const Inbound& in = call.event;
          result->failed.push_back(in.account + " " + in.external_id + ": " + why);
          logger("storage")->error(
              "[{}:{}] call {} (interaction {}) has had no final event for 4 hours and "
              "cannot be closed: {}; left open, tried again in an hour",
              in.channel, in.account, in.external_id, call.id, why);
        },
        [result, done] {
          if (done) {
            done(*result);
          }
        });
  };
  writer_.submit(Job{std::move(find), std::move(close_each)});
}

void Store::release_held_calls(std::int64_t older_than_ms,
                               std::function<void(const HeldRelease&)> done) {
  auto held = std::make_shared<std::vector<SweptCall>>();
  auto read = std::make_shared<int>(0);
  // The calls held for their legs this release passes over (legs_held_seen_ once committed).
  auto passed = std::make_shared<std::unordered_set<std::string>>();
  auto find = [this, older_than_ms, held, read, passed](Db& db) {
    held->clear();  // a job may run twice (Writer::run_batch)
    passed->clear();
    *read = 0;
    // Only the held calls (partial index interactions_held_calls): not the pending calls still
    // waiting for a final event, which may be many, each a payload to parse.
    auto q = db.prepare(
        "SELECT id, channel, account, external_id, order_key, payload FROM interactions "
        "WHERE state = 'pending_call' AND held = 1 AND received_at <= ?1");
    std::int64_t now = clock_();
    q.bind(1, now - older_than_ms);
    // One that could not be queued waits a minute, then twice as long after each failure, up
    // to an hour (a passing failure, a moment of full disk, must not make every missed call an
    // hour late). A waiting one does not count toward kMaxPerSweep: the oldest come first, and
    // a thousand that fail would otherwise hold back every call held after them, for good.
    // Entries stay until the call is queued (they carry its last wait), or a day has passed.
    std::erase_if(release_retry_at_, [now](const auto& e) { return e.second.at + kDayMs <= now; });
    while (held->size() < kMaxPerSweep && q.step()) {
      if (auto it = release_retry_at_.find(q.text_view(0));
          it != release_retry_at_.end() && it->second.at > now) {
        continue;  // failed, and its wait is not over
      }
      ++*read;
      auto stored = read_call_payload(q.text_view(5));
      // Held: ended (final status) but still pending. An unreadable payload is the 4-hour
      // sweep's to report.
      if (!stored || !call_folder_) {
        continue;
      }
      CallFold fold = call_folder_(stored->call, q.int64(4), CallInfo{}, q.int64(4));
      if (!fold.final) {
        continue;
      }
      std::string id = q.text(0);
      // Held for its legs (Store::apply_call_event): a leg's late answer has had one release
      // interval at least to come before it is queued as it stands.
      if (fold.awaits_legs && !legs_held_seen_.contains(id)) {
        passed->insert(std::move(id));
        continue;
      }
      SweptCall c{std::move(id), call_event_of(q, CallInfo{}), q.int64(4)};
      RawParties parties = stored_parties(q.text_view(5));
      c.event.from = std::move(parties.from);
      if (parties.to) {
        c.event.to.push_back(std::move(*parties.to));
      }
      held->push_back(std::move(c));
    }
  };
  auto release_each = [this, held, read, passed, done = std::move(done)](const std::string& error) {
    if (!error.empty()) {
      if (done) {
        done(HeldRelease{});
      }
      return;
    }
    legs_held_seen_ = std::move(*passed);
    auto result = std::make_shared<HeldRelease>(HeldRelease{0, *read});
    apply_each(
        std::move(*held),
        [this, result](const SweptCall& call, const std::string& why) {
          if (why.empty()) {
            ++result->released;
            release_retry_at_.erase(call.id);
            return;
          }
          auto& r = release_retry_at_[call.id];
          r.wait_ms =
              r.wait_ms == 0 ? kFirstReleaseRetryMs : std::min(r.wait_ms * 2, kRetryAfterMs);
          r.at = clock_() + r.wait_ms;
          const Inbound& in = call.event;
          logger("storage")->error(
              "[{}:{}] held call {} (interaction {}) cannot be queued: {}; left held, tried again "
              "in {} s",
              in.channel, in.account, in.external_id, call.id, why, r.wait_ms / 1000);
        },
        [result, done] {
          if (done) {
            done(*result);
          }
        });
  };
  writer_.submit(Job{std::move(find), std::move(release_each)});
}

std::int64_t Store::release_wait_ms(std::string_view id) const {
  auto it = release_retry_at_.find(id);
  return it == release_retry_at_.end() ? 0 : it->second.wait_ms;
}

}  // namespace sb::storage
