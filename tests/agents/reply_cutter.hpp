#pragma once
// A TCP proxy in front of redis-server that can lose one reply: Redis receives a command and runs
// it, and the connection closes before the answer reaches the client, as when a network drops or
// a connection is killed at the worst moment. Real Redis on both ends; only the wire is cut.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace sb::test {

class ReplyCutter {
 public:
  explicit ReplyCutter(std::uint16_t redis_port);
  ~ReplyCutter();
  std::uint16_t port() const { return port_; }
  // The next command whose bytes contain `needle` reaches Redis; whatever Redis sends back on
  // that connection afterwards is dropped and both sides are closed.
  void cut_reply_to(std::string needle);
  // The next command containing `needle` reaches Redis; what Redis sends back on that connection
  // reaches the client `by` later (a slow network).
  void delay_reply_to(std::string needle, std::chrono::milliseconds by);
  bool cut() const { return cut_; }  // a reply was dropped

 private:
  void run();
  std::uint16_t redis_port_, port_ = 0;
  int listen_fd_ = -1;
  std::mutex mu_;
  std::string needle_;                  // empty: not armed
  std::chrono::milliseconds delay_{0};  // 0: cut, else delay
  std::atomic<bool> cut_{false}, stop_{false};
  std::thread thread_;
};

}  // namespace sb::test
