#pragma once
// The daemon's long-running tasks (a mailbox's poller, a social account's poller, the send loop,
// the periodic sweeps, the io loop's watch) run until their component stops. Failures are
// values there (STYLE 6), so an exception that escapes one is a bug, a bad_alloc or a store call
// that threw: once, that ended the task for good, with one log line, and mail stopped arriving
// (or replies stopped going out) until the next restart of the daemon. A task spawned here is
// started again instead: the exception is logged at error, counted
// (switchboard_task_restarts_total{task}), and the task restarts after a back-off, 1 s doubling
// to 60 s, so that one that fails at once every time neither spins nor floods the log. A task
// that ran 60 s before it failed was a working one: the back-off starts afresh.
//
// A normal return ends the task for good: that is how each one stops (its component's stop flag,
// a cancelled timer). The component's stop() calls Supervised::stop() as well, which ends a
// back-off wait under way at once, so stopping the daemon stays prompt.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

namespace sb {

// What a supervised task is, for its log lines and its series in /metrics.
struct SupervisedTask {
  std::string layer;   // the logger: "email"
  std::string prefix;  // the lines' context: "[email:support] INBOX:", "[daemon]"
  std::string what;    // what stopped, as a line says it: "the poller"
  std::string name;    // its label in switchboard_task_restarts_total{task}: "email_poller"
};

struct SuperviseOptions {
  std::chrono::milliseconds first_backoff{1000};
  std::chrono::milliseconds max_backoff{60 * 1000};
  std::chrono::milliseconds healthy{60 * 1000};  // a run this long resets the back-off
};

class Supervised : public std::enable_shared_from_this<Supervised> {
 public:
  using Factory = std::function<boost::asio::awaitable<void>()>;

  // Runs factory()'s coroutine on `ex`, again after each exception that escapes it, until one
  // returns or stop() is called. `on_end` runs on `ex` once it has ended for good.
  static std::shared_ptr<Supervised> spawn(boost::asio::any_io_executor ex, SupervisedTask task,
                                           Factory factory, std::function<void()> on_end = {},
                                           SuperviseOptions options = {});

  // Any thread: no restart from now on, and a back-off wait under way ends now (the task then
  // ends for good). The running task is stopped by its component's own means.
  void stop();

  Supervised(const Supervised&) = delete;
  Supervised& operator=(const Supervised&) = delete;

 private:
  Supervised(boost::asio::any_io_executor ex, SupervisedTask task, Factory factory,
             SuperviseOptions options)
      : task_(std::move(task)), factory_(std::move(factory)), options_(options), timer_(ex) {}
  static boost::asio::awaitable<void> run(std::shared_ptr<Supervised> self);

  const SupervisedTask task_;
  const Factory factory_;
  const SuperviseOptions options_;
  boost::asio::steady_timer timer_;  // the back-off; its executor's thread only
  std::atomic<bool> stopping_{false};
};

// Restarts by task name, for /metrics; a task has its series (at 0) from its first spawn.
std::vector<std::pair<std::string, std::uint64_t>> task_restarts();
std::uint64_t task_restarts(const std::string& name);

// What an exception a completion handler received says, for its log line: what() of a
// std::exception, else a note that it is none.
std::string exception_what(const std::exception_ptr& e);

}  // namespace sb
