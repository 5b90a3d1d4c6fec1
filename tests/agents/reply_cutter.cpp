#include "tests/agents/reply_cutter.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <vector>

namespace sb::test {
namespace {

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

bool send_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    auto w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) {
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

using Clock = std::chrono::steady_clock;

struct Pair {
  int client = -1, server = -1;
  bool cutting = false;                // the next bytes from Redis are dropped
  std::chrono::milliseconds delay{0};  // or held back this long
  Clock::time_point release_at{};      // set by the first byte held back
  std::string held;
};

}  // namespace

ReplyCutter::ReplyCutter(std::uint16_t redis_port) : redis_port_(redis_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  auto addr = loopback(0);
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("ReplyCutter: cannot listen on loopback");
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { run(); });
}

ReplyCutter::~ReplyCutter() {
  stop_ = true;
  thread_.join();
  ::close(listen_fd_);
}

void ReplyCutter::cut_reply_to(std::string needle) {
  std::lock_guard lock(mu_);
  needle_ = std::move(needle);
  delay_ = std::chrono::milliseconds(0);
}

void ReplyCutter::delay_reply_to(std::string needle, std::chrono::milliseconds by) {
  std::lock_guard lock(mu_);
  needle_ = std::move(needle);
  delay_ = by;
}

void ReplyCutter::run() {
  std::vector<Pair> pairs;
  char buf[65536];
  auto drop = [&](std::size_t i) {
    ::close(pairs[i].client);
    ::close(pairs[i].server);
    pairs.erase(pairs.begin() + static_cast<std::ptrdiff_t>(i));
  };
  while (!stop_) {
    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}};
    for (const auto& p : pairs) {
      fds.push_back({p.client, POLLIN, 0});
      fds.push_back({p.server, POLLIN, 0});
    }
    int ready = ::poll(fds.data(), fds.size(), 5);
    for (std::size_t i = pairs.size(); i-- > 0;) {  // delayed replies that are due
      auto& p = pairs[i];
      if (!p.held.empty() && Clock::now() >= p.release_at) {
        if (!send_all(p.client, p.held.data(), p.held.size())) {
          drop(i);
          ready = 0;  // `fds` no longer matches `pairs`
          continue;
        }
        p.held.clear();
        p.delay = std::chrono::milliseconds(0);
      }
    }
    if (ready <= 0) {
      continue;
    }
    if (fds[0].revents & POLLIN) {
      int c = ::accept(listen_fd_, nullptr, nullptr);
      int s = ::socket(AF_INET, SOCK_STREAM, 0);
      auto addr = loopback(redis_port_);
      if (c >= 0 && s >= 0 && ::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        Pair p;
        p.client = c;
        p.server = s;
        pairs.push_back(std::move(p));
      } else {
        ::close(c);
        ::close(s);
      }
      continue;  // `fds` no longer matches `pairs`
    }
    for (std::size_t i = pairs.size(); i-- > 0;) {
      auto from_client = fds[1 + 2 * i].revents, from_server = fds[2 + 2 * i].revents;
      if (from_client & (POLLIN | POLLHUP | POLLERR)) {
        auto n = ::recv(pairs[i].client, buf, sizeof buf, 0);
        if (n <= 0 || !send_all(pairs[i].server, buf, static_cast<std::size_t>(n))) {
          drop(i);
          continue;
        }
        std::lock_guard lock(mu_);
        if (!needle_.empty() && std::string_view(buf, static_cast<std::size_t>(n)).find(needle_) !=
                                    std::string_view::npos) {
          if (delay_.count() > 0) {
            pairs[i].delay = delay_;
          } else {
            pairs[i].cutting = true;
          }
          needle_.clear();
        }
      }
      if (from_server & (POLLIN | POLLHUP | POLLERR)) {
        auto n = ::recv(pairs[i].server, buf, sizeof buf, 0);
        if (n <= 0 || pairs[i].cutting) {
          if (n > 0) {
            cut_ = true;
          }
          drop(i);
          continue;
        }
        if (pairs[i].delay.count() > 0) {
          if (pairs[i].held.empty()) {
            pairs[i].release_at = Clock::now() + pairs[i].delay;
          }
          pairs[i].held.append(buf, static_cast<std::size_t>(n));
        } else if (!send_all(pairs[i].client, buf, static_cast<std::size_t>(n))) {
          drop(i);
        }
      }
    }
  }
  for (auto& p : pairs) {
    ::close(p.client);
    ::close(p.server);
  }
}

}  // namespace sb::test
