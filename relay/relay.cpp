#include "relay/relay.hpp"

#include <pthread.h>

#include <algorithm>
#include <optional>
#include <random>

#include "core/log.hpp"
#include "core/stalls.hpp"
#include "core/time.hpp"
#include "relay/parts.hpp"

// One row's way, top to bottom: pass() reads it from the outbox (read_rows, in wire.cpp, writes
// its EVALSHA arguments as it reads), send() (wire.cpp) pipelines the commands and reads each
// row's fate from the script's reply, then pass() moves the watermark past it and either hands it
// to remove() (the writer deletes it, its marker goes later) or, when its stream refused it, to
// hold() (held.cpp). The Lua script that decides a row's fate in Redis is in connect.cpp.

namespace sb {
using namespace relay_detail;

Relay::Reader::Reader(const std::string& path)
    : db(path, true),
      fresh(db.prepare("SELECT o.seq, i.id, o.queue, o.priority, i.conversation_id, "
                       "coalesce(i.customer_id, ''), i.channel, i.kind, i.payload, o.created_at, "
                       "i.queue_round FROM outbox o "
                       "JOIN interactions i ON i.id = o.interaction_id "
                       "WHERE o.seq > ?1 ORDER BY o.seq LIMIT ?2")),
      held(db.prepare("SELECT o.seq, i.id, o.queue, o.priority, i.conversation_id, "
                      "coalesce(i.customer_id, ''), i.channel, i.kind, i.payload, o.created_at, "
                      "i.queue_round FROM outbox o "
                      "JOIN interactions i ON i.id = o.interaction_id "
                      "WHERE o.seq >= ?1 AND o.seq <= ?2 AND o.queue = ?3 AND o.priority = ?4 "
                      "ORDER BY o.seq LIMIT ?5")),
      // In its current queue and priority (after transfers), as the payload says too. Open:
      // waiting or claimed, not finished, not dead-lettered. An interaction whose outbox row is
      // still there is the outbox's to send (held, or not yet read). The state term is the
      // index's own WHERE, word for word (schema 18): SQLite uses a partial index only then, and
      // the re-projection reads the open interactions alone, not every one ever queued
      // (tests/storage/schema_test.cpp checks the plan and the rows read).
      lost(db.prepare("SELECT i.queued_seq, i.id, i.queue, i.priority, i.conversation_id, "
                      "coalesce(i.customer_id, ''), i.channel, i.kind, i.payload, i.received_at, "
                      "i.queue_round FROM interactions i "
                      "WHERE i.queued_seq > ?1 AND i.queued_seq <= ?2 "
                      "AND i.state IN ('queued', 'claimed') "
                      "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.seq = i.queued_seq) "
                      "ORDER BY i.queued_seq LIMIT ?3")),
      projected(db.prepare("SELECT coalesce((SELECT projected FROM relay_state), 0)")),
      oldest(db.prepare(
          "SELECT min(queued_seq) FROM interactions WHERE state IN ('queued', 'claimed')")),
      unsequenced(db.prepare("SELECT 1 FROM interactions WHERE queued_seq IS NULL "
                             "AND state IN ('queued', 'claimed') LIMIT 1")),
      // ?1: a JSON array of interaction ids; ?2, ?3: the queue and priority of the stream their
      // entries are in. The payload only for those waiting in another stream (moved there).
      entries(db.prepare("SELECT id, state, queue, priority, conversation_id, "
                         "coalesce(customer_id, ''), channel, kind, "
                         "CASE WHEN state = 'queued' AND (queue <> ?2 OR priority <> ?3) "
                         "THEN payload END "
                         "FROM interactions WHERE id IN (SELECT value FROM json_each(?1))")),
      handed_out(db.prepare(
          "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)")),
      db_id(db.prepare("SELECT db_id FROM relay_state")) {}

namespace {

void count_queue(std::vector<std::pair<std::string, std::size_t>>& per_queue,
                 const std::string& queue) {
  auto q = std::find_if(per_queue.begin(), per_queue.end(),
                        [&](const auto& p) { return p.first == queue; });
  if (q == per_queue.end()) {
    per_queue.emplace_back(queue, 1);
  } else {
    ++q->second;
  }
}

}  // namespace

void Relay::Taken::add(const Row& r, bool next_to_last, const std::string& prefix) {
  if (next_to_last && !ranges.empty()) {
    ranges.back().second = r.seq;
  } else {
    ranges.emplace_back(r.seq, r.seq);
  }
  markers.push_back(r.marker(prefix));
  count_queue(per_queue, r.queue);
}

void Relay::Taken::add_below(const Row& r) {
  requeued.push_back(Requeue{r.seq, r.id});
  count_queue(per_queue, r.queue);
}

Relay::Relay(const config::Redis& redis, storage::Writer& writer, std::vector<std::string> queues)
    : cfg_(redis), writer_(writer), queues_(std::move(queues)) {
  std::random_device random;  // notes of two daemons (or runs) on one Redis never meet
  note_prefix_ = cfg_.prefix + ":relay:refused:" + std::to_string(random()) + ":";
  mark_key_ = cfg_.prefix + ":projected";
  db_key_ = cfg_.prefix + ":db";
}

Relay::~Relay() {
  stop(std::chrono::milliseconds(0));
}

void Relay::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sb-relay");
    loop();
  });
}

void Relay::stop(std::chrono::milliseconds flush_deadline) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
    flush_until_ = std::chrono::steady_clock::now() + flush_deadline;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

// Outbox rows are counted by seq, not count(*): counting a backlog of millions after an outage
// took longer than a relay pass. The writer's sequence has no gaps (a rolled-back insert gives
// its seq back), and no row above both the watermark and the database's projected mark
// (relay_state: the highest seq ever deleted) is deleted yet, so those rows run unbroken from the
// first to the last: two rowid seeks. Below the projected mark and above the watermark lie only
// rows left from the last run (or from before a re-projection) that the relay has not read yet:
// held rows, mostly, few; those are counted one by one. Held rows, behind the watermark, are
// counted by the relay.
std::int64_t Relay::pending(storage::Db& db) const {
  auto st = db.prepare(
      "WITH b AS (SELECT ?1 AS w, coalesce((SELECT projected FROM relay_state), 0) AS d) "
      "SELECT coalesce((SELECT max(seq) FROM outbox WHERE seq > max(b.w, b.d)) - "
      "(SELECT min(seq) FROM outbox WHERE seq > max(b.w, b.d)) + 1, 0) + "
      "(SELECT count(*) FROM outbox WHERE seq > b.w AND seq <= b.d) FROM b");
  st.bind(1, published_watermark_.load());
  st.step();
  return st.int64(0) + held_rows_.load();
}

// The first row above the watermark is the oldest the relay has not read yet. Held rows lie
// below it: while there are any, the outbox's first row counts too (a held one, or one taken
// whose delete has not committed yet, a few ms at most).
std::int64_t Relay::oldest_pending_ms(storage::Db& db) const {
  auto st = db.prepare(
      "SELECT coalesce((SELECT created_at FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT 1), 0), "
      "coalesce((SELECT created_at FROM outbox ORDER BY seq LIMIT 1), 0)");
  st.bind(1, published_watermark_.load());
  st.step();
  std::int64_t fresh = st.int64(0), first = st.int64(1);
  if (held_rows_.load() > 0 && first > 0) {
    return fresh > 0 ? std::min(fresh, first) : first;
  }
  return fresh;
}

void Relay::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

std::string Relay::redis_error() const {
  std::lock_guard lock(err_mu_);
  return redis_error_;
}

void Relay::set_error(const std::string& e) {
  {
    std::lock_guard lock(err_mu_);
    redis_error_ = e;
  }
  // Once per episode: when a working connection fails, and when Redis cannot be reached from
  // the start (refused, WRONGPASS), which was never said before: redis_ok_ starts false.
  if (redis_ok_.exchange(false) || !down_logged_) {
    logger("relay")->warn("[redis {}:{}] unavailable: {}; ingest continues, outbox holds the work",
                          cfg_.host, cfg_.port, e);
  }
  down_logged_ = true;
}

void Relay::loop() {
  started_ms_ = now_ms();
  Conn conn;
  // After a failed handshake or a pass that Redis as a whole failed: 100 ms doubling to 5 s,
  // reset by a pass that went through. A Redis that takes the handshake but refuses every script
  // (OOM) is not reconnected to in a tight loop.
  auto backoff = std::chrono::milliseconds(100);
  auto back_off = [&] {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, backoff, [&] { return stopping_; });
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  };
  bool read_failing = false;
  for (;;) {
    bool stopping;
    {
      std::lock_guard lock(mu_);
      stopping = stopping_;
    }
    if (stopping && std::chrono::steady_clock::now() >= flush_until_) {
      break;
    }
    retry_requeues();  // the writer's, not Redis's: also while Redis is down
    if (!conn.ctx) {
      if (auto why = connect(conn); !why.empty()) {
        set_error(why);
        conn.close();
        if (stopping) {
          break;  // no Redis to flush to; the outbox keeps the rows for the next start
        }
        back_off();
        continue;
      }
      if (!redis_ok_.exchange(true)) {
        logger("relay")->info("[redis {}:{}] connected", cfg_.host, cfg_.port);
      }
      down_logged_ = false;
      for (auto& [stream, h] : held_) {
        h.retry_at = std::chrono::steady_clock::now();  // a Redis that came back may be repaired
      }
      check_mark_ = true;  // a restarted Redis, or a replica promoted, may have lost entries
    }
    auto outcome = Outcome::idle;
    try {
      if (!reader_) {
        reader_ = std::make_unique<Reader>(writer_.path());
      }
      if (check_mark_) {
        outcome = reconcile(conn);
        published_watermark_ = watermark_;
        check_mark_ = outcome != Outcome::idle;
      }
      if (outcome == Outcome::idle) {
        outcome = pass(conn);
        published_watermark_ = watermark_;
      }
      if ((outcome == Outcome::idle || outcome == Outcome::more) && !retry_held(conn)) {
        outcome = Outcome::redis_failed;
      }
      if (lost_) {
        outcome = Outcome::lost;
      }
    } catch (const std::exception& e) {
      // Logged once per episode, and backed off like a Redis failure (the connection to Redis
      // stays): every commit wakes the relay, and a lasting read error (I/O, a lock held by
      // another process) would otherwise be retried and logged hundreds of times a second.
      if (!read_failing) {
        logger("relay")->error("[relay] outbox read failed: {}; retrying with back-off", e.what());
      }
      read_failing = true;
      reader_.reset();  // no read transaction left open; a fresh connection next pass
      if (stopping) {
        break;  // the outbox keeps the rows for the next start
      }
      back_off();
      continue;
    }
    if (read_failing) {
      read_failing = false;
      logger("relay")->info("[relay] outbox readable again");
    }
    if (outcome == Outcome::lost) {
      // Redis lost entries: reconnect at once (the handshake makes the groups again), then
      // reconcile() re-projects what it lost.
      conn.close();
      continue;
    }
    if (outcome == Outcome::redis_failed) {
      conn.close();  // reconnect: a new handshake reloads the script (NOSCRIPT), the groups
      back_off();
      continue;
    }
    if (outcome == Outcome::held) {
      // Redis projects another database, or is ahead of this one (guard.cpp): looked at again
      // every second, not at every commit, until the operator clears the prefix's keys.
      check_mark_ = true;
      if (stopping) {
        break;  // the outbox keeps the rows
      }
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stopping_; });
      woken_ = false;
      continue;
    }
    backoff = std::chrono::milliseconds(100);
    if (std::chrono::steady_clock::now() - eviction_checked_ >= eviction_every_) {
      check_eviction(conn);  // a failed look changes nothing; the next pass finds the failure
    }
    if (stopping && outcome != Outcome::more) {
      break;  // flushed (held rows stay in the outbox for the next start)
    }
    if (outcome != Outcome::more) {
      // Sleep until woken, for at most 1 s (the idle PING), or until a held stream's retry.
      auto wait = std::chrono::milliseconds(1000);
      auto now = std::chrono::steady_clock::now();
      for (const auto& [stream, h] : held_) {
        auto until = std::max(h.retry_at - now, std::chrono::steady_clock::duration::zero());
        wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(until));
      }
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, wait, [&] { return woken_ || stopping_; });
      woken_ = false;
      // Let a few more commits gather: one pass per ~2 ms under load instead of one per commit.
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  reader_.reset();
  // Requeues the writer still refuses. A re-projected one (no old row) is in no queue: nothing
  // finds it again. One added below the mark is in Redis, and its old row usually still in the
  // outbox, sent again (and requeued) at the next start.
  std::lock_guard lock(requeue_mu_);
  std::string lost;
  for (const auto& r : failed_requeues_) {
    if (r.old == 0) {
      lost += (lost.empty() ? "" : ", ") + r.id;
    }
  }
  if (!lost.empty()) {
    logger("relay")->error(
        "[relay] stopping while the database refuses the outbox rows of re-projected "
        "interactions their stream refused: {} stay open in no queue; an outbox row each, "
        "written while switchboard is stopped, queues them at the next start (README: Redis)",
        lost);
  }
}

// One pass of the common path: the next rows after the watermark, in seq order.
Relay::Outcome Relay::pass(Conn& c) {
  Reader& rd = *reader_;
  Batch b;
  rd.db.exec("BEGIN");  // one read snapshot for the batch
  rd.fresh.bind(1, watermark_).bind(2, kBatch);
  read_rows(c, rd.fresh, b, false);
  rd.db.exec("COMMIT");
  // Rows are read a few ms after their commit; far later means the relay was held up (Redis
  // slow or down, the thread starved, a wake-up missed) or the writer was (its own stall says
  // so). Counted once per episode, until a pass finds the outbox caught up; rows left from
  // before this start count from the start.
  if (b.rows.empty()) {
    behind_ = false;
  } else {
    auto waited = std::chrono::milliseconds(now_ms() - std::max(b.first_created_ms, started_ms_));
    if (waited <= kStallThreshold) {
      behind_ = false;
    } else if (!behind_) {
      behind_ = true;
      note_stall(Stall::relay, fmt::format("outbox rows read now ({}) were written up to {} ms "
                                           "ago; agents waited that long for them (counted once "
                                           "until the relay catches up)",
                                           b.rows.size(), waited.count()));
    }
  }
  if (!unlink_markers(c)) {
    return Outcome::redis_failed;
  }
  if (b.rows.empty()) {
    // Keeps /readyz honest while idle, and finds a loss (FLUSHALL, a restore) within a second
    // even when nothing new arrives to be refused for it.
    // The guard's check (guard.cpp) rather than a GET: a Redis cleared meanwhile and taken by
    // another database's switchboard is found here too.
    std::int64_t mark = 0;
    if (auto g = guard(c, mark); g != Outcome::idle) {
      return g;
    }
    if (mark < mark_) {
      lost_ = true;
      return Outcome::lost;
    }
    return Outcome::idle;
  }
  bool whole = b.sent.empty() || send(c, b);
  // In outbox order, up to the first row Redis as a whole did not take: the watermark moves past
  // each row; one Redis took leaves the outbox, one its stream refused is held there.
  Taken taken;
  bool next_to_last = false;  // the row before was taken too: one delete range for both
  // Nothing held: every row up to the watermark is in Redis, so the first range may start at
  // the outbox's beginning and sweeps rows whose earlier delete failed too (one `seq <= upto`).
  bool sweep = held_.empty();
  std::int64_t seen = 0;
  for (Row& r : b.rows) {
    if (r.fate == Row::Fate::unsent) {
      break;
    }
    if (r.fate == Row::Fate::added && held_.contains(r.stream)) {
      // Its stream refused an earlier row of this pass, yet took this one. The pass's note
      // prevents that (unless it expired mid-pass); hold it all the same, so that the held
      // rows' count stays right: the retry finds its marker and skips it.
      logger("relay")->warn("[relay] interaction {} reached {} ahead of an earlier held one", r.id,
                            r.stream);
      r.fate = Row::Fate::refused;
    }
    if (r.fate == Row::Fate::refused) {
      hold(r);
      next_to_last = false;
    } else if (r.below) {
      taken.add_below(r);  // left from before this start or a loss: Redis's mark passed it
      next_to_last = false;
    } else {
      taken.add(r, next_to_last, cfg_.prefix);
      if (sweep && seen == 0) {
        taken.ranges.front().first = 0;
      }
      next_to_last = true;
    }
    watermark_ = r.seq;
    ++seen;
  }
  remove(taken);
  publish_held();
  if (!whole) {
    return lost_ ? Outcome::lost : Outcome::redis_failed;
  }
  return b.rows.size() == static_cast<std::size_t>(kBatch) ? Outcome::more : Outcome::idle;
}

// Deletes the taken rows from the outbox (one writer job), and raises the database's projected
// mark with them (in the same transaction). Once the delete is on disk no replay can reach
// these operations, not even after a power loss: their markers go then (on a pass after the
// next full checkpoint) instead of filling Redis for the TTL. A crash before that leaves them
// to expire. Rows taken below the mark get a new outbox row instead (requeue): their markers
// stay, and they count as delivered when that row is deleted.
void Relay::remove(Taken& t) {
  requeue(std::move(t.requeued));
  if (!t.ranges.empty()) {
    delivered_ += t.markers.size();
    auto markers = std::make_shared<std::vector<std::string>>(std::move(t.markers));
    writer_.submit(storage::Job{
        [ranges = std::move(t.ranges)](storage::Db& wdb) {
          static thread_local storage::Db* prepared_for = nullptr;
          static thread_local std::optional<storage::Stmt> del, mark;
          if (prepared_for != &wdb) {
            del.emplace(wdb.prepare("DELETE FROM outbox WHERE seq BETWEEN ?1 AND ?2"));
            mark.emplace(
                wdb.prepare("UPDATE relay_state SET projected = max(projected, ?1) WHERE id = 1"));
            prepared_for = &wdb;
          }
          for (const auto& [from, to] : ranges) {
            del->bind(1, from).bind(2, to).run();
          }
          mark->bind(1, ranges.back().second).run();  // ranges in seq order
        },
        [this, markers](const std::string& error) {
          if (error.empty()) {
            auto commit = writer_.commits();  // this one, or later
            std::lock_guard lock(unlink_mu_);
            for (auto& m : *markers) {
              unlink_.emplace_back(commit, std::move(m));
            }
          }
        }});
  }
  if (on_delivered_) {
    for (const auto& [q, n] : t.per_queue) {
      on_delivered_(q, n);
    }
  }
}

}  // namespace sb
