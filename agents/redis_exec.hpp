#pragma once
// The agents' own Redis connection (the relay keeps its own), driven by the io thread: the agent
// routes run there, so a claim's EVALSHA is written, and its reply read and handed back, with no
// thread in between. Commands issued in the same turn of the io loop go out in one write and
// their replies come back in order (pipelining), so 50 agents claiming at once cost one round
// trip, not fifty. An earlier version ran the connection on its own thread: each call then cost
// two cross-thread wake-ups, which on two cores queued behind other threads and made up much of
// a claim's latency under load.
//
// Script hashes are computed here (SHA-1 of the source, as Redis does), so a (re)connect sends
// SCRIPT LOAD and the waiting EVALSHAs in the same write.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"

struct redisReader;

namespace sb::agents {

// How every error of the connection itself begins (Redis down, the connection lost, a refused
// password), as opposed to an error Redis answered for one command's keys.
inline constexpr const char* kRedisUnavailable = "redis is unavailable: ";

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
  RedisExec(boost::asio::io_context& io, const config::Redis& cfg, std::vector<std::string> scripts,
            std::vector<std::vector<std::string>> init);
  ~RedisExec();

  boost::asio::io_context& io() { return io_; }
  void start();  // connects (on the io thread)
  // Fails the calls in flight with an error value. Called once the io thread has ended.
  void stop();

  // From any thread; `cb` runs on the io thread.
  void eval(int script, std::vector<std::string> keys, std::vector<std::string> args, Callback cb);

 private:
  struct Call {
    int script = -1;  // -1: a connection set-up command, already in `out_`
    std::vector<std::string> keys, args;
    Callback cb;
    std::chrono::steady_clock::time_point issued{};  // set by eval(): the reply's wait
  };
  void submit(Call c);
  void append(const Call& c);
  void connect();
  void flush();
  boost::asio::awaitable<void> read_loop(std::uint64_t generation);
  void on_reply(RValue v);
  void close(const std::string& why, std::chrono::steady_clock::time_point retry_at);
  void lost(const std::string& why);         // an established connection broke
  void unavailable(const std::string& why);  // could not connect, or the set-up was refused
  void fail_all(const std::string& why);
  void watchdog();

  boost::asio::io_context& io_;
  config::Redis cfg_;
  std::vector<std::string> scripts_, shas_;
  std::vector<std::vector<std::string>> init_;

  // io thread only.
  enum class State { idle, connecting, ready } state_ = State::idle;
  boost::asio::ip::tcp::socket sock_;
  boost::asio::steady_timer watchdog_;
  std::uint64_t generation_ = 0;   // bumped at every (re)connect: stale read loops end
  std::deque<Call> waiting_;       // issued while connecting
  std::deque<Call> in_flight_;     // written (or in `out_`), replies pending, in order
  std::string out_, writing_buf_;  // to write; being written
  bool writing_ = false, flush_posted_ = false, stopped_ = false;
  std::chrono::steady_clock::time_point progress_;  // last reply, or when in_flight_ filled
  std::chrono::steady_clock::time_point retry_at_;  // no new connect before (back-off)
  std::chrono::milliseconds backoff_{100};
  bool reported_ = false;  // "unavailable" logged, "connected" is due when it comes back
  std::string last_error_;
  std::unique_ptr<redisReader, void (*)(redisReader*)> reader_;
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
