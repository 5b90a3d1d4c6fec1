#include "agents/records.hpp"

#include <algorithm>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <memory>
#include <stdexcept>

#include "agents/reply_keys.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "storage/async_pipeline.hpp"
#include "storage/reply_failure.hpp"
#include "storage/reply_order.hpp"

namespace sb::agents {
namespace asio = boost::asio;
namespace json = boost::json;

std::string format_ms(std::int64_t unix_ms) {
  auto s = format_rfc3339(unix_ms);  // "...:05Z"
  char frac[8];
  std::snprintf(frac, sizeof frac, ".%03dZ", static_cast<int>(((unix_ms % 1000) + 1000) % 1000));
  return s.substr(0, s.size() - 1) + frac;
}

asio::awaitable<std::string> write(storage::Writer& w, std::function<void(storage::Db&)> fn) {
  // Not a coroutine: async_initiate with use_awaitable already returns the awaitable.
  return asio::async_initiate<decltype(asio::use_awaitable), void(std::string)>(
      [&w](auto handler, std::function<void(storage::Db&)> fn) {
        auto ex = asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        w.submit(storage::Job{std::move(fn), [h, ex](const std::string& err) {
                                detail::complete_on(ex, [h, err] { (*h)(err); });
                              }});
      },
      asio::use_awaitable, std::move(fn));
}

// The condition is the index's own, word for word: SQLite uses a partial index only for a query
// whose WHERE implies the index's, and an IN list implies it only when it is the same list in
// the same order (`IN ('claimed', 'queued')` scans the whole table).
const char* const kOpenItemsQuery =
    "SELECT queue, count(*), sum(state = 'claimed') FROM interactions "
    "WHERE state IN ('queued', 'claimed') GROUP BY queue";

std::map<std::string, OpenItems> open_items_by_queue(storage::Db& db) {
  auto st = db.prepare(kOpenItemsQuery);
  std::map<std::string, OpenItems> out;
  while (st.step()) {
    out[st.text(0)] = {st.int64(1), st.int64(2)};
  }
  return out;
}

namespace {
// The wait before the first retry of a refused events batch, doubled after each failed one up
// to kMaxBackoff (a full disk is freed in minutes, not milliseconds; an I/O error may pass at
// once).
constexpr std::chrono::milliseconds kFirstBackoff{100};
constexpr std::chrono::milliseconds kMaxBackoff{5000};
}  // namespace

Records::Records(asio::io_context& io, storage::Writer& writer, const std::string& path)
    : io_(io), writer_(writer), read_(path, true), backoff_(kFirstBackoff), retry_timer_(io) {}

std::optional<InteractionRow> Records::find(const std::string& id) {
  auto st = read_.prepare(
      "SELECT id, channel, account, kind, direction, external_id, coalesce(conversation_id,''), "
      "coalesce(customer_id,''), queue, priority, state, payload FROM interactions WHERE id=?1");
  st.bind(1, id);
  if (!st.step()) {
    return std::nullopt;
  }
  return InteractionRow{st.text(0), st.text(1), st.text(2), st.text(3), st.text(4),  st.text(5),
                        st.text(6), st.text(7), st.text(8), st.text(9), st.text(10), st.text(11)};
}

DeadLetter Records::dead_letter_of(const InteractionRow& row) {
  DeadLetter out{row.id, row.queue, ""};
  auto st = read_.prepare(
      "SELECT coalesce(json_extract(detail, '$.queue'), ''), coalesce(json_extract(detail, "
      "'$.entry_id'), '') FROM events WHERE interaction_id=?1 AND type='dead_letter' ORDER BY seq "
      "DESC LIMIT 1");
  st.bind(1, row.id);
  if (st.step()) {
    if (!st.text(0).empty()) {
      out.queue = st.text(0);
    }
    out.entry_id = st.text(1);
  }
  return out;
}

std::optional<Records::BackToWork> Records::back_to_work(const std::string& id) {
  auto st = read_.prepare(
      "SELECT type, actor, coalesce(json_extract(detail, '$.queue'), ''), "
      "coalesce(json_extract(detail, '$.from_queue'), ''), json_extract(detail, "
      "'$.from_dead_letters') IS NOT NULL FROM events WHERE interaction_id=?1 ORDER BY seq DESC "
      "LIMIT 1");
  st.bind(1, id);
  if (!st.step() || st.text(0) != "transfer" || st.int64(4) == 0) {
    return std::nullopt;
  }
  return BackToWork{st.text(1), st.text(2), st.text(3)};
}

std::optional<std::string> Records::payload(const std::string& id) {
  if (!payload_) {
    payload_ = read_.prepare("SELECT payload FROM interactions WHERE id=?1");
  }
  auto& st = *payload_;
  std::optional<std::string> out;
  try {
    st.bind_static(1, id);
    if (st.step()) {
      out = st.text(0);
    }
  } catch (...) {
    st.reset();  // kept for the next call: not left mid-step
    throw;
  }
  st.reset();
  return out;
}

std::optional<LastClaim> Records::last_claim(const std::string& id) {
  auto st = read_.prepare(
      "SELECT i.state, coalesce(e.actor,''), coalesce(e.detail,'{}') FROM interactions i LEFT "
      "JOIN events e ON e.interaction_id = i.id AND e.type = 'claim' WHERE i.id=?1 "
      "ORDER BY e.seq DESC LIMIT 1");
  st.bind(1, id);
  if (!st.step()) {
    return std::nullopt;
  }
  LastClaim c{st.text(0), st.text(1)};
  json::error_code ec;
  auto d = json::parse(st.text_view(2), ec);
  if (!ec && d.is_object()) {
    if (auto* n = d.as_object().if_contains("deliveries"); n && n->is_int64()) {
      c.deliveries = n->as_int64();
    }
  }
  return c;
}

std::string Records::finished_by(const std::string& id) {
  auto st = read_.prepare(
      "SELECT (SELECT actor FROM events WHERE interaction_id=?1 AND type='finish' ORDER BY seq "
      "DESC LIMIT 1) FROM interactions WHERE id=?1 AND state='done'");
  st.bind(1, id);
  return st.step() && !st.is_null(0) ? st.text(0) : std::string();
}

std::optional<KeyedReply> Records::keyed_reply(const std::string& parent_id,
                                               const std::string& agent, const std::string& key) {
  // A key older than the retention answers nothing, whether or not the sweep cleared it yet.
  auto st = read_.prepare(
      "SELECT s.interaction_id, i.payload, s.state FROM sends s JOIN interactions i "
      "ON i.id = s.interaction_id WHERE s.parent_id=?1 AND s.agent=?2 AND s.idempotency_key=?3 "
      "AND s.created_at >= ?4");
  st.bind(1, parent_id).bind(2, agent).bind(3, key).bind(4, now_ms() - kReplyKeyRetentionMs);
  if (!st.step()) {
    return std::nullopt;
  }
  KeyedReply k{st.text(0), "", st.text(2)};
  json::error_code ec;
  auto v = json::parse(st.text_view(1), ec);
  if (!ec && v.is_object()) {
    if (auto* t = v.as_object().if_contains("text"); t && t->is_string()) {
      k.text = t->as_string();
    }
  }
  return k;
}

asio::awaitable<std::string> Records::settled() {
  flush();
  if (auto e = held_back(); !e.empty()) {
    co_return e;
  }
  std::function<void(storage::Db&)> nothing = gated([](storage::Db&) {});
  co_return co_await write(writer_, std::move(nothing));
}

std::string Records::decorate(const std::string& payload) {
  json::error_code ec;
  auto v = json::parse(payload, ec);
  if (ec || !v.is_object()) {
    return payload;
  }
  auto& o = v.as_object();
  auto* idv = o.if_contains("id");
  if (!idv || !idv->is_string()) {
    return payload;
  }
  std::string id(idv->as_string());
  // In the order they happened: an event is inserted with the time it happened, which may be
  // after later ones committed (a transfer whose reply was lost is recorded by its retry or the
  // periodic pass, after the next agent's claim from the new queue; events a refused write held
  // back). Insert order breaks ties (a claim and its ack in the same millisecond).
  auto ev = read_.prepare(
      "SELECT at, actor, type, detail FROM events WHERE interaction_id=?1 ORDER BY at, seq");
  ev.bind(1, id);
  json::array events;
  while (ev.step()) {
    json::object e{{"at", format_ms(ev.int64(0))}, {"actor", ev.text(1)}, {"type", ev.text(2)}};
    auto d = json::parse(ev.text_view(3), ec);
    if (!ec && d.is_object() && !d.as_object().empty()) {
      e["detail"] = std::move(d);
    }
    events.push_back(std::move(e));
  }
  o["events"] = std::move(events);
  auto sd = read_.prepare(
      "SELECT state, attempts, last_error, provider_id, next_attempt_at, updated_at FROM sends "
      "WHERE interaction_id=?1");
  sd.bind(1, id);
  if (sd.step()) {
    json::object s{{"state", sd.text(0)}, {"attempts", sd.int64(1)}};
    s["error"] = sd.text(2).empty() ? json::value(nullptr) : json::value(sd.text(2));
    s["provider_id"] = sd.text(3).empty() ? json::value(nullptr) : json::value(sd.text(3));
    if (sd.text(0) == "pending") {
      s["next_attempt_at"] = format_ms(sd.int64(4));
    }
    s["updated_at"] = format_ms(sd.int64(5));
    o["send"] = std::move(s);
  }
  return json::serialize(v);
}

namespace {
std::string json_list(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) {
    a.emplace_back(s);
  }
  return json::serialize(a);
}

using storage::kHeldBehindEarlier;
}  // namespace

std::vector<SendJob> Records::due_sends(std::int64_t now, int limit,
                                        const std::vector<std::string>& busy,
                                        const std::vector<std::string>& full) {
  auto st = read_.prepare(
      "SELECT s.interaction_id, s.parent_id, s.channel, s.account, "
      "coalesce(i.conversation_id,''), i.payload, coalesce(p.payload,''), s.attempts, "
      "s.maybe_sent, coalesce(s.attempt_started_at, 0), coalesce(s.uncertain_since, 0), "
      "s.planned_id, "
      // Our earlier replies the parent names (the reply route stores ours under their ids, in
      // external_id, in_reply_to and the references chain), with the id each went out with:
      // fixed when it was stored, else (older rows) what its sent result recorded. Only an
      // outbound parent (one of ours) names replies by interaction id, so a customer's message,
      // up to 1 MiB of text, is not parsed here; and a payload that is not JSON yields NULL
      // (json_extract would fail the whole query, and with it every channel's due replies).
      "CASE WHEN p.direction = 'outbound' AND json_valid(p.payload) THEN "
      "(SELECT json_group_object(e.interaction_id, CASE WHEN e.planned_id != '' "
      "THEN e.planned_id ELSE e.provider_id END) FROM sends e "
      "WHERE (e.planned_id != '' OR e.provider_id != '') AND e.interaction_id IN ("
      "SELECT json_extract(p.payload, '$.external_id') "
      "UNION SELECT json_extract(p.payload, '$.in_reply_to') "
      "UNION SELECT value FROM json_each(p.payload, '$.references'))) END, s.created_at "
      "FROM sends s JOIN interactions i ON i.id = s.interaction_id "
      "LEFT JOIN interactions p ON p.id = s.parent_id "
      "WHERE s.state = 'pending' AND s.next_attempt_at <= ?1 "
      "AND s.interaction_id NOT IN (SELECT value FROM json_each(?3)) "
      "AND s.channel || char(10) || s.account NOT IN (SELECT value FROM json_each(?4)) "
      "AND NOT " +
      std::string(kHeldBehindEarlier) + " ORDER BY s.next_attempt_at LIMIT ?2");
  st.bind(1, now).bind(2, limit).bind(3, json_list(busy)).bind(4, json_list(full));
  std::vector<SendJob> out;
  while (st.step()) {
    SendJob j{st.text(0),  st.text(1),       st.text(2),  st.text(3),   st.text(4),  "", st.text(6),
              st.int64(7), st.int64(8) != 0, st.int64(9), st.int64(10), st.text(11), {}};
    j.created_at = st.int64(13);
    json::error_code ec;
    auto v = json::parse(st.text_view(5), ec);
    if (!ec && v.is_object()) {
      if (auto* t = v.as_object().if_contains("text"); t && t->is_string()) {
        j.text = t->as_string();
      }
    }
    if (!st.is_null(12)) {
      auto earlier = json::parse(st.text_view(12), ec);
      if (!ec && earlier.is_object()) {
        for (const auto& [k, id] : earlier.as_object()) {
          if (id.is_string()) {
            j.earlier_ids.emplace(std::string(k), std::string(id.as_string()));
          }
        }
      }
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::optional<std::int64_t> Records::next_send_at(const std::vector<std::string>& busy,
                                                  const std::vector<std::string>& full) {
  // The first in due order that due_sends would take (a reply held behind an earlier one is
  // due only when that one is done: counted, it would wake the loop at once, again and again).
  auto st = read_.prepare(
      "SELECT s.next_attempt_at FROM sends s JOIN interactions i ON i.id = s.interaction_id "
      "WHERE s.state = 'pending' "
      "AND s.interaction_id NOT IN (SELECT value FROM json_each(?1)) "
      "AND s.channel || char(10) || s.account NOT IN (SELECT value FROM json_each(?2)) "
      "AND NOT " +
      std::string(kHeldBehindEarlier) + " ORDER BY s.next_attempt_at LIMIT 1");
  st.bind(1, json_list(busy)).bind(2, json_list(full));
  if (st.step() && !st.is_null(0)) {
    return st.int64(0);
  }
  return std::nullopt;
}

namespace {
// Statements of the writer thread, prepared once per connection (claims and acks come by the
// thousand per second).
struct WriterStatements {
  storage::Db* db = nullptr;
  storage::Stmt insert_event, set_state, set_dead;
  static WriterStatements& of(storage::Db& db) {
    static thread_local WriterStatements s;
    if (s.db != &db) {
      s.insert_event = db.prepare(
          "INSERT INTO events(interaction_id, at, actor, type, detail) VALUES (?1, ?2, ?3, ?4, "
          "?5)");
      s.set_state = db.prepare("UPDATE interactions SET state=?2 WHERE id=?1");
      // Not when this very dead-letter entry (?2: the event's detail) is recorded already: a
      // sweep may report it again after a transfer took it out of the dead letters (the
      // report read {prefix}:dead-unrecorded before the transfer's HDEL), and the item, back
      // at work, must not read as dead.
      s.set_dead = db.prepare(
          "UPDATE interactions SET state='dead' WHERE id=?1 AND state IS NOT 'dead' AND NOT "
          "EXISTS (SELECT 1 FROM events WHERE interaction_id=?1 AND type='dead_letter' AND "
          "json_extract(detail, '$.entry_id') = json_extract(?2, '$.entry_id'))");
      s.db = &db;
    }
    return s;
  }
};

void insert_event(storage::Db& db, const std::string& iid, std::int64_t at,
                  const std::string& actor, const std::string& type, const std::string& detail) {
  auto& st = WriterStatements::of(db).insert_event;
  st.bind_static(1, iid).bind(2, at).bind_static(3, actor).bind_static(4, type);
  st.bind_static(5, detail).run();
}

// Thrown by a job that must not commit ahead of refused agent events.
struct HeldBack : std::runtime_error {
  HeldBack()
      : std::runtime_error(
            "agent events recorded before it were refused by the database and wait for a "
            "retry") {}
};

std::function<void(const std::string&)> log_failure(std::string what) {
  return [what = std::move(what)](const std::string& err) {
    if (!err.empty()) {
      logger("agents")->error("[agents] recording {} failed: {}", what, err);
    }
  };
}
}  // namespace

void Records::event(const std::string& iid, const std::string& actor, const std::string& type,
                    const std::string& detail, const std::string& state) {
  pending_.push_back(Pending{iid, actor, type, detail, state, now_ms(), {}});
  if (pending_.size() == 1) {
    asio::post(io_, [this] { flush(); });
  }
}

std::string Records::held_back() const {
  return recovering_ ? HeldBack().what() : std::string();
}

std::function<void(storage::Db&)> Records::gated(std::function<void(storage::Db&)> fn) {
  // Numbered like the events batch submitted next: a batch handed over before this job has a
  // lower number, one handed over after it the same or a higher one.
  return [gate = gate_, d = next_batch_, fn = std::move(fn)](storage::Db& db) {
    if (d > gate->blocked_from) {
      throw HeldBack();
    }
    fn(db);
  };
}

void Records::flush() {
  if (pending_.empty()) {
    return;
  }
  std::vector<Pending> events = std::move(pending_);
  pending_.clear();
  if (recovering_) {
    // Behind the refused ones: they are written together, in order.
    hold(next_batch_++, std::move(events));
    return;
  }
  submit_events(next_batch_++, std::move(events), false);
}

void Records::submit_events(std::uint64_t n, std::vector<Pending> batch, bool retry) {
  ++in_flight_;
  auto events = std::make_shared<std::vector<Pending>>(std::move(batch));
  writer_.submit(storage::Job{
      [events, gate = gate_, n, retry](storage::Db& db) {
        // Batches the writer had before it heard of a refusal (the same transaction, or the
        // ones queued behind it) must not commit ahead of it: they fail too and are held with
        // it. A retry is the oldest batch outstanding (it goes once every batch has reported).
        if (!retry && n > gate->blocked_from) {
          throw HeldBack();
        }
        try {
          auto& st = WriterStatements::of(db);
          for (const auto& e : *events) {
            if (e.type == "dead_letter") {
              // Reported again when the claim that reported it lost its reply
              // (QueueOps::forget_dead): recorded once. set_dead is its state change.
              st.set_dead.bind_static(1, e.iid).bind_static(2, e.detail).run();
              if (db.changes() > 0) {
                insert_event(db, e.iid, e.at, e.actor, e.type, e.detail);
              }
              continue;
            }
            insert_event(db, e.iid, e.at, e.actor, e.type, e.detail);
            if (!e.state.empty()) {
              st.set_state.bind_static(1, e.iid).bind_static(2, e.state).run();
            }
            if (e.type == "finish") {
              // A reply that failed while the item was held puts it back to work now.
              storage::requeue_on_finish(db, e.iid, e.at);
            }
          }
        } catch (...) {
          gate->blocked_from = std::min(gate->blocked_from, n);
          throw;
        }
        // A retry clears the gate; so does a batch whose refusal set it and which then ran
        // (the writer runs a failed group's jobs again one by one: a refusal of the moment may
        // pass there, and nothing earlier waits). The jobs after it in that pass then run too.
        if (retry || gate->blocked_from == n) {
          gate->blocked_from = UINT64_MAX;  // (set again by `done` if the COMMIT fails)
        }
      },
      [this, io = &io_, events, gate = gate_, n, retry](const std::string& err) {
        if (!err.empty()) {
          gate->blocked_from = std::min(gate->blocked_from, n);  // a failed COMMIT
        }
        // (`this` only on the io thread: the writer may finish a job after the Service ended.)
        asio::post(*io,
                   [this, events, n, retry, err] { reported(n, std::move(*events), retry, err); });
      }});
}

void Records::reported(std::uint64_t n, std::vector<Pending> events, bool retry,
                       const std::string& err) {
  --in_flight_;
  if (err.empty()) {
    if (retry) {
      logger("agents")->info("[agents] {} agent events the database refused are recorded now",
                             events.size());
      attempts_ = 0;
      backoff_ = kFirstBackoff;
    }
    for (auto& e : events) {
      if (e.recorded) {
        e.recorded();
      }
    }
    if (retry) {
      // The database takes writes again, and the gate is open (the retry's job opened it):
      // what was gathered while the retry was out goes as an ordinary batch, behind it in the
      // writer's order. (Held back as a retry again, a steady stream of claims and acks would
      // keep the records "recovering", and every reply refused, for as long as it lasted.)
      recovering_ = false;
      if (!held_.empty()) {
        submit_held(false);
      }
    }
    return;
  }
  if (!recovering_) {
    logger("agents")->error(
        "[agents] recording {} agent events (claims, acks, releases) failed: {}; they are kept "
        "and written again until the database takes them",
        events.size(), err);
  } else if (retry) {
    ++attempts_;
    logger("agents")->warn(
        "[agents] writing {} agent events the database refused failed again (retry {}): {}",
        events.size(), attempts_, err);
  }
  recovering_ = true;
  hold(n, std::move(events));
  maybe_retry();
}

void Records::hold(std::uint64_t n, std::vector<Pending> events) {
  held_events_ += events.size();
  auto& slot = held_[n];
  for (auto& e : events) {
    slot.push_back(std::move(e));
  }
  std::size_t dropped = 0;
  while (held_events_ > kMaxHeldEvents && !held_.empty()) {
    auto oldest = held_.begin();
    dropped += oldest->second.size();
    held_events_ -= oldest->second.size();
    held_.erase(oldest);
  }
  if (dropped > 0) {
    // Their transfers' and dead letters' notes stay in Redis and are recorded later; claims,
    // acks and releases have nothing else: the rows keep their last recorded state.
    logger("agents")->error(
        "[agents] {} agent events (claims, acks, releases) are dropped unrecorded: the database "
        "has refused them while more than {} waited",
        dropped, kMaxHeldEvents);
  }
}

void Records::maybe_retry() {
  // Only once every batch handed over has reported: a later one still with the writer fails
  // behind the refused one and must join it before they are written, in order.
  if (held_.empty() || in_flight_ > 0 || retry_armed_) {
    return;
  }
  retry_armed_ = true;
  retry_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  retry_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) {
      return;
    }
    retry_armed_ = false;
    if (!held_.empty() && in_flight_ == 0) {
      submit_held(true);
    }
  });
}

void Records::submit_held(bool retry) {
  std::uint64_t first = held_.begin()->first;
  std::vector<Pending> all;
  all.reserve(held_events_);
  for (auto& [n, events] : held_) {
    for (auto& e : events) {
      all.push_back(std::move(e));
    }
  }
  held_.clear();
  held_events_ = 0;
  submit_events(first, std::move(all), retry);
}

void Records::flush_now() {
  flush();
  if (recovering_ && !held_.empty()) {
    // At the stop (the io thread has ended: no retry timer fires): one last attempt now.
    logger("agents")->warn(
        "[agents] {} agent events the database refused are written once more at the stop; "
        "whatever it refuses now is lost",
        held_events_);
    // A retry still with the writer goes first: these pass the gate only if it commits.
    submit_held(in_flight_ == 0);
  }
}

void Records::dead_lettered(const std::vector<DeadLetter>& dead, std::function<void()> recorded) {
  for (const auto& l : dead) {
    json::object d{{"queue", l.queue}};
    if (!l.entry_id.empty()) {
      d["entry_id"] = l.entry_id;
    }
    event(l.interaction_id, "switchboard", "dead_letter", json::serialize(d), "dead");
  }
  if (!dead.empty()) {
    pending_.back().recorded = std::move(recorded);
  }
}

void Records::transferred(const InteractionRow& row, const Transfer& t, bool late,
                          std::function<void(const std::string&)> done) {
  std::int64_t at = t.at > 0 ? t.at : now_ms();
  json::object d{{"from_queue", t.from_queue.empty() ? row.queue : t.from_queue},
                 {"from_priority", t.from_queue.empty() ? row.priority : t.from_priority},
                 {"queue", t.queue},
                 {"priority", t.priority}};
  if (!t.entry_id.empty()) {
    d["entry_id"] = t.entry_id;
  }
  if (!t.from_dead.empty()) {
    d["from_dead_letters"] = t.from_dead;
  }
  if (t.rebuilt) {
    d["rebuilt"] = true;
  }
  std::string detail = json::serialize(d);
  flush();
  if (auto e = held_back(); !e.empty()) {
    // Its note stays in Redis: the periodic pass records it once the events before it are in.
    if (done) {
      asio::post(io_, [done = std::move(done), e] { done(e); });
    }
    return;
  }
  auto failed = log_failure("transfer of " + row.id);
  writer_.submit(storage::Job{
      gated([=, iid = row.id, conv = row.conversation_id, actor = t.actor, queue = t.queue,
             priority = t.priority, entry = t.entry_id,
             from_dead = !t.from_dead.empty()](storage::Db& db) {
        // The same transfer may be reported more than once: a retry whose first reply was lost,
        // the periodic pass reading its note before the route's record removed it, a note
        // handed back by a later transfer that replaced it.
        if (!entry.empty()) {
          auto seen = db.prepare(
              "SELECT count(*) FROM events WHERE interaction_id=?1 AND type='transfer' AND "
              "json_extract(detail, '$.entry_id')=?2");
          seen.bind(1, iid).bind(2, entry);
          if (seen.step() && seen.int64(0) > 0) {
            return;
          }
        }
        if (late) {
          // Recorded already by a version whose events did not name the entry: the first
          // attempt's 200 was lost on its way, not Redis's reply.
          auto seen = db.prepare(
              "SELECT count(*) FROM events WHERE interaction_id=?1 AND type='transfer' AND "
              "actor=?2 AND json_extract(detail, '$.entry_id') IS NULL AND seq > coalesce((SELECT "
              "max(seq) FROM events WHERE interaction_id=?1 AND type='claim' AND actor=?2), 0)");
          seen.bind(1, iid).bind(2, actor);
          if (seen.step() && seen.int64(0) > 0) {
            return;
          }
        }
        // A late record of a transfer older than one recorded already (its agent's reply was
        // lost, then the item was claimed from the new queue and transferred again): the row
        // and the conversation follow the later one; the timeline gets this one too.
        bool latest = true;
        if (late) {
          auto later = db.prepare(
              "SELECT count(*) FROM events WHERE interaction_id=?1 AND type='transfer' AND at > "
              "?2");
          later.bind(1, iid).bind(2, at);
          latest = !(later.step() && later.int64(0) > 0);
        }
        if (latest) {
          // Another agent may have claimed it from the new queue before a late record: that
          // claim's state stays (a claim recorded after the transfer, or the latest claim not
          // the transferring agent's: the same agent may work both queues, and a claim in the
          // same millisecond as the transfer is told apart by its actor). Out of the dead letters
          // (?7), nobody held it: `dead` becomes `queued` unless it was claimed since. The
          // payload's queue and priority are set in the row as it is now, not replaced by the
          // copy the route read before it waited for Redis: a call event committed in between (a
          // recording, a late leg, the caller) must stay.
          auto st = db.prepare(
              "UPDATE interactions SET queue=?2, priority=?3, payload=CASE WHEN "
              "json_valid(payload) THEN json_set(payload, '$.queue', ?2, '$.priority', ?3) ELSE "
              "payload END, state=CASE WHEN ?4 = 0 OR ((?7 = 1 AND state = 'dead' OR "
              "coalesce((SELECT actor FROM events WHERE interaction_id=?1 AND type='claim' ORDER "
              "BY seq DESC LIMIT 1), '') = ?5) AND NOT EXISTS (SELECT 1 FROM events WHERE "
              "interaction_id=?1 AND type='claim' AND at > ?6)) THEN 'queued' ELSE state END "
              "WHERE id=?1");
          st.bind(1, iid).bind(2, queue).bind(3, priority);
          st.bind(4, static_cast<std::int64_t>(late ? 1 : 0)).bind(5, actor).bind(6, at);
          st.bind(7, static_cast<std::int64_t>(from_dead ? 1 : 0)).run();
          // Sticky routing: the conversation's next interaction follows it to the new queue. A
          // late record leaves a later decision for the conversation alone: updated_at is when
          // its queue was last set (an interaction routed, or one of its items transferred), and
          // another interaction of it may have been transferred or routed since this transfer.
          auto cv = db.prepare(
              "UPDATE conversations SET queue=?2, updated_at=?3 WHERE id=?1 AND (?4 = 0 OR "
              "updated_at <= ?3)");
          cv.bind(1, conv).bind(2, queue).bind(3, at);
          cv.bind(4, static_cast<std::int64_t>(late ? 1 : 0)).run();
        }
        insert_event(db, iid, at, actor, "transfer", detail);
      }),
      [io = &io_, failed, done = std::move(done)](const std::string& err) {
        failed(err);
        if (done) {
          asio::post(*io, [done, err] { done(err); });
        }
      }});
}

asio::awaitable<ReplyStored> Records::reply(const InteractionRow& parent, const std::string& actor,
                                            const std::string& outbound_id,
                                            const std::string& payload, const std::string& key,
                                            const std::vector<std::string>& thread_keys,
                                            const std::string& planned_id) {
  std::int64_t at = now_ms();
  flush();
  if (auto e = held_back(); !e.empty()) {
    co_return ReplyStored{e, "", false};  // the agent retries it (with its key, if any)
  }
  // Written by the job on the writer thread, read here after its commit resumed us.
  auto earlier = std::make_shared<std::string>();
  // (GCC 12: a lambda temporary inside a co_await expression is destroyed twice; name it.)
  std::function<void(storage::Db&)> job = [=](storage::Db& db) {
    earlier->clear();  // a job may run twice (Writer::run_batch)
    if (!key.empty()) {
      auto seen = db.prepare(
          "SELECT interaction_id, created_at FROM sends WHERE parent_id=?1 AND agent=?2 AND "
          "idempotency_key=?3");
      seen.bind(1, parent.id).bind(2, actor).bind(3, key);
      if (seen.step()) {
        std::string old = seen.text(0);
        if (seen.int64(1) >= at - kReplyKeyRetentionMs) {
          *earlier = std::move(old);
          return;
        }
        // Expired and not swept yet: the old reply lets go of the key (its row stays), and this
        // one takes it, as a new reply.
        seen.reset();
        auto forget = db.prepare("UPDATE sends SET idempotency_key=NULL WHERE interaction_id=?1");
        forget.bind(1, old).run();
      }
    }
    // The parent's queue and priority as the row is now, in the reply's row and its payload: a
    // transfer answered just before is recorded by a job ahead of this one, perhaps after the
    // route read the row. An outbound row never enters a queue (no outbox row, its state is
    // 'outbound'); its queue tells which agents it concerns (Service::not_held).
    std::string queue = parent.queue, priority = parent.priority;
    auto current = db.prepare("SELECT queue, priority FROM interactions WHERE id=?1");
    current.bind(1, parent.id);
    if (current.step()) {
      queue = current.text(0);
      priority = current.text(1);
    }
    current.reset();
    auto ins = db.prepare(
        "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
        "conversation_id, customer_id, queue, priority, state, occurred_at, received_at, payload) "
        "VALUES (?1, ?2, ?3, ?1, ?4, 'outbound', ?5, ?6, ?9, ?10, 'outbound', ?7, ?7, "
        "json_set(?8, '$.queue', ?9, '$.priority', ?10))");
    ins.bind(1, outbound_id).bind(2, parent.channel).bind(3, parent.account).bind(4, parent.kind);
    if (parent.conversation_id.empty()) {
      ins.bind_null(5);
    } else {
      ins.bind(5, parent.conversation_id);
    }
    if (parent.customer_id.empty()) {
      ins.bind_null(6);
    } else {
      ins.bind(6, parent.customer_id);
    }
    ins.bind(7, at).bind(8, payload).bind(9, queue).bind(10, priority).run();
    auto send = db.prepare(
        "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
        "next_attempt_at, created_at, updated_at, agent, idempotency_key, planned_id) VALUES "
        "(?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5, ?5, ?6, ?7, ?8)");
    send.bind(1, outbound_id).bind(2, parent.id).bind(3, parent.channel).bind(4, parent.account);
    send.bind(5, at).bind(6, actor).bind(8, planned_id);
    if (key.empty()) {
      send.bind_null(7);
    } else {
      send.bind(7, key);
    }
    send.run();
    if (!parent.conversation_id.empty()) {
      auto k = db.prepare(
          "INSERT OR IGNORE INTO conversation_keys(key, conversation_id) VALUES (?1, ?2)");
      for (const auto& tk : thread_keys) {
        k.bind(1, tk).bind(2, parent.conversation_id).run();
      }
    }
    json::object d{{"outbound_id", outbound_id}};
    insert_event(db, parent.id, at, actor, "reply", json::serialize(d));
  };
  job = gated(std::move(job));
  ReplyStored r;
  r.error = co_await write(writer_, std::move(job));
  if (r.error.empty() && !earlier->empty()) {
    r.outbound_id = *earlier;
    r.repeated = true;
  } else if (r.error.empty()) {
    r.outbound_id = outbound_id;
  }
  co_return r;
}

void Records::send_result(const std::string& iid, const std::string& state, std::int64_t attempts,
                          std::int64_t next_at, const std::string& error,
                          const std::string& provider_id, bool maybe_sent, bool account_paused,
                          std::vector<std::string> thread_keys,
                          std::function<void(const std::string&)> done) {
  std::int64_t at = now_ms();
  const bool given_up = state == "failed";
  if (given_up) {
    // The parent's finish, when it was acked during this io turn, is committed first: the
    // failure must find it `done` (events wait here until the turn ends otherwise).
    flush();
  }
  std::function<void(storage::Db&)> job = [=](storage::Db& db) {
    if (given_up) {
      storage::tell_parent_of_failure(db, iid, error, at);
    }
    auto st = db.prepare(
        "UPDATE sends SET state=?2, attempts=?3, next_attempt_at=?4, last_error=?5, "
        "provider_id=?6, updated_at=?7, maybe_sent=max(maybe_sent, ?8), "
        // The first unknown outcome's start stays (the SET reads the row before it).
        "uncertain_since=CASE WHEN ?8 != 0 AND uncertain_since IS NULL "
        "THEN attempt_started_at ELSE uncertain_since END, "
        "attempt_started_at=NULL, account_paused=?9 WHERE interaction_id=?1");
    st.bind(1, iid).bind(2, state).bind(3, attempts).bind(4, next_at).bind(5, error);
    st.bind(6, provider_id).bind(7, at).bind(8, static_cast<std::int64_t>(maybe_sent));
    st.bind(9, static_cast<std::int64_t>(account_paused)).run();
    for (const auto& key : thread_keys) {
      auto k = db.prepare(
          "INSERT OR IGNORE INTO conversation_keys(key, conversation_id) SELECT ?1, "
          "conversation_id FROM interactions WHERE id=?2 AND conversation_id IS NOT NULL");
      k.bind(1, key).bind(2, iid).run();
    }
  };
  // A failure behind agent events the database refused waits for them (its record is written
  // again, SendLoop::record): it must see the parent's finish.
  writer_.submit(storage::Job{given_up ? gated(std::move(job)) : std::move(job), std::move(done)});
}

void Records::send_started(const std::string& iid, std::int64_t at,
                           std::function<void(const std::string&)> done) {
  writer_.submit(storage::Job{
      [=](storage::Db& db) {
        auto st = db.prepare(
            "UPDATE sends SET attempt_started_at=?2 WHERE interaction_id=?1 AND state='pending'");
        st.bind(1, iid).bind(2, at).run();
      },
      std::move(done)});
}

constexpr const char* kLatestDue = "CASE WHEN account_paused THEN ?2 ELSE ?1 END";

void Records::cap_send_waits(std::int64_t latest, std::int64_t latest_paused,
                             std::function<void(const std::string&, int)> done) {
  auto changed = std::make_shared<int>(0);
  writer_.submit(storage::Job{
      [=](storage::Db& db) {
        auto st = db.prepare(std::string("UPDATE sends SET next_attempt_at=") + kLatestDue +
                             " WHERE " + kSendsDueTooLate);
        st.bind(1, latest).bind(2, latest_paused).run();
        *changed = static_cast<int>(db.changes());
      },
      [changed, done = std::move(done)](const std::string& err) { done(err, *changed); }});
}

void Records::release_paused_sends(const std::string& channel, const std::string& account,
                                   std::int64_t now,
                                   std::function<void(const std::string&, int)> done) {
  auto changed = std::make_shared<int>(0);
  writer_.submit(storage::Job{
      [=](storage::Db& db) {
        // Only rows still waiting: one whose result was recorded since (sent, or a retry of
        // its own) is not the pause's any more.
        auto st = db.prepare(
            "UPDATE sends SET next_attempt_at=?3, account_paused=0 WHERE state='pending' AND "
            "account_paused=1 AND next_attempt_at > ?3 AND channel=?1 AND account=?2");
        st.bind(1, channel).bind(2, account).bind(3, now).run();
        *changed = static_cast<int>(db.changes());
      },
      [changed, done = std::move(done)](const std::string& err) { done(err, *changed); }});
}

bool Records::sends_due_after(std::int64_t latest, std::int64_t latest_paused) {
  auto st = read_.prepare(std::string("SELECT EXISTS (SELECT 1 FROM sends WHERE ") +
                          kSendsDueTooLate + ")");
  st.bind(1, latest).bind(2, latest_paused);
  return st.step() && st.int64(0) != 0;
}

}  // namespace sb::agents
