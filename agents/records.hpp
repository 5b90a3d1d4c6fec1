#pragma once
// What the agent API reads from and writes to the database. Writes go through the single
// writer (events, interaction state, transfers, replies with their send job); reads use a
// read connection of their own, on the io thread (WAL readers never block the writer).
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agents/scripts.hpp"
#include "storage/sqlite.hpp"
#include "storage/writer.hpp"

namespace sb::agents {

struct InteractionRow {
  std::string id, channel, account, kind, direction, external_id, conversation_id, customer_id,
      queue, priority, state, payload;
};

// An interaction's state and its latest claim event (actor empty when it was never claimed).
struct LastClaim {
  std::string state, actor;
  std::int64_t deliveries = -1;  // the claim's delivery count
};

// A reply an agent made under an Idempotency-Key: what a retry with that key is answered.
struct KeyedReply {
  std::string outbound_id, text, send_state;
};

// What Records::reply did: `error` (nothing stored), or the outbound interaction of this reply:
// the new one, or (`repeated`) the one stored earlier under the same key.
struct ReplyStored {
  std::string error, outbound_id;
  bool repeated = false;
};

// A transfer Redis did, as recorded on the interaction.
struct Transfer {
  std::string actor, queue, priority;
  // The new stream entry: which transfer this is, so that it is recorded once however often it
  // is reported (a retry of a lost reply, the periodic pass, a replaced note).
  std::string entry_id;
  std::int64_t at = 0;                    // when it was asked for (Unix ms); 0: now
  std::string from_queue, from_priority;  // "": the row's as it is (the route read it)
  // The dead-letter stream it was taken out of ("" for a transfer of a held item): the item is
  // put back to work, its state `queued` again (unless claimed since, for a late record).
  std::string from_dead;
  // Out of the dead letters, its entry rebuilt from the database: the dead-letter stream had lost
  // it (trimmed).
  bool rebuilt = false;
};

struct SendJob {
  std::string interaction_id, parent_id, channel, account, conversation_id, text, parent_payload;
  std::int64_t attempts = 0;
  bool maybe_sent = false;  // an earlier attempt had an unknown outcome (sends.maybe_sent)
  // When an attempt of it was marked as started (sends.attempt_started_at, Unix ms) and no
  // result of that attempt is recorded; 0: none.
  std::int64_t started_at = 0;
  // When the first attempt whose outcome was unknown started (sends.uncertain_since, Unix ms);
  // 0: none, or not known (a send of an older build).
  std::int64_t uncertain_since = 0;
  // The id fixed when the reply was stored (sends.planned_id; "" none), and our earlier replies
  // the parent names with the ids they went out with (OutboundMessage::earlier_ids).
  std::string planned_id;
  std::map<std::string, std::string> earlier_ids;
  std::int64_t created_at = 0;  // when the reply was stored (sends.created_at, Unix ms)
};

// The open interactions (queued or claimed) the database records in one queue.
struct OpenItems {
  std::int64_t items = 0;
  std::int64_t held = 0;  // claimed
};
// Every queue that holds open interactions, by name. One pass over the partial index of the open
// interactions (interactions_by_queued_seq, WHERE state IN ('queued', 'claimed')) with a row
// lookup each: its cost follows the items waiting and held, not the interactions ever stored.
// Throws storage::Error.
std::map<std::string, OpenItems> open_items_by_queue(storage::Db& db);
extern const char* const kOpenItemsQuery;  // its query (a test reads its plan)

// Runs `fn` on the writer thread in its group-committed transaction; resumes the awaiting
// coroutine once committed with "" or the error.
boost::asio::awaitable<std::string> write(storage::Writer& w, std::function<void(storage::Db&)> fn);

// The WHERE of pending sends due later than the send loop's cap (Records::cap_send_waits,
// ?1 latest, ?2 latest_paused): a row waiting for its account's pause (account_paused) may be due
// as late as `latest_paused`
// (>= `latest`). The first condition alone reads the range of the index sends_due(state,
// next_attempt_at) past `latest`, which holds only rows to cap or paused ones: every pass of
// the send loop asks, and a scan of every pending row would grow with the replies waiting.
inline constexpr const char* kSendsDueTooLate =
    "state='pending' AND next_attempt_at > ?1 AND "
    "next_attempt_at > CASE WHEN account_paused THEN ?2 ELSE ?1 END";

class Records {
 public:
  Records(boost::asio::io_context& io, storage::Writer& writer, const std::string& path);

  // io thread only
  std::optional<InteractionRow> find(const std::string& id);
  // The interaction's payload as stored now (nullopt: no such interaction). One indexed read
  // with a statement kept prepared: the claim of a call asks it (agents/claim_route.cpp).
  std::optional<std::string> payload(const std::string& id);
  // The interaction JSON with its events and (outbound) send state merged in.
  std::string decorate(const std::string& payload);
  std::optional<LastClaim> last_claim(const std::string& id);  // nullopt: no such interaction
  // Who finished the interaction (the actor of its latest finish event) while it is `done`; ""
  // when it is not done (never finished, or put back to work since).
  std::string finished_by(const std::string& id);
  // The reply `agent` made to `parent_id` under Idempotency-Key `key`, if committed within the
  // last kReplyKeyRetentionMs (agents/reply_keys.hpp): an older key answers nothing.
  std::optional<KeyedReply> keyed_reply(const std::string& parent_id, const std::string& agent,
                                        const std::string& key);
  // Resumes once every event recorded before the call is committed (a barrier: the writer runs
  // jobs in order), so that reads see them. "" or the error.
  boost::asio::awaitable<std::string> settled();
  // Pending sends due by `now`, the earliest first, leaving out the rows in `busy` (with their
  // senders) and the accounts ("<channel>\n<account>") in `full` (at their share of sends in
  // flight): those would otherwise fill the first `limit` rows and hold up every other account.
  // A send stored after another pending one of its conversation that has been tried (waits for
  // a retry or a pause of its account) or whose marked attempt is out is not due until that one
  // is done: the customer reads the answers in order.
  std::vector<SendJob> due_sends(std::int64_t now, int limit, const std::vector<std::string>& busy,
                                 const std::vector<std::string>& full);
  // When the next of those is due (the same rows left out).
  std::optional<std::int64_t> next_send_at(const std::vector<std::string>& busy,
                                           const std::vector<std::string>& full);

  // Fire-and-forget (the queue state in Redis is the truth; this is the record): an event on
  // the interaction and, when `state` is not empty, its new state. io thread only: events are
  // gathered and handed to the writer as one job per io turn (thousands of claims and acks a
  // second cost a few jobs, not thousands); jobs submitted directly flush them first, so the
  // events keep their order.
  // A batch the database refuses (a full disk, an I/O error) is kept and written again, with a
  // back-off, until it commits (Redis no longer holds what it records: an acked item's finish
  // would be lost for good). Order holds: the batches after it (already with the writer, or
  // gathered since) wait behind it and go with it, and the jobs submitted directly meanwhile
  // (transfer, reply, settled) fail, as on the failing disk, rather than commit ahead of it.
  // At most kMaxHeldEvents wait: past that the oldest are dropped, logged at error.
  void event(const std::string& interaction_id, const std::string& actor, const std::string& type,
             const std::string& detail_json, const std::string& state = "");
  // Dead letters a claim reported, with the rest of this turn's events (the event's detail names
  // the dead-letter entry when known, for a transfer out of the dead letters: dead_letter_of);
  // `recorded` runs on the io thread once they are committed (not when the write failed).
  void dead_lettered(const std::vector<DeadLetter>& dead, std::function<void()> recorded);
  // The dead letter of an interaction whose state is `dead`, from its latest dead_letter event:
  // its queue (the row's when the event names none) and entry id ("" when not named).
  DeadLetter dead_letter_of(const InteractionRow& row);
  // When the interaction's latest event is a transfer out of the dead letters: its actor, target
  // queue and the dead-letter queue it came from (an agent who raced for it is told so).
  struct BackToWork {
    std::string actor, queue, from_queue;
  };
  std::optional<BackToWork> back_to_work(const std::string& id);
  // Transfer: new queue and priority on the interaction (also in its payload, edited as it is
  // at commit), the conversation's sticky queue follows, and the event (its detail names the new
  // entry). Recorded once: nothing is written when a transfer event names the same entry.
  // `late`: a transfer Redis did earlier whose reply was lost (a retry of it, or the periodic
  // pass found its note): the state becomes "queued" only while nobody claimed it since, and
  // the queue, priority and sticky queue are left as they are when a later transfer is
  // recorded already (only the event is added then). `done` runs on the io thread after the
  // commit, with "" or the error.
  void transferred(const InteractionRow& row, const Transfer& t, bool late,
                   std::function<void(const std::string&)> done = nullptr);
  // Reply: the outbound interaction, its send job and the event on the parent, in one
  // transaction; resumes once committed. With an `idempotency_key` (else ""), the send job keeps
  // it, and when `actor` already replied to `parent` under that key (within the retention)
  // nothing is written: the result names that reply, `repeated`. An expired key is taken from
  // the old reply's row for this one. (Checked in the writer's transaction, so that two
  // attempts racing past the route's own check still store one reply.) `thread_keys`
  // (Sender::planned_thread_keys) point at the parent's conversation from the same commit:
  // the reply may reach the customer before its result is recorded, or without it.
  // `planned_id` (Sender::planned_id) is kept on the send (sends.planned_id): every attempt
  // goes out with it (SendJob::planned_id).
  boost::asio::awaitable<ReplyStored> reply(const InteractionRow& parent, const std::string& actor,
                                            const std::string& outbound_id,
                                            const std::string& outbound_payload,
                                            const std::string& idempotency_key,
                                            const std::vector<std::string>& thread_keys = {},
                                            const std::string& planned_id = "");
  // The result of one send attempt, with the sender's thread keys pointed at the outbound
  // interaction's conversation; `maybe_sent` marks the send for good (an attempt's outcome was
  // unknown), false leaves the mark as it is. The attempt's started mark (send_started) goes.
  // `account_paused`: next_attempt_at is the end of a pause of the whole account (see
  // cap_send_waits). `done` runs on the writer thread after the commit, with "" or the error
  // (nothing of it was written then).
  void send_result(const std::string& interaction_id, const std::string& state,
                   std::int64_t attempts, std::int64_t next_attempt_at, const std::string& error,
                   const std::string& provider_id, bool maybe_sent, bool account_paused,
                   std::vector<std::string> thread_keys,
                   std::function<void(const std::string&)> done);

  // Marks an attempt of the send as started (Sender::marks_attempts) before its request goes
  // out: sends.attempt_started_at = `at`, which the attempt's result clears. One write of the
  // writer's group commit. `done` runs on the writer thread after the commit, with "" or the
  // error (then nothing is marked, and the attempt must not go out).
  void send_started(const std::string& interaction_id, std::int64_t at,
                    std::function<void(const std::string&)> done);
  // Pending sends due later than `latest` (a wall-clock time no wait the send loop schedules
  // reaches: a clock stepped back since they were scheduled) become due at `latest`; those
  // waiting for a pause of their account (account_paused), later than `latest_paused`, at that.
  // `done` as for send_started, with the number of rows changed.
  void cap_send_waits(std::int64_t latest, std::int64_t latest_paused,
                      std::function<void(const std::string&, int)> done);
  // Whether a pending send is due later than cap_send_waits allows (io thread).
  bool sends_due_after(std::int64_t latest, std::int64_t latest_paused);
  // The pending sends of (`channel`, `account`) waiting for a pause of the account
  // (account_paused) that has ended early (Sender::end_pause_of_old_credentials) become due at
  // `now`, no longer marked paused. Their attempts, attempt marks and state are left as they
  // are. `done` as for cap_send_waits.
  void release_paused_sends(const std::string& channel, const std::string& account,
                            std::int64_t now, std::function<void(const std::string&, int)> done);

  storage::Db& db() { return read_; }
  // Hands the events gathered over now (io thread, or once it has ended: then events a refused
  // write holds get one last attempt).
  void flush_now();

 private:
  struct Pending {
    std::string iid, actor, type, detail, state;
    std::int64_t at;
    std::function<void()> recorded;  // io thread, after the commit
  };
  // Writer thread only: the number of the first events batch that failed and is not recorded
  // yet; a batch or direct job numbered after it does not run.
  struct Gate {
    std::uint64_t blocked_from = UINT64_MAX;
  };
  void flush();
  void submit_events(std::uint64_t n, std::vector<Pending> events, bool retry);
  void reported(std::uint64_t n, std::vector<Pending> events, bool retry, const std::string& err);
  void hold(std::uint64_t n, std::vector<Pending> events);
  void maybe_retry();
  void submit_held(bool retry);
  // The check a job submitted directly runs first on the writer thread: it throws while events
  // handed over before it are refused. Empty when such events are known to wait already.
  std::function<void(storage::Db&)> gated(std::function<void(storage::Db&)> fn);
  // Why a direct job fails at once: events wait for a retry (io thread); "" when none.
  std::string held_back() const;

  boost::asio::io_context& io_;
  storage::Writer& writer_;
  storage::Db read_;
  std::optional<storage::Stmt> payload_;  // payload()'s, prepared at its first use
  std::vector<Pending> pending_;          // io thread only
  // Failed batches (and those gathered since), by number: written again as one (io thread).
  std::shared_ptr<Gate> gate_ = std::make_shared<Gate>();
  std::uint64_t next_batch_ = 1;
  std::map<std::uint64_t, std::vector<Pending>> held_;
  std::size_t held_events_ = 0;
  int in_flight_ = 0;         // events batches with the writer, not reported back yet
  bool recovering_ = false;   // from a refused batch until a retry commits
  bool retry_armed_ = false;  // retry_timer_ waits
  int attempts_ = 0;          // retries of the current refusal
  std::chrono::milliseconds backoff_;
  boost::asio::steady_timer retry_timer_;
};

// How many agent events wait at most for the database to take them after a refused write; past
// that the oldest batches are dropped (logged at error with their count).
inline constexpr std::size_t kMaxHeldEvents = 100000;

std::string format_ms(std::int64_t unix_ms);  // RFC 3339 with milliseconds

}  // namespace sb::agents
