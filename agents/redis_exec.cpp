#include "agents/redis_exec.hpp"

#include <hiredis/hiredis.h>
#include <pthread.h>

#include <future>

#include "core/log.hpp"
#include "core/resp.hpp"

namespace sb::agents {
namespace {

RValue convert(const redisReply* r) {
  RValue v;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      v.type = RValue::Type::integer;
      v.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      v.type = RValue::Type::string;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      v.type = RValue::Type::error;
      v.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      v.type = RValue::Type::array;
      for (size_t i = 0; i < r->elements; ++i) {
        v.elements.push_back(convert(r->element[i]));
      }
      break;
    default:
      break;
  }
  return v;
}

RValue error_value(std::string message) {
  RValue v;
  v.type = RValue::Type::error;
  v.str = std::move(message);
  return v;
}

}  // namespace

const RValue& RValue::at(std::size_t i) const {
  static const RValue nil;
  return i < elements.size() ? elements[i] : nil;
}

struct RedisExec::Conn {
  redisContext* ctx = nullptr;
  std::vector<std::string> shas;
  ~Conn() { close(); }
  void close() {
    if (ctx) {
      redisFree(ctx);
      ctx = nullptr;
    }
  }
  RValue cmd(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (!r) {
      return error_value(ctx->errstr);
    }
    RValue v = convert(r);
    freeReplyObject(r);
    return v;
  }
};

RedisExec::RedisExec(const config::Redis& cfg, std::vector<std::string> scripts,
                     std::vector<std::vector<std::string>> init)
    : cfg_(cfg), scripts_(std::move(scripts)), init_(std::move(init)) {}

RedisExec::~RedisExec() {
  stop();
}

void RedisExec::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sb-agents-redis");
    loop();
  });
}

void RedisExec::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
  std::deque<Job> left;
  {
    std::lock_guard lock(mu_);
    left.swap(jobs_);
  }
  for (auto& j : left) {
    j.cb(error_value("switchboard is stopping"));
  }
}

void RedisExec::eval(int script, std::vector<std::string> keys, std::vector<std::string> args,
                     Callback cb) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      jobs_.push_back(Job{script, std::move(keys), std::move(args), std::move(cb)});
      cv_.notify_one();
      return;
    }
  }
  cb(error_value("switchboard is stopping"));
}

RValue RedisExec::eval_sync(int script, std::vector<std::string> keys,
                            std::vector<std::string> args, std::chrono::milliseconds timeout) {
  auto p = std::make_shared<std::promise<RValue>>();
  auto f = p->get_future();
  eval(script, std::move(keys), std::move(args), [p](RValue v) { p->set_value(std::move(v)); });
  if (f.wait_for(timeout) != std::future_status::ready) {
    return error_value("redis did not answer within " + std::to_string(timeout.count()) + " ms");
  }
  return f.get();
}

bool RedisExec::connect(Conn& c) {
  timeval tv{2, 0};
  c.ctx = redisConnectWithTimeout(cfg_.host.c_str(), cfg_.port, tv);
  if (!c.ctx || c.ctx->err) {
    return false;
  }
  redisSetTimeout(c.ctx, timeval{5, 0});
  if (!cfg_.password.empty() && c.cmd({"AUTH", cfg_.password}).is_error()) {
    return false;
  }
  if (cfg_.db != 0 && c.cmd({"SELECT", std::to_string(cfg_.db)}).is_error()) {
    return false;
  }
  c.shas.clear();
  for (const auto& s : scripts_) {
    auto v = c.cmd({"SCRIPT", "LOAD", s});
    if (v.type != RValue::Type::string) {
      logger("agents")->error("[agents] loading a Lua script failed: {}", v.str);
      return false;
    }
    c.shas.push_back(v.str);
  }
  for (const auto& cmd : init_) {
    c.cmd(cmd);  // XGROUP CREATE ... MKSTREAM: BUSYGROUP when it exists, which is fine
  }
  return c.ctx->err == 0;
}

void RedisExec::loop() {
  Conn conn;
  auto backoff = std::chrono::milliseconds(100);
  bool reported = false;
  for (;;) {
    std::deque<Job> batch;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) {
        return;
      }
      batch.swap(jobs_);
    }
    if (!conn.ctx) {
      if (!connect(conn)) {
        std::string err = conn.ctx && conn.ctx->err ? conn.ctx->errstr : "handshake failed";
        conn.close();
        if (!reported) {
          logger("agents")->warn("[agents redis {}:{}] unavailable: {}", cfg_.host, cfg_.port, err);
          reported = true;
        }
        for (auto& j : batch) {
          j.cb(error_value("redis is unavailable: " + err));
        }
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, backoff, [&] { return stopping_; });
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
        continue;
      }
      backoff = std::chrono::milliseconds(100);
      if (reported) {
        logger("agents")->info("[agents redis {}:{}] connected", cfg_.host, cfg_.port);
      }
      reported = false;
    }
    std::string cmd;
    for (const auto& j : batch) {
      cmd.clear();
      resp::array(cmd, 3 + j.keys.size() + j.args.size());
      resp::bulk(cmd, "EVALSHA");
      resp::bulk(cmd, conn.shas.at(static_cast<size_t>(j.script)));
      resp::bulk(cmd, std::to_string(j.keys.size()));
      for (const auto* list : {&j.keys, &j.args}) {
        for (const auto& a : *list) {
          resp::bulk(cmd, a);
        }
      }
      redisAppendFormattedCommand(conn.ctx, cmd.data(), cmd.size());
    }
    std::deque<Job> retry;
    bool lost = false;
    for (auto& j : batch) {
      void* raw = nullptr;
      if (lost || redisGetReply(conn.ctx, &raw) != REDIS_OK) {
        if (!lost) {
          logger("agents")->warn("[agents redis {}:{}] connection lost: {}", cfg_.host, cfg_.port,
                                 conn.ctx->errstr);
        }
        lost = true;
        j.cb(error_value("redis is unavailable: connection lost"));
        continue;
      }
      RValue v = convert(static_cast<redisReply*>(raw));
      freeReplyObject(raw);
      if (v.is_error() && v.str.starts_with("NOSCRIPT")) {
        retry.push_back(std::move(j));  // SCRIPT FLUSH behind our back: reload and run again
        continue;
      }
      j.cb(std::move(v));
    }
    if (lost || !retry.empty()) {
      conn.close();  // the next batch reconnects and loads the scripts again
      std::lock_guard lock(mu_);
      for (auto it = retry.rbegin(); it != retry.rend(); ++it) {
        jobs_.push_front(std::move(*it));
      }
    }
  }
}

}  // namespace sb::agents
