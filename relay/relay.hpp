#pragma once
// The relay: projects committed outbox rows into Redis Streams (DESIGN-NOTES invariant 3).
// It reads the outbox through its own read connection, sends a batch of EVALSHA calls in one
// write (pipelining), reads the replies in one pass, then asks the writer to delete the rows.
// The Lua script sets a per-operation marker and XADDs atomically, so a replay after a crash
// between XADD and the delete adds nothing; once the delete is on disk the marker is unlinked
// (it would otherwise hold Redis memory for its 7-day TTL). While Redis is down it retries
// with back-off and ingest is unaffected: the outbox simply grows.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"
#include "storage/writer.hpp"

namespace sb {

class Relay {
 public:
  Relay(const config::Redis& redis, storage::Writer& writer, std::vector<std::string> queues);
  ~Relay();

  void start();
  // Delivers what is committed (for at most `flush_deadline`), then ends the thread.
  void stop(std::chrono::milliseconds flush_deadline = std::chrono::seconds(5));
  void wake();  // new outbox rows were committed

  bool redis_ok() const { return redis_ok_.load(); }
  std::string redis_error() const;
  std::int64_t pending() const { return pending_.load(); }  // outbox rows not yet in Redis
  std::uint64_t delivered() const { return delivered_.load(); }
  // Called on the relay thread after `n` entries were added to a queue's streams (claim
  // wake-ups).
  using Delivered = std::function<void(const std::string& queue, std::size_t n)>;
  void on_delivered(Delivered fn) { on_delivered_ = std::move(fn); }

  // The Lua script, exposed for tests. KEYS: stream, marker per row. ARGV: marker ttl, then
  // the 14 entry field/values per row. Returns {rows done, error of the first failed row}.
  static const char* script();

 private:
  struct Conn;
  void loop();
  bool pass(Conn& c);  // one batch; false when Redis failed
  bool unlink_markers(Conn& c);
  void set_error(const std::string& e);

  config::Redis cfg_;
  storage::Writer& writer_;
  std::vector<std::string> queues_;
  Delivered on_delivered_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point flush_until_;
  std::thread thread_;
  std::int64_t watermark_ = 0;  // highest outbox seq delivered (relay thread only)
  std::mutex unlink_mu_;
  // Markers of operations whose outbox rows are deleted, with the writer's commit count at that
  // delete: a marker goes once that commit is durable (Writer::durable_commits).
  std::deque<std::pair<std::uint64_t, std::string>> unlink_;

  std::atomic<bool> redis_ok_{false};
  std::atomic<std::int64_t> pending_{0};
  std::atomic<std::uint64_t> delivered_{0};
  mutable std::mutex err_mu_;
  std::string redis_error_ = "not connected yet";
};

}  // namespace sb
