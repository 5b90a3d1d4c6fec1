#pragma once
// The agents' own Redis connection, on its own thread (the relay keeps its connection). Work
// arrives as EVALSHA jobs from the io thread; the thread drains everything queued, sends it in
// one write and reads the replies in one pass (pipelining), so 50 agents claiming at once cost
// one round trip, not fifty. Replies are copied into RValue and handed to the job's callback on
// this thread; callers post them back to their executor (see async_eval).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.hpp"

namespace sb::agents {

struct RValue {
  enum class Type { nil, integer, string, array, error };
  Type type = Type::nil;
  std::int64_t integer = 0;
  std::string str;  // string, status or error text
  std::vector<RValue> elements;

  bool is_error() const { return type == Type::error; }
  const RValue& at(std::size_t i) const;  // a nil value when out of range
  std::int64_t int_at(std::size_t i) const { return at(i).integer; }
  const std::string& str_at(std::size_t i) const { return at(i).str; }
};

class RedisExec {
 public:
  using Callback = std::function<void(RValue)>;
  // `scripts`: Lua sources, loaded at every (re)connect and run by index. `init`: commands run
  // after connecting (consumer groups); their errors are ignored.
  RedisExec(const config::Redis& cfg, std::vector<std::string> scripts,
            std::vector<std::vector<std::string>> init);
  ~RedisExec();

  void start();
  void stop();  // fails the jobs still queued with an error value

  void eval(int script, std::vector<std::string> keys, std::vector<std::string> args, Callback cb);
  // Blocks the caller (for scrape-time gauges); an error value after `timeout`.
  RValue eval_sync(int script, std::vector<std::string> keys, std::vector<std::string> args,
                   std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));

 private:
  struct Job {
    int script;
    std::vector<std::string> keys, args;
    Callback cb;
  };
  struct Conn;
  void loop();
  bool connect(Conn& c);

  config::Redis cfg_;
  std::vector<std::string> scripts_;
  std::vector<std::vector<std::string>> init_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::thread thread_;
};

// Runs a script and completes on the executor of the awaiting coroutine.
template <typename Token>
auto async_eval(RedisExec& r, int script, std::vector<std::string> keys,
                std::vector<std::string> args, Token&& token) {
  return boost::asio::async_initiate<Token, void(RValue)>(
      [&r](auto handler, int script, std::vector<std::string> keys, std::vector<std::string> args) {
        auto ex = boost::asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        r.eval(script, std::move(keys), std::move(args), [h, ex](RValue v) {
          boost::asio::post(ex, [h, v = std::move(v)]() mutable { (*h)(std::move(v)); });
        });
      },
      token, script, std::move(keys), std::move(args));
}

}  // namespace sb::agents
