#include "storage/writer.hpp"

#include <sqlite3.h>

#include <algorithm>

#include <pthread.h>

#include "core/log.hpp"
#include "core/stalls.hpp"
#include "core/time.hpp"
#include "storage/schema.hpp"

namespace sb::storage {

namespace {
// Upper bound of jobs per transaction: keeps one commit's latency bounded under a flood.
constexpr std::size_t kMaxBatch = 4096;
// Group commit under sustained load: when the last commit ended less than kLinger ago and fewer
// than kLingerJobs jobs wait, the writer waits for more, until kLinger after that commit or
// until kLingerJobs are queued (PostgreSQL's commit_delay, bounded). Every commit writes the WAL
// frames of each page it touched and wakes the relay; with agents claiming and finishing while
// ingest ran at 5,000/s, commits held three jobs on average, and lingering took the writer from
// 88 to 62-71 us of CPU per item there. An isolated request never waits (the last commit is
// long past), and neither does a batch of kLingerJobs or more: at 64 clients waiting on their
// commits, waiting for more only added latency (bench_voice: 18-20k/s with a threshold of 64,
// 22-23k without lingering, 24-25k with 8, in interleaved runs).
constexpr auto kLinger = std::chrono::microseconds(1000);
constexpr std::size_t kLingerJobs = 8;

// The WAL. SQLite starts writing it from the beginning again ("restarts" it) only when a write
// transaction begins while every frame in it has been copied into the database file. A
// checkpoint on another thread never sees that under sustained load: while it copies, the writer
// appends. The WAL then grew without end (1 GB after 6 s of bench_writer), every commit extended
// the file (the kernel allocating page-cache pages and ext4 reserving blocks: ext4_da_write_begin
// took 16% of bench_writer's CPU, 7% now), readers searched an ever longer wal-index, and
// durable_commits() advanced only when a checkpoint happened to find the writer idle. So the
// checkpoint thread copies the bulk (started every kCheckpointEvery, or as soon as the WAL holds
// checkpoint_frames), and then the writer copies the few frames appended meanwhile itself,
// between two transactions; its next BEGIN restarts the WAL, which stays a few tens of MiB,
// rewritten in place. The price: once per checkpoint (every 32 MiB of WAL under load), commits
// wait for that small copy and its two fsyncs, which dominate: 2-28 ms in bench_writer here
// (median 14-18), as this disk's fsync time varies with the writes in flight. bench_ingest's
// p99 stayed at 9-12 ms; a 128 MiB threshold changed nothing measurable.
constexpr auto kCheckpointEvery = std::chrono::milliseconds(500);
constexpr std::int64_t kWalSizeLimit = 64 << 20;  // truncated back to this after a burst
constexpr int kCheckpointPasses = 6;
constexpr int kCatchUpFrames = 64;  // fewer left than this: no further pass needed
// The checkpoint thread can fall far behind: on a machine so loaded that it is rarely scheduled,
// a pass copying the WAL holds SQLite's checkpoint lock for long, and the writer's own copy
// finds it taken (SQLITE_BUSY, never waited for, whatever the mode: sqlite3WalCheckpoint) while
// it goes on appending: the WAL reached 37-135 MiB in the writer test with 1 MiB asked, at load
// averages of 3-12 on 2 cores. At this many times checkpoint_frames the writer waits for the
// thread's pass to end (pass_mu_: waiting, it leaves the thread the CPU) and copies the rest
// itself before its next transaction: a long stall, but the WAL stops growing.
constexpr int kWriterWaitsAt = 4;
// A checkpoint that keeps failing (a full disk: "database or disk is full") fails every
// kCheckpointEvery: its first failure is logged, then at most one line this often with the count
// since, and one line when a checkpoint goes through again (7,200 lines an hour otherwise).
constexpr auto kCheckpointFailureLogEvery = std::chrono::minutes(1);
}  // namespace

namespace {
struct Deferred {
  Writer::Flush flush;
  std::vector<std::function<void()>> fns;
};
// Set while a batch's done callbacks run on the writer thread.
thread_local std::vector<std::pair<const void*, Deferred>>* deferred = nullptr;
}  // namespace

bool Writer::defer(const void* key, Flush flush, std::function<void()> fn) {
  if (!deferred) {
    return false;
  }
  for (auto& [k, d] : *deferred) {
    if (k == key) {
      d.fns.push_back(std::move(fn));
      return true;
    }
  }
  deferred->push_back({key, Deferred{std::move(flush), {}}});
  deferred->back().second.fns.push_back(std::move(fn));
  return true;
}

Writer::Writer(const std::string& path, int checkpoint_frames, Synchronous sync)
    : db_(path), checkpoint_frames_(checkpoint_frames), sync_(sync) {
  migrate(db_);
  if (sync_ == Synchronous::full) {
    db_.exec("PRAGMA synchronous=FULL");  // this connection's commits; Db set NORMAL
  }
  // Checkpoints copy the WAL into the database file and fsync it: slow on some disks. They run
  // on their own thread and connection (checkpoint_loop) so that commits never wait for them.
  db_.exec("PRAGMA wal_autocheckpoint=0");
  db_.exec("PRAGMA journal_size_limit=" + std::to_string(kWalSizeLimit));
  sqlite3_wal_hook(
      db_.raw(),
      [](void* self, sqlite3*, const char*, int frames) {
        auto* w = static_cast<Writer*>(self);
        w->wal_frames_ = frames;
        if (frames >= kWriterWaitsAt * w->checkpoint_frames_) {
          w->far_behind_ = true;
          w->catch_up_ = true;
        } else if (frames >= w->checkpoint_frames_) {
          w->request_checkpoint();
        }
        return SQLITE_OK;
      },
      this);
}

void Writer::request_checkpoint() {
  // While the writer still has to catch up, another checkpoint would only collide with it.
  if (!catch_up_.load() && !checkpoint_wanted_.exchange(true)) {
    std::lock_guard lock(mu_);
    checkpoint_cv_.notify_all();
  }
}

// On the writer thread, between transactions: copies what the checkpoint thread left (frames
// committed while it ran). When everything is copied, the next BEGIN restarts the WAL, and every
// commit so far is in the synced database file.
void Writer::catch_up_checkpoint() {
  if (!catch_up_.exchange(false)) {
    return;
  }
  std::unique_lock<std::mutex> pass;
  if (far_behind_.exchange(false)) {
    pass = std::unique_lock(pass_mu_);  // see kWriterWaitsAt
  }
  int log = 0, copied = 0;
  int rc = sqlite3_wal_checkpoint_v2(db_.raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
  if (rc == SQLITE_OK && log == copied) {
    advance_durable(commits_.load());
  }
}

// Both checkpointers report; the larger count wins (the thread's may be older than the writer's).
void Writer::advance_durable(std::uint64_t upto) {
  auto seen = durable_commits_.load();
  while (seen < upto && !durable_commits_.compare_exchange_weak(seen, upto)) {
  }
}

Writer::~Writer() {
  stop();
}

void Writer::start() {
  std::lock_guard lock(mu_);
  if (started_) {
    return;
  }
  started_ = true;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sb-writer");
    loop();
  });
  checkpointer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sb-checkpoint");
    checkpoint_loop();
  });
}

void Writer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  checkpoint_cv_.notify_all();
  // thread_ is joined outside mu_ (the loop takes it); submit() reads joined_, never thread_.
  if (thread_.joinable()) {
    thread_.join();
  }
  if (checkpointer_.joinable()) {
    checkpointer_.join();
  }
  // Jobs that raced with stop() (or a writer never started) are failed, never dropped silently.
  std::vector<Job> left;
  {
    std::lock_guard lock(mu_);
    joined_ = true;
    left.swap(queue_);
  }
  for (auto& j : left) {
    if (j.done) {
      j.done("the daemon is shutting down");
    }
  }
}

void Writer::submit(Job job) {
  {
    std::lock_guard lock(mu_);
    // Queued: before start() (run once started), or while the writer still runs (it drains
    // them, or stop() fails what is left). Failed at once: stopping and no thread to run it.
    if (!stopping_ || (started_ && !joined_)) {
      job.queued = std::chrono::steady_clock::now();
      queue_.push_back(std::move(job));
      // A busy writer drains the queue before it waits again: waking it costs a futex call per
      // request for nothing.
      if (idle_ || (lingering_ && queue_.size() == kLingerJobs)) {
        cv_.notify_one();
      }
      return;
    }
  }
  if (job.done) {
    job.done("the daemon is shutting down");
  }
}

void Writer::probe() {
  submit({[](Db& db) {
            auto st = db.prepare(
                "INSERT INTO cursors(account, scope, value, updated_at) "
                "VALUES ('switchboard', 'writable', '', ?1) "
                "ON CONFLICT(account, scope) DO UPDATE SET updated_at=excluded.updated_at");
            st.bind(1, now_ms());
            st.run();
          },
          {}});
}

std::chrono::steady_clock::duration Writer::busy_for() const {
  auto since = busy_since_.load(std::memory_order_relaxed);
  if (since == 0) {
    return {};
  }
  auto queued = std::chrono::steady_clock::time_point(std::chrono::steady_clock::duration(since));
  return std::max(std::chrono::steady_clock::now() - queued, std::chrono::steady_clock::duration{});
}

std::size_t Writer::backlog() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void Writer::loop() {
  std::vector<Job> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      idle_ = true;
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      idle_ = false;
      if (queue_.empty()) {
        return;  // stopping and drained
      }
      if (queue_.size() < kLingerJobs &&
          std::chrono::steady_clock::now() - last_commit_ < kLinger) {
        lingering_ = true;
        cv_.wait_until(lock, last_commit_ + kLinger,
                       [&] { return stopping_ || queue_.size() >= kLingerJobs; });
        lingering_ = false;
      }
      if (queue_.size() <= kMaxBatch) {
        batch.swap(queue_);
      } else {
        batch.assign(std::make_move_iterator(queue_.begin()),
                     std::make_move_iterator(queue_.begin() + kMaxBatch));
        queue_.erase(queue_.begin(), queue_.begin() + kMaxBatch);
      }
    }
    // Two relaxed stores a batch, none per job: /readyz reads how long the batch has taken.
    busy_since_.store(batch.front().queued.time_since_epoch().count(), std::memory_order_relaxed);
    auto began = std::chrono::steady_clock::now();
    catch_up_checkpoint();
    auto caught_up = std::chrono::steady_clock::now();
    run_batch(batch);
    busy_since_.store(0, std::memory_order_relaxed);
    last_commit_ = std::chrono::steady_clock::now();
    // The batch's first job waited longest: in the queue (behind a long transaction, or a
    // writer that cannot keep up), then for this transaction.
    if (last_commit_ - batch.front().queued > kStallThreshold) {
      using std::chrono::duration_cast, std::chrono::milliseconds;
      auto ms = [](auto d) { return duration_cast<milliseconds>(d).count(); };
      note_stall(
          Stall::writer,
          fmt::format("requests waited up to {} ms for their commit: {} ms in the writer's "
                      "queue, then {} ms for a transaction of {} job(s), {} ms of it "
                      "copying the WAL's last frames (checkpoint catch-up)",
                      ms(last_commit_ - batch.front().queued), ms(began - batch.front().queued),
                      ms(last_commit_ - began), batch.size(), ms(caught_up - began)));
    }
    batch.clear();
  }
}

// Runs the jobs inside the open transaction. isolate=false: no savepoints; stops at the first
// job that throws and returns false (the caller rolls the whole batch back). isolate=true: a
// savepoint around each job, so a failing job undoes only its own changes.
bool Writer::run_jobs(std::vector<Job>& batch, std::vector<std::string>& errors, bool isolate) {
  static thread_local Stmt savepoint = db_.prepare("SAVEPOINT job");
  static thread_local Stmt release = db_.prepare("RELEASE job");
  static thread_local Stmt rollback_to = db_.prepare("ROLLBACK TO job");
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!isolate) {
      try {
        batch[i].run(db_);
      } catch (const std::exception&) {
        db_.reset_statements();  // the job may have thrown with one of them mid-step
        return false;
      }
      continue;
    }
    savepoint.run();
    try {
      batch[i].run(db_);
      release.run();
    } catch (const std::exception& e) {
      errors[i] = e.what();
      db_.reset_statements();
      if (sqlite3_get_autocommit(db_.raw())) {
        // SQLite rolled the whole transaction back itself (SQLITE_FULL, SQLITE_IOERR, ...):
        // there is no savepoint to return to, and the batch fails with this job's error.
        throw;
      }
      rollback_to.run();
      release.run();
    }
  }
  return true;
}

// Group commit. Jobs almost never fail, and a savepoint per job costs about a fifth of the
// writer's instructions (SQLite copies every page a job touches into the sub-journal), so a
// batch first runs without them; when a job throws, the whole batch is rolled back and run
// again with a savepoint per job, which isolates the failing one.
void Writer::run_batch(std::vector<Job>& batch) {
  static thread_local Stmt begin = db_.prepare("BEGIN IMMEDIATE");
  static thread_local Stmt commit = db_.prepare("COMMIT");
  std::vector<std::string> errors(batch.size());
  std::string commit_error;
  auto rollback = [this] {
    try {
      db_.exec("ROLLBACK");
    } catch (...) {
      // Nothing to roll back: BEGIN failed, or SQLite already rolled back (SQLITE_FULL, ...).
    }
  };
  // Only a commit that wrote says the database is writable: an empty one (a read-only sweep)
  // also commits on a full disk, and /readyz would flap between the two.
  const auto changes_before = sqlite3_total_changes64(db_.raw());
  try {
    begin.run();
    if (!run_jobs(batch, errors, false)) {
      rollback();
      ++reruns_;
      // SQLite 3.40 loses a commit at crash recovery when a savepoint is rolled back past a
      // WAL frame that SQLite rewrote in place, which takes a cache spill inside the savepoint:
      // ROLLBACK TO leaves wal.c's iReCksum behind, and the frames written after it keep zeroed
      // checksums (a randomised run found it with plain SQLite; the writer test checks that
      // this pass runs without spills). So the isolated pass never spills: its pages stay in
      // memory until COMMIT. A batch this path reruns is at most kMaxBatch jobs.
      db_.exec("PRAGMA cache_spill=OFF");
      try {
        begin.run();  // inside: a BEGIN that fails (busy, I/O) must not leave spills off
        run_jobs(batch, errors, true);
      } catch (...) {
        db_.exec("PRAGMA cache_spill=ON");
        throw;
      }
      db_.exec("PRAGMA cache_spill=ON");
    }
    commit.run();
    if (sqlite3_total_changes64(db_.raw()) != changes_before) {
      healthy_ = true;
    }
    ++commits_;
    if (sync_ == Synchronous::full) {
      advance_durable(commits_.load());  // COMMIT returned after SQLite synced the WAL
    }
  } catch (const std::exception& e) {
    commit_error = e.what();
    rollback();
    if (healthy_.exchange(false)) {
      logger("storage")->error("[writer] transaction failed: {}", commit_error);
    }
  }
  std::vector<std::pair<const void*, Deferred>> handover;
  deferred = &handover;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].done) {
      batch[i].done(commit_error.empty() ? errors[i] : commit_error);
    }
  }
  deferred = nullptr;
  for (auto& [key, d] : handover) {
    d.flush(std::move(d.fns));
  }
  jobs_done_ += batch.size();
  if (commit_error.empty() && on_commit_) {
    on_commit_();
  }
}

void Writer::checkpoint_loop() {
  Db db(db_.path());
  std::uint64_t failures = 0;  // in a row; 0 while checkpoints go through
  std::uint64_t unlogged = 0;  // of those, since the last line
  std::chrono::steady_clock::time_point logged;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (checkpoint_cv_.wait_for(lock, kCheckpointEvery,
                                  [&] { return stopping_ || checkpoint_wanted_.load(); }) &&
          stopping_) {
        break;
      }
    }
    checkpoint_wanted_ = false;
    try {
      // PASSIVE: copies what no reader still needs, never blocks the writer or readers. When it
      // copied the whole WAL, SQLite synced the WAL and then the database file: every commit
      // made before it started is on disk. Each pass copies what was appended during the one
      // before, and syncs the WAL; then the writer copies the rest itself (see
      // kCheckpointEvery). The more passes ran first, the shorter the writer's stall (its two
      // fsyncs find less to write): bench_ingest's p99 was 10-12 ms with up to kCheckpointPasses
      // passes, 15 when stopping once fewer than 256 frames were left, 18-21 below 1,024.
      std::int64_t log = 0;
      for (int pass = 0; pass < kCheckpointPasses; ++pass) {
        std::uint64_t upto = commits_.load();
        std::lock_guard in_pass(pass_mu_);
        auto st = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
        if (!st.step() || st.int64(0) != 0) {
          break;  // busy: the writer is catching up already
        }
        log = st.int64(1);
        if (log == st.int64(2)) {
          advance_durable(upto);
        }
        // Writes outpacing the passes (the WAL at twice the threshold): the writer catches up
        // now, whatever its stall, rather than let the WAL grow on.
        auto frames = wal_frames_.load();
        if (frames - st.int64(2) < kCatchUpFrames || frames >= 2 * checkpoint_frames_) {
          break;
        }
      }
      // Even a complete copy is usually a commit behind by the time the writer begins its next
      // transaction.
      if (log > 0) {
        catch_up_ = true;
        checkpoint_wanted_ = false;
      }
      if (failures > 0) {
        logger("storage")->info("[checkpoint] checkpoint recovered after {} failed attempts",
                                failures);
        failures = 0;
      }
    } catch (const std::exception& e) {
      auto now = std::chrono::steady_clock::now();
      if (failures++ == 0) {
        logger("storage")->warn(
            "[checkpoint] {}; the WAL grows until a checkpoint goes through (retried every {} "
            "ms, logged at most once a minute)",
            e.what(), kCheckpointEvery.count());
        logged = now;
        unlogged = 0;
      } else {
        ++unlogged;
        if (now - logged >= kCheckpointFailureLogEvery) {
          logger("storage")->warn("[checkpoint] {} ({} more failed attempts since the last line)",
                                  e.what(), unlogged);
          logged = now;
          unlogged = 0;
        }
      }
    }
  }
  try {
    db.exec("PRAGMA wal_checkpoint(PASSIVE)");
  } catch (...) {
    // Best effort at shutdown; the WAL is replayed on the next open anyway.
  }
}

}  // namespace sb::storage
