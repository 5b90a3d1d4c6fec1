#pragma once
// The single writer thread with group commit (DESIGN-NOTES "Group commit"). Requests hand it
// jobs; it drains everything waiting, runs the jobs in one BEGIN IMMEDIATE ... COMMIT (each in
// its own SAVEPOINT so a failing job is undone alone), then calls every job's `done`. At 20,000
// requests/s that is a few hundred jobs per commit instead of 20,000 commits.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/sqlite.hpp"

namespace sb::storage {

struct Job {
  // Runs on the writer thread inside the batch transaction. Throw to undo this job only.
  // May run twice: when another job of the batch throws, the batch is rolled back and run again
  // with a savepoint around each job (see Writer::run_batch). So `run` must start from scratch
  // each time: clear or assign what it fills in memory, never accumulate.
  std::function<void(Db&)> run;
  // Runs on the writer thread once the outcome is known: error is "" when the job's changes are
  // committed, else what went wrong (the job's own exception, or a failed COMMIT).
  std::function<void(const std::string& error)> done;
  // Set by Writer::submit: how long the job waited for its transaction (stalls, core/stalls.hpp).
  std::chrono::steady_clock::time_point queued{};
};

// What a commit survives before its jobs hear of it (config storage.synchronous). normal: a
// crash of the process, kill -9 included (WAL with synchronous=NORMAL; the WAL reaches the disk
// at checkpoints). full: also an operating-system crash or a power loss (synchronous=FULL: SQLite
// syncs the WAL at every commit, so one fsync per group commit, shared by its jobs).
enum class Synchronous { normal, full };

// The WAL size (in pages) at which a checkpoint starts at the latest: 8192 pages of 4 KiB, 32 MiB.
// Named, so that a caller passing `sync` (the argument after it) does not repeat the number.
inline constexpr int kDefaultCheckpointFrames = 8192;

class Writer {
 public:
  // Opens (and migrates) the database at `path`; throws Error when it cannot. A checkpoint
  // starts at the latest when the WAL holds `checkpoint_frames` pages.
  explicit Writer(const std::string& path, int checkpoint_frames = kDefaultCheckpointFrames,
                  Synchronous sync = Synchronous::normal);
  ~Writer();  // stop()s

  void start();
  // Runs every job already submitted, then ends the thread. Jobs submitted afterwards fail.
  void stop();

  void submit(Job job);

  // Called on the writer thread after each successful COMMIT (the relay's wake-up).
  void on_commit(std::function<void()> fn) { on_commit_ = std::move(fn); }

  // Completions that must run elsewhere (an io_context) are handed over once per batch rather
  // than once per job: `defer` queues fn under `key` while a batch's done callbacks run, and
  // `flush(key, fns)` is called once per key afterwards. Outside a batch it returns false.
  using Flush = std::function<void(std::vector<std::function<void()>>)>;
  static bool defer(const void* key, Flush flush, std::function<void()> fn);

  // False after a failed COMMIT, until a commit that wrote something works.
  bool healthy() const { return healthy_.load(); }
  // How long the oldest job not yet finished has waited, while the writer runs a transaction
  // (or copies the WAL before one); zero between transactions. A writer wedged in a job (a disk
  // that stopped answering, a lock) commits nothing, and fails nothing either: healthy() stays
  // true, so /readyz asks this too.
  std::chrono::steady_clock::duration busy_for() const;
  // Writes one small row (cursors: account "switchboard", scope "writable"), so that healthy()
  // follows the disk while nothing else writes: the daemon calls it every 10 s.
  void probe();
  std::uint64_t commits() const { return commits_.load(); }
  // Commits known to be on disk (synchronous=NORMAL syncs at checkpoints; FULL at each commit):
  // the first this many survive an OS crash or power loss, not only a process crash.
  std::uint64_t durable_commits() const { return durable_commits_.load(); }
  std::uint64_t jobs_done() const { return jobs_done_.load(); }
  // Batches run a second time, with a savepoint per job, because one of their jobs failed.
  std::uint64_t reruns() const { return reruns_.load(); }
  std::size_t backlog() const;

  const std::string& path() const { return db_.path(); }

 private:
  void loop();
  void run_batch(std::vector<Job>& batch);
  bool run_jobs(std::vector<Job>& batch, std::vector<std::string>& errors, bool isolate);
  void checkpoint_loop();
  void request_checkpoint();   // from the WAL hook: the WAL is long, start one now
  void catch_up_checkpoint();  // writer thread: copy what the checkpoint thread could not
  void advance_durable(std::uint64_t upto);

  Db db_;
  const int checkpoint_frames_;
  const Synchronous sync_;
  mutable std::mutex mu_;
  std::condition_variable cv_;             // the writer thread waits here, and only it: notify_one
  std::condition_variable checkpoint_cv_;  // the checkpoint thread waits: stop, or a long WAL
  std::vector<Job> queue_;
  bool stopping_ = false;
  bool started_ = false;
  bool joined_ = false;     // the writer thread has ended: submit fails jobs at once (under mu_)
  bool idle_ = false;       // the writer thread is waiting: only then does submit() wake it
  bool lingering_ = false;  // it waits for more jobs to join a small batch (see loop())
  std::chrono::steady_clock::time_point last_commit_{};  // writer thread only
  std::thread thread_;
  std::thread checkpointer_;
  std::function<void()> on_commit_;
  std::atomic<bool> healthy_{true};
  // The queued time of the running batch's first job (steady_clock ticks), 0 between batches.
  std::atomic<std::chrono::steady_clock::rep> busy_since_{0};
  std::atomic<std::uint64_t> commits_{0};
  std::atomic<std::uint64_t> durable_commits_{0};
  std::atomic<std::uint64_t> jobs_done_{0};
  std::atomic<std::uint64_t> reruns_{0};
  std::atomic<bool> checkpoint_wanted_{false};
  std::atomic<bool> catch_up_{false};
  std::atomic<bool> far_behind_{false};  // the WAL is kWriterWaitsAt times checkpoint_frames_
  std::mutex pass_mu_;                   // held by the checkpoint thread through each of its passes
  std::atomic<std::int64_t> wal_frames_{0};  // after the last commit (the WAL hook says)
};

}  // namespace sb::storage
