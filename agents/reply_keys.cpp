#include "agents/reply_keys.hpp"

#include <memory>

#include "core/log.hpp"

namespace sb::agents {

namespace {

constexpr std::int64_t kBatch = 500;
constexpr int kMaxBatches = 100;

struct KeySweep {
  storage::Writer& writer;
  std::int64_t cutoff;
  std::function<void(std::int64_t, const std::string&)> done;
  std::int64_t cleared = 0;
  int batches = 0;
};

void next_batch(const std::shared_ptr<KeySweep>& sweep) {
  auto changed = std::make_shared<std::int64_t>(0);
  sweep->writer.submit(storage::Job{
      [sweep, changed](storage::Db& db) {
        // The subquery reads the partial index (created_at of the rows with a key) from its
        // oldest entry: the batch's rows and no others, however large the table.
        auto st = db.prepare(
            "UPDATE sends SET idempotency_key = NULL WHERE interaction_id IN (SELECT "
            "interaction_id FROM sends WHERE idempotency_key IS NOT NULL AND created_at < ?1 "
            "ORDER BY created_at LIMIT ?2)");
        st.bind(1, sweep->cutoff).bind(2, kBatch).run();
        *changed = db.changes();
      },
      [sweep, changed](const std::string& error) {
        if (!error.empty()) {
          logger("agents")->error("[agents] clearing reply keys older than 24 hours failed: {}",
                                  error);
          if (sweep->done) {
            sweep->done(sweep->cleared, error);
          }
          return;
        }
        sweep->cleared += *changed;
        if (*changed == kBatch && ++sweep->batches < kMaxBatches) {
          next_batch(sweep);
          return;
        }
        if (sweep->cleared > 0) {
          logger("agents")->debug("[agents] cleared {} reply keys older than 24 hours",
                                  sweep->cleared);
        }
        if (sweep->done) {
          sweep->done(sweep->cleared, "");
        }
      }});
}

}  // namespace

void expire_reply_keys(storage::Writer& writer, std::int64_t now_ms,
                       std::function<void(std::int64_t, const std::string&)> done) {
  next_batch(
      std::make_shared<KeySweep>(KeySweep{writer, now_ms - kReplyKeyRetentionMs, std::move(done)}));
}

}  // namespace sb::agents
