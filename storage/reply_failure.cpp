#include "storage/reply_failure.hpp"

#include <optional>

#include <boost/json.hpp>

#include "core/time.hpp"

namespace sb::storage {
namespace json = boost::json;

namespace {
void parent_event(Db& db, const std::string& parent, std::int64_t at, const json::object& d) {
  auto ev = db.prepare(
      "INSERT INTO events(interaction_id, at, actor, type, detail) VALUES (?1, ?2, "
      "'switchboard', 'send_failed', ?3)");
  ev.bind(1, parent).bind(2, at).bind(3, json::serialize(d)).run();
}

// It enters its queue as it entered the first time, through the outbox (DESIGN-NOTES invariant
// 3), in the transaction that records why: exactly once, a crash replaying neither or both.
// queue_round gives the new projection its own once-only marker (relay/parts.hpp),
// and `send_failed` in its payload ({outbound_id, error, at: the failure's time, RFC 3339 with
// ms as the API's other times}) tells whoever claims it why it is back.
void requeue_parent(Db& db, const std::string& parent, const std::string& queue,
                    const std::string& priority, const std::string& outbound_id,
                    const std::string& error, std::int64_t failed_at, std::int64_t at) {
  auto up = db.prepare(
      "UPDATE interactions SET state='queued', queue_round=queue_round+1, payload=CASE WHEN "
      "json_valid(payload) THEN json_set(payload, '$.send_failed', json_object('outbound_id', "
      "?2, 'error', ?3, 'at', strftime('%Y-%m-%dT%H:%M:%S', ?4 / 1000, 'unixepoch') || "
      "printf('.%03dZ', ?4 % 1000))) ELSE payload END WHERE id=?1");
  up.bind(1, parent).bind(2, outbound_id).bind(3, error).bind(4, failed_at).run();
  // The outbox row is the connection's last insert: queued_seq follows it (storage/store.cpp,
  // enqueue), for a re-projection after Redis lost data.
  auto out = db.prepare(
      "INSERT INTO outbox(interaction_id, queue, priority, created_at) VALUES (?1, ?2, ?3, ?4)");
  out.bind(1, parent).bind(2, queue).bind(3, priority).bind(4, at).run();
  auto seq = db.prepare("UPDATE interactions SET queued_seq=last_insert_rowid() WHERE id=?1");
  seq.bind(1, parent).run();
}
}  // namespace

// When the parent was finished meanwhile (the agent acked after the 202, as the API invites,
// and the send failed minutes of retries later, or a bounce came back a day later), it goes
// back to work: otherwise the customer was left unanswered and nobody was told, the failure
// showing only on the reply, and reply, release and transfer on a finished item answering 409.
// A parent still held is left with its agent (who sees the failure on the reply; its finish
// puts it back to work, requeue_on_finish), as is one waiting or dead-lettered.
void tell_parent_of_failure(Db& db, const std::string& outbound_id, const std::string& error,
                            std::int64_t at) {
  auto send = db.prepare("SELECT state, parent_id FROM sends WHERE interaction_id=?1");
  send.bind(1, outbound_id);
  if (!send.step() || (send.text(0) != "pending" && send.text(0) != "sent") || send.is_null(1)) {
    return;  // failed before: told then
  }
  const std::string parent = send.text(1);
  send.reset();
  auto row = db.prepare("SELECT state, queue, priority FROM interactions WHERE id=?1");
  row.bind(1, parent);
  if (!row.step()) {
    return;
  }
  const bool requeue = row.text(0) == "done" && !row.text(1).empty();
  const std::string queue = row.text(1), priority = row.text(2);
  row.reset();
  json::object d{{"outbound_id", outbound_id}, {"error", error}};
  if (requeue) {
    // The outbox row's time is now, the commit's: `at` may be a provider's own time (a WhatsApp
    // status retried for hours), and the relay takes an old row for a stall of its own.
    requeue_parent(db, parent, queue, priority, outbound_id, error, at, now_ms());
    d["queue"] = queue;
    d["priority"] = priority;
  }
  d["back_to_work"] = requeue;
  parent_event(db, parent, at, d);
}

// A reply given up on while its parent was still held: a quick refusal (a Telegram 400 a second
// after the 202, before the agent acked), a failure whose job ran between Redis's XACK and the
// finish's record, or an ack answered 503 that Redis ran (recorded on its retry). The failure
// was told with back_to_work false, and the finish would leave the item in no queue. Only when
// the latest of the item's claim, reply and send_failed events is that failure: after a new
// claim it is old news, after a new reply the agent answered it, and after a requeue
// (back_to_work true) it was handled.
void requeue_on_finish(Db& db, const std::string& iid, std::int64_t at) {
  // Prepared once per connection: every ack's record runs it, thousands a second (as the
  // writer's statements in agents/records.cpp).
  static thread_local Db* prepared_for = nullptr;
  static thread_local std::optional<Stmt> find;
  if (prepared_for != &db) {
    find.reset();
    find.emplace(db.prepare(
        "SELECT json_extract(e.detail, '$.outbound_id'), json_extract(e.detail, '$.error'), e.at, "
        "i.queue, i.priority FROM events e JOIN interactions i ON i.id = e.interaction_id WHERE "
        "e.seq = (SELECT max(seq) FROM events WHERE interaction_id=?1 AND type IN ('claim', "
        "'reply', 'send_failed')) AND e.type='send_failed' AND "
        "json_extract(e.detail, '$.back_to_work') = 0 AND i.state='done' AND i.queue != ''"));
    prepared_for = &db;
  }
  Stmt& f = *find;
  f.reset();
  f.bind(1, iid);
  if (!f.step()) {
    f.reset();
    return;
  }
  const std::string outbound_id = f.text(0), error = f.text(1), queue = f.text(3),
                    priority = f.text(4);
  const std::int64_t failed_at = f.int64(2);
  f.reset();
  requeue_parent(db, iid, queue, priority, outbound_id, error, failed_at, at);
  json::object d{{"outbound_id", outbound_id}, {"error", error},       {"queue", queue},
                 {"priority", priority},       {"back_to_work", true}, {"on_finish", true}};
  parent_event(db, iid, at, d);
}

}  // namespace sb::storage
