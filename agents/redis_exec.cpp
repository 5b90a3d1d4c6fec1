#include "agents/redis_exec.hpp"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include <algorithm>
#include <memory>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "core/hex.hpp"
#include "core/log.hpp"
#include "core/resp.hpp"
#include "core/stalls.hpp"

namespace sb::agents {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// A reply with no progress for this long counts as a lost connection (a hung or stopped Redis).
constexpr auto kReplyTimeout = std::chrono::seconds(5);
constexpr auto kConnectTimeout = std::chrono::seconds(2);

// hiredis builds its own reply tree (an allocation per element, every string copied), which we
// then copied into RValues and freed: about a fifth of the io thread's instructions under
// bench_agents, whose claim replies carry the whole interaction. Its reader takes functions that
// build the reply instead (redisReplyObjectFunctions, hiredis's hook for this), so replies are
// built as RValues directly. A nested value lives in its parent's `elements`, sized by
// create_array before hiredis reads the children; only the top value is allocated, and hiredis
// hands it to free_reply (or to us) as a whole.
RValue* reply_slot(const redisReadTask* task) {
  if (task->parent == nullptr) {
    return new RValue;
  }
  auto* parent = static_cast<RValue*>(task->parent->obj);
  return &parent->elements[static_cast<std::size_t>(task->idx)];
}

void* create_string(const redisReadTask* task, char* s, size_t len) {
  RValue* v = reply_slot(task);
  v->type = task->type == REDIS_REPLY_ERROR ? RValue::Type::error : RValue::Type::string;
  v->str.assign(s, len);  // a string, a status or an error text
  return v;
}

void* create_array(const redisReadTask* task, int elements) {
  RValue* v = reply_slot(task);
  v->type = RValue::Type::array;
  v->elements.resize(static_cast<std::size_t>(std::max(elements, 0)));
  return v;
}

void* create_integer(const redisReadTask* task, long long value) {
  RValue* v = reply_slot(task);
  v->type = RValue::Type::integer;
  v->integer = value;
  return v;
}

void* create_nil(const redisReadTask* task) {
  return reply_slot(task);  // RValue's default type is nil
}

void free_reply(void* reply) {
  delete static_cast<RValue*>(reply);
}

redisReplyObjectFunctions kRValueReplies = {create_string, create_array, create_integer, create_nil,
                                            free_reply};

// Takes a reply built by kRValueReplies.
RValue take_reply(void* raw) {
  std::unique_ptr<RValue> owned(static_cast<RValue*>(raw));
  return std::move(*owned);
}

RValue error_value(std::string message) {
  RValue v;
  v.type = RValue::Type::error;
  v.str = std::move(message);
  return v;
}

// The hash Redis gives a script (SCRIPT LOAD's answer, EVALSHA's argument): SHA-1, lowercase hex.
std::string script_sha(const std::string& source) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(source.data(), source.size(), md, &len, EVP_sha1(), nullptr);
  return hex_lower({reinterpret_cast<const char*>(md), len});
}

void format(std::string& out, const std::vector<std::string>& argv) {
  resp::array(out, argv.size());
  for (const auto& a : argv) {
    resp::bulk(out, a);
  }
}

}  // namespace

const RValue& RValue::at(std::size_t i) const {
  static const RValue nil;
  return i < elements.size() ? elements[i] : nil;
}

RedisExec::RedisExec(asio::io_context& io, const config::Redis& cfg,
                     std::vector<std::string> scripts, std::vector<std::vector<std::string>> init)
    : io_(io),
      cfg_(cfg),
      scripts_(std::move(scripts)),
      init_(std::move(init)),
      sock_(io),
      watchdog_(io),
      reader_(redisReaderCreateWithFunctions(&kRValueReplies), redisReaderFree) {
  for (const auto& s : scripts_) {
    shas_.push_back(script_sha(s));
  }
}

RedisExec::~RedisExec() {
  stop();
}

void RedisExec::start() {
  asio::post(io_, [this] {
    if (state_ == State::idle && !stopped_) {
      connect();
    }
    watchdog();
  });
}

void RedisExec::stop() {
  if (stopped_) {
    return;
  }
  stopped_ = true;
  boost::system::error_code ignored;
  sock_.close(ignored);
  watchdog_.cancel();
  fail_all("switchboard is stopping");
}

void RedisExec::eval(int script, std::vector<std::string> keys, std::vector<std::string> args,
                     Callback cb) {
  // Inline on the io thread (every agent route); posted there from any other (a reload).
  // `issued` stays with the call, also when NOSCRIPT makes it run again.
  asio::dispatch(io_, [this, c = Call{script, std::move(keys), std::move(args), std::move(cb),
                                      Clock::now()}]() mutable { submit(std::move(c)); });
}

void RedisExec::submit(Call c) {
  if (stopped_) {
    c.cb(error_value("switchboard is stopping"));
    return;
  }
  switch (state_) {
    case State::ready:
      append(c);
      in_flight_.push_back(std::move(c));
      if (!flush_posted_) {  // one write for everything issued in this turn of the io loop
        flush_posted_ = true;
        asio::post(io_, [this] {
          flush_posted_ = false;
          flush();
        });
      }
      return;
    case State::connecting:
      waiting_.push_back(std::move(c));
      return;
    case State::idle:
      if (Clock::now() < retry_at_) {  // down a moment ago: answer at once, retry later
        c.cb(error_value(kRedisUnavailable + last_error_));
        return;
      }
      waiting_.push_back(std::move(c));
      connect();
      return;
  }
}

void RedisExec::append(const Call& c) {
  if (in_flight_.empty()) {
    progress_ = Clock::now();
  }
  if (c.script < 0) {
    format(out_, c.args);
    return;
  }
  resp::array(out_, 3 + c.keys.size() + c.args.size());
  resp::bulk(out_, "EVALSHA");
  resp::bulk(out_, shas_.at(static_cast<std::size_t>(c.script)));
  resp::bulk(out_, std::to_string(c.keys.size()));
  for (const auto* list : {&c.keys, &c.args}) {
    for (const auto& a : *list) {
      resp::bulk(out_, a);
    }
  }
}

void RedisExec::connect() {
  state_ = State::connecting;
  auto gen = ++generation_;
  asio::co_spawn(
      io_,
      [this, gen]() -> asio::awaitable<void> {
        std::string why;
        asio::ip::tcp::resolver resolver(io_);
        auto [er, endpoints] = co_await resolver.async_resolve(cfg_.host, std::to_string(cfg_.port),
                                                               asio::as_tuple(asio::use_awaitable));
        if (!er) {
          asio::steady_timer timeout(io_, kConnectTimeout);
          timeout.async_wait([this, gen](boost::system::error_code ec) {
            if (!ec && gen == generation_ && state_ == State::connecting) {
              boost::system::error_code ignored;
              sock_.close(ignored);
            }
          });
          auto [ec, ep] =
              co_await asio::async_connect(sock_, endpoints, asio::as_tuple(asio::use_awaitable));
          timeout.cancel();
          if (gen != generation_ || stopped_) {
            co_return;
          }
          if (ec) {
            why = ec == asio::error::operation_aborted ? "connect timed out" : ec.message();
          }
        } else {
          why = er.message();
        }
        if (gen != generation_ || stopped_) {
          co_return;
        }
        if (!why.empty()) {
          unavailable(why);
          co_return;
        }
        sock_.set_option(asio::ip::tcp::no_delay(true));
        reader_.reset(redisReaderCreateWithFunctions(&kRValueReplies));
        state_ = State::ready;
        // The set-up and the calls that waited go out in one write, in this order.
        auto setup = [this](std::vector<std::string> argv, bool must_succeed) {
          Call c{-1, {}, std::move(argv), nullptr};
          std::string what = c.args.at(0);
          c.cb = [this, what, must_succeed](RValue v) {
            if (v.is_error() && must_succeed && !stopped_) {
              unavailable(what + " failed: " + v.str);  // a wrong password, say
            }
          };
          append(c);
          in_flight_.push_back(std::move(c));
        };
        if (auto auth = cfg_.auth_command(); !auth.empty()) {
          setup(std::move(auth), true);
        }
        if (cfg_.db != 0) {
          setup({"SELECT", std::to_string(cfg_.db)}, true);
        }
        for (const auto& s : scripts_) {
          setup({"SCRIPT", "LOAD", s}, true);
        }
        for (const auto& cmd : init_) {
          setup(cmd, false);  // XGROUP CREATE ... MKSTREAM: BUSYGROUP when it exists is fine
        }
        // Answered once everything before it was accepted: the connection is good.
        Call ping{-1, {}, {"PING"}, [this](RValue v) {
                    if (v.is_error()) {
                      unavailable("PING failed: " + v.str);
                      return;
                    }
                    backoff_ = std::chrono::milliseconds(100);
                    if (reported_) {
                      logger("agents")->info("[agents redis {}:{}] connected", cfg_.host,
                                             cfg_.port);
                      reported_ = false;
                    }
                  }};
        append(ping);
        in_flight_.push_back(std::move(ping));
        auto waiting = std::move(waiting_);
        waiting_.clear();
        for (auto& c : waiting) {
          append(c);
          in_flight_.push_back(std::move(c));
        }
        flush();
        co_await read_loop(gen);
      },
      asio::detached);
}

void RedisExec::flush() {
  if (writing_ || out_.empty() || state_ != State::ready) {
    return;
  }
  writing_ = true;
  auto buf = std::make_shared<std::string>(std::move(out_));
  out_.clear();
  asio::async_write(sock_, asio::buffer(*buf),
                    [this, buf, gen = generation_](boost::system::error_code ec, std::size_t) {
                      if (gen != generation_) {
                        return;  // a connection since replaced
                      }
                      writing_ = false;
                      if (ec) {
                        lost(ec.message());
                        return;
                      }
                      flush();
                    });
}

asio::awaitable<void> RedisExec::read_loop(std::uint64_t gen) {
  char buf[16384];
  for (;;) {
    auto [ec, n] =
        co_await sock_.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (gen != generation_) {
      co_return;
    }
    if (ec) {
      lost(ec == asio::error::eof ? "closed by redis" : ec.message());
      co_return;
    }
    if (redisReaderFeed(reader_.get(), buf, n) != REDIS_OK) {
      lost("unreadable reply");
      co_return;
    }
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader_.get(), &raw) != REDIS_OK) {
        lost("unreadable reply");
        co_return;
      }
      if (!raw) {
        break;
      }
      on_reply(take_reply(raw));
      if (gen != generation_) {
        co_return;  // the reply ended the connection (a failed AUTH)
      }
    }
  }
}

void RedisExec::on_reply(RValue v) {
  if (in_flight_.empty()) {
    lost("a reply nobody asked for");
    return;
  }
  Call c = std::move(in_flight_.front());
  in_flight_.pop_front();
  progress_ = Clock::now();
  if (c.script >= 0 && progress_ - c.issued > kStallThreshold) {
    note_stall(
        Stall::redis,
        fmt::format(
            "the agents' Redis connection answered a call after {} ms ({} more in "
            "flight): claims, acks and transfers waited that long",
            std::chrono::duration_cast<std::chrono::milliseconds>(progress_ - c.issued).count(),
            in_flight_.size()));
  }
  if (c.script >= 0 && v.is_error() && v.str.starts_with("NOSCRIPT")) {
    // SCRIPT FLUSH behind our back: load it again and run the call again.
    submit(Call{
        -1, {}, {"SCRIPT", "LOAD", scripts_.at(static_cast<std::size_t>(c.script))}, [](RValue) {
        }});
    submit(std::move(c));
    return;
  }
  if (c.cb) {
    c.cb(std::move(v));
  }
}

// Ends the connection (stale read loops and writes see the new generation and stop).
void RedisExec::close(const std::string& why, Clock::time_point retry_at) {
  ++generation_;
  boost::system::error_code ignored;
  sock_.close(ignored);
  state_ = State::idle;
  writing_ = false;
  out_.clear();
  last_error_ = why;
  retry_at_ = retry_at;
}

void RedisExec::lost(const std::string& why) {
  if (state_ == State::ready) {
    logger("agents")->warn("[agents redis {}:{}] connection lost: {}", cfg_.host, cfg_.port, why);
  }
  close(why, Clock::now());  // the next call reconnects at once
  fail_all(kRedisUnavailable + ("connection lost (" + why + ")"));
}

// Redis cannot be reached or refused the set-up: calls fail at once until a back-off (100 ms,
// doubling to 2 s) has passed; logged once until it works again.
void RedisExec::unavailable(const std::string& why) {
  close(why, Clock::now() + backoff_);
  backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(2000));
  if (!reported_) {
    logger("agents")->warn("[agents redis {}:{}] unavailable: {}", cfg_.host, cfg_.port, why);
    reported_ = true;
  }
  fail_all(kRedisUnavailable + why);
}

void RedisExec::fail_all(const std::string& why) {
  std::deque<Call> calls = std::move(in_flight_);
  in_flight_.clear();
  for (auto& c : waiting_) {
    calls.push_back(std::move(c));
  }
  waiting_.clear();
  auto now = Clock::now();
  auto oldest = now;
  for (const auto& c : calls) {
    if (c.script >= 0) {
      oldest = std::min(oldest, c.issued);
    }
  }
  if (now - oldest > kStallThreshold) {
    note_stall(
        Stall::redis,
        fmt::format(
            "the agents' Redis connection failed {} call(s) after up to {} ms: {}", calls.size(),
            std::chrono::duration_cast<std::chrono::milliseconds>(now - oldest).count(), why));
  }
  for (auto& c : calls) {
    if (c.cb) {
      c.cb(error_value(why));
    }
  }
}

void RedisExec::watchdog() {
  watchdog_.expires_after(std::chrono::seconds(1));
  watchdog_.async_wait([this](boost::system::error_code ec) {
    if (ec || stopped_) {
      return;
    }
    if (state_ == State::ready && !in_flight_.empty() && Clock::now() - progress_ > kReplyTimeout) {
      lost("no reply within 5 s");
    }
    watchdog();
  });
}

}  // namespace sb::agents
