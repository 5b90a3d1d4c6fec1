// core/supervise: a long-running task that an exception stops is logged, counted and started
// again after a back-off; a normal return ends it, and stop() ends a back-off wait at once.
#include <doctest/doctest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <stdexcept>
#include <thread>

#include "core/supervise.hpp"
#include "tests/support/harness.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace std::chrono_literals;
using sb::test::eventually;
using sb::test::LogCapture;
namespace asio = boost::asio;

namespace {

// An io_context on a thread of its own, as the daemon's io thread; the "supervisetest" log
// captured. The log goes first and comes last: nothing may write to it while it changes.
struct SuperviseRig {
  SuperviseRig() : thread([this] { io.run(); }) {}
  ~SuperviseRig() {
    work.reset();
    io.stop();
    thread.join();
  }
  LogCapture log{"supervisetest"};
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread;
};

SupervisedTask test_task(const std::string& name) {
  return {"supervisetest", "[test:acct]", "the task", name};
}

// What a task does while it runs as it should: wait until `stop` is set (checked every 5 ms).
asio::awaitable<void> run_until(std::atomic<bool>& stop) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  while (!stop.load()) {
    t.expires_after(5ms);
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace

TEST_CASE("supervise: a task that throws twice is started three times, logged and counted") {
  std::atomic<int> starts{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> ended{false};
  SuperviseRig rig;  // after what its tasks use: its thread ends first
  SuperviseOptions o;
  o.first_backoff = 10ms;
  auto task = Supervised::spawn(
      rig.io.get_executor(), test_task("test_throws_twice"),
      [&]() -> asio::awaitable<void> {
        if (++starts <= 2) {
          throw std::runtime_error("disk I/O error");
        }
        co_await run_until(stop);
      },
      [&] { ended = true; }, o);
  REQUIRE(eventually([&] { return starts.load() == 3; }, 5s));
  CHECK(task_restarts("test_throws_twice") == 2);
  auto lines = rig.log.lines_with("restarting");
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] ==
        "error [test:acct] the task stopped by an exception: disk I/O error; restarting it in "
        "0.01 s");
  CHECK(lines[1] ==
        "error [test:acct] the task stopped by an exception: disk I/O error; restarting it in "
        "0.02 s");  // doubled
  CHECK_FALSE(ended.load());
  // Listed for /metrics with the other tasks.
  bool listed = false;
  for (const auto& [name, n] : task_restarts()) {
    listed = listed || (name == "test_throws_twice" && n == 2);
  }
  CHECK(listed);

  stop = true;  // the task returns: it ends for good
  REQUIRE(eventually([&] { return ended.load(); }, 5s));
  CHECK(starts.load() == 3);
  task->stop();
}

TEST_CASE("supervise: a task that returns is not started again, and its series is there at 0") {
  std::atomic<int> starts{0};
  std::atomic<bool> ended{false};
  SuperviseRig rig;  // after what its tasks use: its thread ends first
  auto task = Supervised::spawn(
      rig.io.get_executor(), test_task("test_returns"),
      [&]() -> asio::awaitable<void> {
        ++starts;
        co_return;
      },
      [&] { ended = true; });
  REQUIRE(eventually([&] { return ended.load(); }, 5s));
  CHECK(starts.load() == 1);
  CHECK(task_restarts("test_returns") == 0);
  bool listed = false;
  for (const auto& [name, n] : task_restarts()) {
    listed = listed || name == "test_returns";
  }
  CHECK(listed);
  CHECK(rig.log.text().empty());
}

TEST_CASE("supervise: stop() during the back-off ends the task at once, without a restart") {
  std::atomic<int> starts{0};
  std::atomic<bool> ended{false};
  SuperviseRig rig;  // after what its tasks use: its thread ends first
  SuperviseOptions o;
  o.first_backoff = 60s;  // a stop that waited for it would take a minute
  auto task = Supervised::spawn(
      rig.io.get_executor(), test_task("test_stop_in_backoff"),
      [&]() -> asio::awaitable<void> {
        ++starts;
        throw std::runtime_error("a bug");
        co_return;
      },
      [&] { ended = true; }, o);
  REQUIRE(eventually([&] { return !rig.log.lines_with("restarting it in 60 s").empty(); }, 5s));
  auto before = std::chrono::steady_clock::now();
  task->stop();  // from another thread than the io thread, as App::stop
  REQUIRE(eventually([&] { return ended.load(); }, 5s));
  CHECK(std::chrono::steady_clock::now() - before < 1s);
  CHECK(starts.load() == 1);
  CHECK(task_restarts("test_stop_in_backoff") == 1);
}

TEST_CASE("supervise: the back-off starts afresh after a run that lasted, and caps") {
  std::atomic<int> starts{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> ended{false};
  SuperviseRig rig;  // after what its tasks use: its thread ends first
  SuperviseOptions o;
  o.first_backoff = 10ms;
  o.max_backoff = 20ms;
  o.healthy = 200ms;
  auto task = Supervised::spawn(
      rig.io.get_executor(), test_task("test_backoff"),
      [&]() -> asio::awaitable<void> {
        int n = ++starts;
        if (n == 4) {
          // A working run: longer than `healthy` before it fails.
          asio::steady_timer t(co_await asio::this_coro::executor, 300ms);
          co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        if (n <= 4) {
          throw 42;  // not a std::exception: restarted all the same
        }
        co_await run_until(stop);
      },
      [&] { ended = true; }, o);
  REQUIRE(eventually([&] { return starts.load() == 5; }, 5s));
  auto lines = rig.log.lines_with("restarting");
  REQUIRE(lines.size() == 4);
  for (const auto& l : lines) {
    CHECK(l.find("stopped by an exception: an exception that is not a std::exception;") !=
          std::string::npos);
  }
  CHECK(lines[0].ends_with("restarting it in 0.01 s"));
  CHECK(lines[1].ends_with("restarting it in 0.02 s"));
  CHECK(lines[2].ends_with("restarting it in 0.02 s"));  // at the cap
  CHECK(lines[3].ends_with("restarting it in 0.01 s"));  // after 300 ms of work: afresh
  stop = true;
  CHECK(eventually([&] { return ended.load(); }, 5s));
}
