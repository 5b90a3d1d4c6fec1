#pragma once
// Long-poll claims waiting for work, per queue; io thread only. A waiting claim sleeps on a
// timer, so it holds no thread. When the relay delivers to a queue (or an item is released or
// transferred into it), as many waiters as items are woken; a woken waiter that got an item
// wakes two more (a fan-out, for items a notification did not count, such as timed-out ones).
// The generation counter closes the race between an empty claim and going to sleep: a
// delivery in between bumps it, and the claimer tries again instead of sleeping.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>

namespace sb::agents {

class Waiters {
 public:
  std::uint64_t generation(const std::string& queue) { return generation_[queue]; }
  // `n` items arrived in `queue`: bump its generation and wake up to `n` waiters (their claims
  // then share one script run, see QueueOps). Waiters of agent `except` are not woken: an item
  // it released is not for its claims (they would find nothing and sleep again).
  void notify(const std::string& queue, std::size_t n = 1, const std::string& except = {});
  // Sleeps until notified or `until`; true when notified. `agent`: whose claim waits.
  boost::asio::awaitable<bool> wait(const std::string& queue,
                                    std::chrono::steady_clock::time_point until,
                                    const std::string& agent = {});
  void wake_all();  // shutdown: every waiter returns now
  std::size_t waiting(const std::string& queue) const;

 private:
  struct Slot {
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::string agent;
    bool woken = false;
  };
  std::map<std::string, std::list<std::shared_ptr<Slot>>> slots_;
  std::map<std::string, std::uint64_t> generation_;
};

}  // namespace sb::agents
