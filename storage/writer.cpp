#include "storage/writer.hpp"

#include "core/log.hpp"
#include "storage/schema.hpp"

namespace sb::storage {

namespace {
// Upper bound of jobs per transaction: keeps one commit's latency bounded under a flood.
constexpr std::size_t kMaxBatch = 4096;
}  // namespace

Writer::Writer(const std::string& path) : db_(path) { migrate(db_); }

Writer::~Writer() { stop(); }

void Writer::start() {
  std::lock_guard lock(mu_);
  if (started_) {
    return;
  }
  started_ = true;
  thread_ = std::thread([this] { loop(); });
}

void Writer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
  // Jobs that raced with stop() (or a writer never started) are failed, never dropped silently.
  std::vector<Job> left;
  {
    std::lock_guard lock(mu_);
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
    if (!(stopping_ && !thread_.joinable())) {
      queue_.push_back(std::move(job));
      cv_.notify_one();
      return;
    }
  }
  if (job.done) {
    job.done("the daemon is shutting down");
  }
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
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;  // stopping and drained
      }
      if (queue_.size() <= kMaxBatch) {
        batch.swap(queue_);
      } else {
        batch.assign(std::make_move_iterator(queue_.begin()),
                     std::make_move_iterator(queue_.begin() + kMaxBatch));
        queue_.erase(queue_.begin(), queue_.begin() + kMaxBatch);
      }
    }
    run_batch(batch);
    batch.clear();
  }
}

void Writer::run_batch(std::vector<Job>& batch) {
  std::vector<std::string> errors(batch.size());
  std::string commit_error;
  try {
    db_.exec("BEGIN IMMEDIATE");
    for (std::size_t i = 0; i < batch.size(); ++i) {
      db_.exec("SAVEPOINT job");
      try {
        batch[i].run(db_);
        db_.exec("RELEASE job");
      } catch (const std::exception& e) {
        errors[i] = e.what();
        db_.exec("ROLLBACK TO job");
        db_.exec("RELEASE job");
      }
    }
    db_.exec("COMMIT");
    healthy_ = true;
    ++commits_;
  } catch (const std::exception& e) {
    commit_error = e.what();
    try {
      db_.exec("ROLLBACK");
    } catch (...) {
      // Nothing to roll back when BEGIN itself failed.
    }
    if (healthy_.exchange(false)) {
      logger("storage")->error("[writer] transaction failed: {}", commit_error);
    }
  }
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].done) {
      batch[i].done(commit_error.empty() ? errors[i] : commit_error);
    }
  }
  jobs_done_ += batch.size();
  if (commit_error.empty() && on_commit_) {
    on_commit_();
  }
}

}  // namespace sb::storage
