#include "agents/waiters.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sb::agents {
namespace asio = boost::asio;

void Waiters::notify(const std::string& queue, std::size_t n, const std::string& except) {
  ++generation_[queue];
  auto it = slots_.find(queue);
  if (it == slots_.end()) {
    return;
  }
  auto& list = it->second;
  for (auto s = list.begin(); n > 0 && s != list.end();) {
    auto slot = *s;
    if (!except.empty() && slot->agent == except && !slot->woken) {
      ++s;  // keeps its place in line
      continue;
    }
    s = list.erase(s);
    if (!slot->woken) {
      slot->woken = true;
      slot->timer->cancel();
      --n;
    }
  }
}

void Waiters::wake_all() {
  for (auto& [q, list] : slots_) {
    for (auto& s : list) {
      s->woken = true;
      s->timer->cancel();
    }
    list.clear();
  }
}

std::size_t Waiters::waiting(const std::string& queue) const {
  auto it = slots_.find(queue);
  return it == slots_.end() ? 0 : it->second.size();
}

asio::awaitable<bool> Waiters::wait(const std::string& queue,
                                    std::chrono::steady_clock::time_point until,
                                    const std::string& agent) {
  auto ex = co_await asio::this_coro::executor;
  auto slot = std::make_shared<Slot>();
  slot->agent = agent;
  slot->timer = std::make_unique<asio::steady_timer>(ex, until);
  auto& list = slots_[queue];
  list.push_back(slot);
  co_await slot->timer->async_wait(asio::as_tuple(asio::use_awaitable));
  if (!slot->woken) {
    // Timed out (or cancelled without a notify): leave the list.
    auto& l = slots_[queue];
    l.remove(slot);
  }
  co_return slot->woken;
}

}  // namespace sb::agents
