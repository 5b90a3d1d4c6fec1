// Re-projection: Redis came back without entries it had taken (restarted without its append-only
// file, from an older snapshot, a replica promoted behind its primary, FLUSHALL). Their outbox
// rows are gone, so the common path would never send them again; the interactions stay open in
// the database, in no queue.
//
// Detection is one script call per connection (and per idle second, relay.cpp; guard.cpp, which
// first checks that Redis projects this database): Redis's mark,
// {prefix}:projected, against the database's, relay_state.projected (the highest outbox seq
// deleted) and what this run saw Redis take. Redis's mark is raised atomically with the entries
// (connect.cpp), so Redis holds every entry up to its mark and none above it: the open
// interactions queued above it whose outbox row is gone are exactly the ones it lost. An
// interaction keeps its outbox seq (interactions.queued_seq), so they are read in the order the
// relay first sent them, by bounded seq ranges (kReprojectSpan seqs, kBatch rows, each read in a
// short transaction), and sent with the same script: the mark rises with them, so a
// re-projection cut short (Redis failing again, a stop) resumes where Redis's mark says, and
// adds nothing twice. The per-interaction markers play no part in that: they are unlinked once
// the outbox row's delete is durable (and expire after 7 days), so an entry still in its stream
// usually has none; the mark is what keeps it from being added again.
//
// Interactions go to their current queue and priority (after transfers). One that was claimed
// when Redis lost it is waiting again: its claim went with Redis's pending list, so its holder's
// ack is answered 409 and the next claim hands it out anew (it may be worked twice). One whose
// stream refuses entries (a key an operator broke) goes back to the outbox as a new row, where
// the held-stream logic (held.cpp) takes it.
#include <future>

#include "core/log.hpp"
#include "core/time.hpp"
#include "relay/parts.hpp"

namespace sb {
using namespace relay_detail;

// The deletes the relay asked for are committed once a job submitted after them has run (the
// writer runs jobs in order): then relay_state.projected covers every row Redis took.
bool Relay::settle_writes() {
  auto settled = std::make_shared<std::promise<void>>();
  auto done = settled->get_future();
  writer_.submit(
      storage::Job{[](storage::Db&) {}, [settled](const std::string&) { settled->set_value(); }});
  while (done.wait_for(std::chrono::milliseconds(100)) != std::future_status::ready) {
    std::lock_guard lock(mu_);
    if (stopping_ && std::chrono::steady_clock::now() >= flush_until_) {
      return false;
    }
  }
  return true;
}

// New outbox rows, after every seq handed out so far, with queued_seq following (the row is the
// connection's last insert), in one writer job; each replaces the row `old` (0: none). Queue and
// priority are the interaction's own, as now (after a transfer); a finished one gets none.
// A failed job would leave its interactions in no queue for good: Redis refused them or has
// them only below its mark, which a re-projection never reads again. It is submitted again
// (retry_requeues) until it goes through; meanwhile an old row stays in the outbox.
void Relay::requeue(std::vector<Requeue> rows) {
  if (rows.empty()) {
    return;
  }
  auto job = std::make_shared<std::vector<Requeue>>(std::move(rows));
  writer_.submit(storage::Job{
      [job, now = now_ms()](storage::Db& db) {
        static thread_local storage::Db* prepared_for = nullptr;
        static thread_local std::optional<storage::Stmt> del, add, follow;
        if (prepared_for != &db) {
          del.emplace(db.prepare("DELETE FROM outbox WHERE seq = ?1"));
          add.emplace(
              db.prepare("INSERT INTO outbox(interaction_id, queue, priority, created_at) "
                         "SELECT id, queue, priority, ?2 FROM interactions "
                         "WHERE id = ?1 AND state IN ('queued', 'claimed')"));
          follow.emplace(
              db.prepare("UPDATE interactions SET queued_seq = last_insert_rowid() WHERE id = ?1"));
          prepared_for = &db;
        }
        for (const Requeue& r : *job) {
          if (r.old != 0) {
            del->bind(1, r.old).run();
          }
          add->bind(1, r.id).bind(2, now).run();
          if (db.changes() > 0) {
            follow->bind(1, r.id).run();
          }
        }
      },
      [this, job](const std::string& error) {
        std::lock_guard lock(requeue_mu_);
        if (error.empty()) {
          if (requeue_failing_ && failed_requeues_.empty()) {
            requeue_failing_ = false;
            logger("relay")->info("[relay] the interactions left in no queue are queued again");
          }
          return;
        }
        if (!requeue_failing_) {
          requeue_failing_ = true;
          logger("relay")->error(
              "[relay] {} interactions (the first {}) could not be queued again: {}; they are in "
              "no queue until a retry goes through (every second)",
              job->size(), job->front().id, error);
        }
        failed_requeues_.insert(failed_requeues_.end(), job->begin(), job->end());
      }});
}

void Relay::retry_requeues() {
  auto now = std::chrono::steady_clock::now();
  std::vector<Requeue> rows;
  {
    std::lock_guard lock(requeue_mu_);
    if (failed_requeues_.empty() || now < requeue_retry_at_) {
      return;
    }
    rows.swap(failed_requeues_);
  }
  requeue_retry_at_ = now + std::chrono::seconds(1);
  requeue(std::move(rows));
}

// Interactions queued before schema 13 have no queued_seq: nothing said where they lay against
// Redis's mark, and a re-projection passed them over. A Redis that has a mark was marked after
// the upgrade, so it has (or had, before a loss) every entry of theirs: they count as below any
// mark, and go back only when Redis lost everything (mark 0). They get seqs below 0, in their
// arrival order, once this Redis has a mark, never from the upgrade itself: the first start
// after it finds Redis without a mark though full, and would have added them all twice. Those
// still in the outbox wait: sent, they get a new row (Row::below). One indexed look per
// connection once none is left.
void Relay::sequence_unsequenced() {
  if (mark_ <= 0) {
    return;
  }
  Reader& rd = *reader_;
  bool any = rd.unsequenced.step();
  rd.unsequenced.reset();
  if (!any) {
    return;
  }
  writer_.submit(storage::Job{
      [](storage::Db& db) {
        db.exec(
            "UPDATE interactions SET queued_seq = seq - (SELECT max(seq) FROM interactions) - 1 "
            "WHERE queued_seq IS NULL AND state IN ('queued', 'claimed') "
            "AND id NOT IN (SELECT interaction_id FROM outbox)");
      },
      [](const std::string& error) {
        if (!error.empty()) {
          logger("relay")->warn(
              "[relay] the interactions queued before schema 13 could not be given a place "
              "before the projection mark: {}; tried again at the next connection",
              error);
        }
      }});
}

Relay::Outcome Relay::reconcile(Conn& c) {
  lost_ = false;
  // First whether Redis projects this database at all (guard.cpp): a Redis of another database,
  // or one ahead of this database (a restored backup), is held, not re-projected into.
  std::int64_t redis_mark = 0;
  if (auto g = guard(c, redis_mark); g != Outcome::idle) {
    return g;
  }
  Reader& rd = *reader_;
  auto db_mark = [&rd] {
    rd.projected.step();
    auto v = rd.projected.int64(0);
    rd.projected.reset();
    return v;
  };
  if (redis_mark >= std::max(db_mark(), mark_)) {
    mark_ = redis_mark;
    sequence_unsequenced();
    return Outcome::idle;
  }
  if (!reprojecting_) {
    reprojecting_ = true;
    episode_rows_ = 0;
    episode_requeued_ = 0;
    episode_swept_ = false;
    episode_swept_entries_ = 0;
    episode_moved_ = 0;
    episode_swept_streams_.clear();
    episode_present_ = 0;
    episode_since_ = std::chrono::steady_clock::now();
    auto db = std::max(db_mark(), mark_);
    if (redis_mark == 0) {
      logger("relay")->error(
          "[redis {}:{}] lost queue entries (restarted without its append-only file, or "
          "flushed), or is used for the first time by a switchboard that keeps a projection "
          "mark: it has no {}, though the database projected up to {}; re-projecting the open "
          "interactions it lacks (prefix {})",
          cfg_.host, cfg_.port, mark_key_, db, cfg_.prefix);
    } else {
      logger("relay")->error(
          "[redis {}:{}] lost queue entries (restarted from an older snapshot without its "
          "append-only file?): its projection mark {} is {}, though the database projected up "
          "to {}; re-projecting the open interactions queued after it (prefix {})",
          cfg_.host, cfg_.port, mark_key_, redis_mark, db, cfg_.prefix);
    }
  }
  if (!settle_writes()) {
    return Outcome::more;  // stopping, and its deadline passed: the next start looks again
  }
  // A Redis with a mark came back with what it had then: entries finished or moved since come
  // back too (sweep.cpp). Every time the loss is found, until the re-projection below raises
  // Redis's mark to the database's: a sweep cut short is done again, whole. A Redis without a
  // mark is swept too: it may have lost the mark alone (evicted under a maxmemory-policy other
  // than noeviction, an operator's DEL) with its streams intact, and the open interactions whose
  // entries the sweep finds there (present_) are not added again. A flushed Redis has no
  // streams: its sweep is one SCAN.
  struct Forget {
    std::unordered_set<std::string>& present;
    ~Forget() { present.clear(); }
  } forget{present_};
  if (auto swept = sweep(c); swept != Outcome::idle) {
    return swept;
  }
  std::int64_t upto = std::max(db_mark(), mark_);
  // From here on, as at a start: the outbox is read from its first row (rows held back, or left
  // below the watermark by a failed delete, are sent again; their markers skip the ones Redis
  // still has), after the interactions Redis lost.
  mark_ = redis_mark;
  watermark_ = 0;
  held_.clear();
  publish_held();
  std::int64_t first = redis_mark;
  if (first == 0) {
    // Nothing left (or a Redis never marked): from the interactions queued before schema 13 too,
    // given seqs below 0 by sequence_unsequenced() once this Redis had a mark.
    rd.oldest.step();
    if (!rd.oldest.is_null(0)) {
      first = std::min<std::int64_t>(0, rd.oldest.int64(0) - 1);
    }
    rd.oldest.reset();
  }
  for (std::int64_t from = first; from < upto;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_ && std::chrono::steady_clock::now() >= flush_until_) {
        return Outcome::more;  // Redis's mark says how far it got: the next start goes on
      }
    }
    std::int64_t to = std::min(upto, from + kReprojectSpan);
    Batch b;
    rd.db.exec("BEGIN");
    rd.lost.bind(1, from).bind(2, to).bind(3, kBatch);
    read_rows(c, rd.lost, b, true, &present_);
    rd.db.exec("COMMIT");
    if (b.rows.size() == static_cast<std::size_t>(kBatch)) {
      to = b.rows.back().seq;
    }
    bool whole = b.sent.empty() || send(c, b);
    Taken taken;
    std::vector<Requeue> refused;
    for (const Row& r : b.rows) {
      if (r.fate == Row::Fate::added) {
        taken.add(r, false, cfg_.prefix);
      } else if (r.fate == Row::Fate::refused) {
        refused.push_back(Requeue{0, r.id});
        ++episode_requeued_;
      }
    }
    requeue(std::move(refused));
    {
      // No outbox row to wait for: nothing replays these once the mark covers them.
      std::lock_guard lock(unlink_mu_);
      for (auto& m : taken.markers) {
        unlink_.emplace_back(0, std::move(m));
      }
    }
    reprojected_ += taken.markers.size();
    episode_rows_ += taken.markers.size();
    if (on_delivered_) {
      for (const auto& [q, n] : taken.per_queue) {
        on_delivered_(q, n);
      }
    }
    if (!whole) {
      return lost_ ? Outcome::lost : Outcome::redis_failed;  // resumed from Redis's mark
    }
    from = to;
  }
  // Redis's mark up to the database's: what lies between was finished, or is in the outbox. Only
  // if Redis still has what the re-projection gave it (not flushed again in between).
  if (mark_ < upto) {
    auto r = c.cmd({"EVAL",
                    "local m = tonumber(redis.call('GET', KEYS[1]) or '0') or 0\n"
                    "if m < tonumber(ARGV[1]) then return 0 end\n"
                    "if m < tonumber(ARGV[2]) then redis.call('SET', KEYS[1], ARGV[2]) end\n"
                    "return 1",
                    "1", mark_key_, std::to_string(mark_), std::to_string(upto)});
    if (!r || r->type == REDIS_REPLY_ERROR) {
      set_error(c.failure(r, "SET " + mark_key_));
      return Outcome::redis_failed;
    }
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
      lost_ = true;  // lost again: start over from what Redis has now
      return Outcome::lost;
    }
    mark_ = upto;
  }
  reprojecting_ = false;
  sequence_unsequenced();
  logger("relay")->warn(
      "[redis {}:{}] re-projected {} open interactions into their queues (prefix {}) in {} ms{}{}; "
      "those claimed at the loss wait to be claimed again",
      cfg_.host, cfg_.port, episode_rows_, cfg_.prefix,
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                            episode_since_)
          .count(),
      episode_present_
          ? fmt::format(", {} left out: their entries were still in the streams", episode_present_)
          : "",
      episode_requeued_
          ? fmt::format(", {} more wait in the outbox for streams that refuse entries",
                        episode_requeued_)
          : "");
  return Outcome::idle;
}

}  // namespace sb
