#include "core/supervise.hpp"

#include <algorithm>
#include <exception>
#include <map>
#include <mutex>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.hpp"

namespace sb {
namespace asio = boost::asio;

namespace {

struct Restarts {
  std::mutex mu;
  std::map<std::string, std::uint64_t> by_task;
};

Restarts& restarts() {
  static Restarts r;
  return r;
}

// "1", "60", "0.05": the back-off as the line says it, in seconds.
std::string seconds(std::chrono::milliseconds d) {
  if (d.count() % 1000 == 0) {
    return std::to_string(d.count() / 1000);
  }
  return fmt::format("{:g}", static_cast<double>(d.count()) / 1000.0);
}

}  // namespace

std::shared_ptr<Supervised> Supervised::spawn(asio::any_io_executor ex, SupervisedTask task,
                                              Factory factory, std::function<void()> on_end,
                                              SuperviseOptions options) {
  std::shared_ptr<Supervised> self(
      new Supervised(ex, std::move(task), std::move(factory), options));
  {
    auto& r = restarts();
    std::lock_guard lock(r.mu);
    r.by_task.try_emplace(self->task_.name, 0);
  }
  asio::co_spawn(ex, run(self), [self, on_end = std::move(on_end)](std::exception_ptr e) {
    if (e) {
      // Not the task's exception (run() takes those) but the supervision's own, an allocation
      // that failed while it logged: nothing is left to restart the task with.
      logger(self->task_.layer)
          ->error("{} {} stopped by an exception and could not be restarted", self->task_.prefix,
                  self->task_.what);
    }
    if (on_end) {
      on_end();
    }
  });
  return self;
}

void Supervised::stop() {
  stopping_.store(true);
  // The timer is its executor's: cancelled there (at once when called on it, as the components'
  // stop paths do from their io thread).
  asio::dispatch(timer_.get_executor(), [self = shared_from_this()] { self->timer_.cancel(); });
}

asio::awaitable<void> Supervised::run(std::shared_ptr<Supervised> self) {
  Supervised& s = *self;
  auto log = logger(s.task_.layer);
  auto backoff = s.options_.first_backoff;
  while (!s.stopping_.load()) {
    const auto started = std::chrono::steady_clock::now();
    std::exception_ptr failed;
    try {
      co_await s.factory_();
      co_return;  // it stopped as asked
    } catch (...) {
      failed = std::current_exception();
    }
    const std::string why = exception_what(failed);
    if (s.stopping_.load()) {
      log->warn("{} {} stopped by an exception while stopping: {}", s.task_.prefix, s.task_.what,
                why);
      co_return;
    }
    if (std::chrono::steady_clock::now() - started >= s.options_.healthy) {
      backoff = s.options_.first_backoff;
    }
    {
      auto& r = restarts();
      std::lock_guard lock(r.mu);
      ++r.by_task[s.task_.name];
    }
    log->error("{} {} stopped by an exception: {}; restarting it in {} s", s.task_.prefix,
               s.task_.what, why, seconds(backoff));
    s.timer_.expires_after(backoff);
    co_await s.timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    backoff = std::min(backoff * 2, s.options_.max_backoff);
  }
}

std::string exception_what(const std::exception_ptr& e) {
  if (!e) {
    return "no exception";
  }
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

std::vector<std::pair<std::string, std::uint64_t>> task_restarts() {
  auto& r = restarts();
  std::lock_guard lock(r.mu);
  return {r.by_task.begin(), r.by_task.end()};
}

std::uint64_t task_restarts(const std::string& name) {
  auto& r = restarts();
  std::lock_guard lock(r.mu);
  auto it = r.by_task.find(name);
  return it == r.by_task.end() ? 0 : it->second;
}

}  // namespace sb
