#include "relay/relay.hpp"

#include <hiredis/hiredis.h>
#include <pthread.h>

#include <optional>

#include "core/log.hpp"
#include "core/resp.hpp"
#include "routing/rules.hpp"
#include "storage/sqlite.hpp"

namespace sb {
namespace {

constexpr int kBatch = 512;
constexpr const char* kMarkerTtl = "604800";  // 7 days: far longer than any replay window

constexpr int kPerScript = 64;  // entries per EVALSHA: one Lua call amortised, Redis never
                                // busy for long (~0.3 ms)
constexpr int kValues = 7;      // stream entry: 7 field/value pairs (SPEC section 4)

// Projects up to kPerScript outbox rows. KEYS: stream, marker, stream, marker, ...; ARGV: the
// marker TTL, then the kValues entry values of each row, in the order of the field names in the
// script. The names are constants of the script rather than arguments: Redis copies every
// argument into a Lua string (lua_pushlstring was 19% of redis-server's CPU under bench_ingest),
// and half of them were the same seven names. For each row, atomically: skip if its operation
// was already projected (the marker, keyed by the interaction id), else XADD; a stream created by
// this XADD gets the `agents` group at id 0 so its first entry is claimable (a queue first named by
// a transfer, say). Stops at the first XADD that fails (WRONGTYPE, OOM) and drops that row's
// marker, so a retry adds it; returns {rows done, error}. Rows already done in a failed call
// are skipped by their markers when the relay retries them.
constexpr const char* kScript = R"lua(
local ttl = ARGV[1]
local checked = {}
for i = 0, #KEYS / 2 - 1 do
  local stream, marker = KEYS[2 * i + 1], KEYS[2 * i + 2]
  if redis.call('SET', marker, '1', 'NX', 'EX', ttl) then
    local fresh = false
    if not checked[stream] then
      checked[stream] = true
      fresh = redis.call('EXISTS', stream) == 0
    end
    local at = 2 + i * 7
    local r = redis.pcall('XADD', stream, '*', 'interaction_id', ARGV[at],
      'conversation_id', ARGV[at + 1], 'customer_id', ARGV[at + 2], 'channel', ARGV[at + 3],
      'kind', ARGV[at + 4], 'priority', ARGV[at + 5], 'payload', ARGV[at + 6])
    if type(r) == 'table' and r.err then
      redis.call('DEL', marker)
      return {i, r.err}
    end
    if fresh then redis.pcall('XGROUP', 'CREATE', stream, 'agents', '0') end
  end
end
return {#KEYS / 2, ''}
)lua";

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;

}  // namespace

struct Relay::Conn {
  redisContext* ctx = nullptr;
  std::string sha;
  ~Conn() { close(); }
  void close() {
    if (ctx) {
      redisFree(ctx);
      ctx = nullptr;
    }
  }
  Reply cmd(std::initializer_list<std::string_view> args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (auto a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    return Reply(static_cast<redisReply*>(
        redisCommandArgv(ctx, static_cast<int>(argv.size()), argv.data(), lens.data())));
  }
};

const char* Relay::script() {
  return kScript;
}

Relay::Relay(const config::Redis& redis, storage::Writer& writer, std::vector<std::string> queues)
    : cfg_(redis), writer_(writer), queues_(std::move(queues)) {}

Relay::~Relay() {
  stop(std::chrono::milliseconds(0));
}

void Relay::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "sb-relay");
    loop();
  });
}

void Relay::stop(std::chrono::milliseconds flush_deadline) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return;
    }
    stopping_ = true;
    flush_until_ = std::chrono::steady_clock::now() + flush_deadline;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void Relay::wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

std::string Relay::redis_error() const {
  std::lock_guard lock(err_mu_);
  return redis_error_;
}

void Relay::set_error(const std::string& e) {
  {
    std::lock_guard lock(err_mu_);
    redis_error_ = e;
  }
  if (redis_ok_.exchange(false)) {
    logger("relay")->warn("[redis {}:{}] unavailable: {}; ingest continues, outbox holds the work",
                          cfg_.host, cfg_.port, e);
  }
}

void Relay::loop() {
  Conn conn;
  auto backoff = std::chrono::milliseconds(100);
  for (;;) {
    bool stopping;
    {
      std::lock_guard lock(mu_);
      stopping = stopping_;
    }
    if (stopping && std::chrono::steady_clock::now() >= flush_until_) {
      return;
    }
    if (!conn.ctx) {
      timeval tv{2, 0};
      conn.ctx = redisConnectWithTimeout(cfg_.host.c_str(), cfg_.port, tv);
      bool ok = conn.ctx && !conn.ctx->err;
      if (ok) {
        redisSetTimeout(conn.ctx, timeval{5, 0});
        if (!cfg_.password.empty()) {
          auto r = conn.cmd({"AUTH", cfg_.password});
          ok = r && r->type != REDIS_REPLY_ERROR;
        }
        if (ok && cfg_.db != 0) {
          auto r = conn.cmd({"SELECT", std::to_string(cfg_.db)});
          ok = r && r->type != REDIS_REPLY_ERROR;
        }
        if (ok) {
          auto r = conn.cmd({"SCRIPT", "LOAD", kScript});
          ok = r && r->type == REDIS_REPLY_STRING;
          if (ok) {
            conn.sha.assign(r->str, r->len);
          }
        }
        // Consumer groups at start (SPEC section 4), from id 0 so nothing already in a stream
        // is skipped. BUSYGROUP (exists) is fine.
        for (const auto& q : queues_) {
          for (const char* p : kPriorities) {
            if (!ok) {
              break;
            }
            auto key = cfg_.prefix + ":q:" + q + ":" + p;
            auto r = conn.cmd({"XGROUP", "CREATE", key, "agents", "0", "MKSTREAM"});
            ok = r && (r->type != REDIS_REPLY_ERROR ||
                       std::string_view(r->str, r->len).starts_with("BUSYGROUP"));
          }
        }
      }
      if (!ok) {
        set_error(conn.ctx && conn.ctx->err ? conn.ctx->errstr : "handshake failed");
        conn.close();
        if (stopping) {
          return;  // no Redis to flush to; the outbox keeps the rows for the next start
        }
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, backoff, [&] { return stopping_; });
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
        continue;
      }
      backoff = std::chrono::milliseconds(100);
      if (!redis_ok_.exchange(true)) {
        logger("relay")->info("[redis {}:{}] connected", cfg_.host, cfg_.port);
      }
    }
    bool more = false;
    try {
      auto before = delivered_.load();
      if (!pass(conn)) {
        conn.close();
        continue;
      }
      more = delivered_.load() - before >= static_cast<std::uint64_t>(kBatch);
    } catch (const std::exception& e) {
      logger("relay")->error("[relay] outbox read failed: {}", e.what());
    }
    if (stopping && !more) {
      return;  // flushed
    }
    if (!more) {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return woken_ || stopping_; });
      woken_ = false;
      // Let a few more commits gather: one pass per ~2 ms under load instead of one per commit.
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
}

// UNLINKs the markers of operations whose outbox rows are deleted (pipelined, 512 a command).
bool Relay::unlink_markers(Conn& c) {
  std::vector<std::string> keys;
  {
    std::lock_guard lock(unlink_mu_);
    auto durable = writer_.durable_commits();
    while (!unlink_.empty() && unlink_.front().first <= durable) {
      keys.push_back(std::move(unlink_.front().second));
      unlink_.pop_front();
    }
  }
  std::size_t commands = 0;
  std::string cmd;
  for (std::size_t from = 0; from < keys.size(); from += 512, ++commands) {
    std::size_t to = std::min(keys.size(), from + 512);
    cmd.clear();
    resp::array(cmd, 1 + to - from);
    resp::bulk(cmd, "UNLINK");
    for (std::size_t k = from; k < to; ++k) {
      resp::bulk(cmd, keys[k]);
    }
    redisAppendFormattedCommand(c.ctx, cmd.data(), cmd.size());
  }
  for (std::size_t i = 0; i < commands; ++i) {
    void* raw = nullptr;
    if (redisGetReply(c.ctx, &raw) != REDIS_OK) {
      set_error(c.ctx->errstr);
      return false;  // the markers left expire with their TTL
    }
    freeReplyObject(raw);
  }
  return true;
}

bool Relay::pass(Conn& c) {
  static thread_local std::unique_ptr<storage::Db> db;
  static thread_local std::unique_ptr<storage::Stmt> select;
  static thread_local std::unique_ptr<storage::Stmt> count;
  if (!db) {
    db = std::make_unique<storage::Db>(writer_.path(), true);
    select = std::make_unique<storage::Stmt>(db->prepare(
        "SELECT o.seq, i.id, o.queue, o.priority, i.conversation_id, "
        "coalesce(i.customer_id, ''), i.channel, i.kind, i.payload FROM outbox o "
        "JOIN interactions i ON i.id = o.interaction_id WHERE o.seq > ?1 ORDER BY o.seq LIMIT ?2"));
    count =
        std::make_unique<storage::Stmt>(db->prepare("SELECT count(*) FROM outbox WHERE seq > ?1"));
  }
  // The EVALSHA commands are written in Redis's wire format (RESP) while the rows are read, so
  // the payloads go from SQLite's buffer into the command once; hiredis's argv formatting cost
  // ~10k instructions a row. Each command covers up to kPerScript rows.
  struct Row {
    std::int64_t seq;
    std::string id, queue, priority;  // the interaction id also keys its once-only marker
  };
  std::vector<Row> rows;
  std::vector<std::string> commands;
  std::string keys, fields;
  std::size_t in_chunk = 0;
  auto close_chunk = [&] {
    if (in_chunk == 0) {
      return;
    }
    std::string cmd;
    cmd.reserve(keys.size() + fields.size() + 128);
    resp::array(cmd, 3 + 2 * in_chunk + 1 + kValues * in_chunk);
    resp::bulk(cmd, "EVALSHA");
    resp::bulk(cmd, c.sha);
    resp::bulk(cmd, std::to_string(2 * in_chunk));
    cmd += keys;
    resp::bulk(cmd, kMarkerTtl);
    cmd += fields;
    commands.push_back(std::move(cmd));
    keys.clear();
    fields.clear();
    in_chunk = 0;
  };
  db->exec("BEGIN");  // one read snapshot for the batch and the count
  select->bind(1, watermark_).bind(2, kBatch);
  while (select->step()) {
    Row r{select->int64(0), select->text(1), select->text(2), select->text(3)};
    resp::bulk(keys, cfg_.prefix + ":q:" + r.queue + ":" + r.priority);
    resp::bulk(keys, cfg_.prefix + ":relayed:" + r.id);
    // interaction_id, conversation_id, customer_id, channel, kind, priority, payload
    static constexpr int kColumns[kValues] = {1, 4, 5, 6, 7, 3, 8};
    for (int column : kColumns) {
      resp::bulk(fields, select->text_view(column));
    }
    rows.push_back(std::move(r));
    if (++in_chunk == kPerScript) {
      close_chunk();
    }
  }
  close_chunk();
  select->reset();
  count->bind(1, watermark_);
  count->step();
  pending_ = count->int64(0);
  count->reset();
  db->exec("COMMIT");
  if (!unlink_markers(c)) {
    return false;
  }
  if (rows.empty()) {
    auto r = c.cmd({"PING"});  // keeps /readyz honest while idle
    if (!r || r->type == REDIS_REPLY_ERROR) {
      set_error(c.ctx->err ? c.ctx->errstr : "PING failed");
      return false;
    }
    return true;
  }
  for (const auto& cmd : commands) {  // pipelined; the replies are read in order below
    redisAppendFormattedCommand(c.ctx, cmd.data(), cmd.size());
  }
  std::int64_t done_upto = watermark_;
  std::vector<std::pair<std::string, std::size_t>> touched;  // queue, entries added
  bool failed = false;
  for (std::size_t from = 0; from < rows.size(); from += kPerScript) {
    std::size_t n = std::min<std::size_t>(kPerScript, rows.size() - from);
    void* raw = nullptr;
    if (redisGetReply(c.ctx, &raw) != REDIS_OK) {
      set_error(c.ctx->errstr);
      return false;
    }
    Reply reply(static_cast<redisReply*>(raw));
    if (failed) {
      continue;  // drain the pipeline; rows after a failure are retried next pass
    }
    std::size_t done = 0;
    std::string err;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER) {
      done = static_cast<std::size_t>(reply->element[0]->integer);
      err.assign(reply->element[1]->str ? reply->element[1]->str : "", reply->element[1]->len);
    } else {
      err = reply->type == REDIS_REPLY_ERROR ? std::string(reply->str, reply->len)
                                             : "unexpected reply to the relay script";
    }
    for (std::size_t k = from; k < from + std::min(done, n); ++k) {
      done_upto = rows[k].seq;
      ++delivered_;
      auto t = std::find_if(touched.begin(), touched.end(),
                            [&](const auto& q) { return q.first == rows[k].queue; });
      if (t == touched.end()) {
        touched.emplace_back(rows[k].queue, 1);
      } else {
        ++t->second;
      }
    }
    if (done < n) {
      if (err.starts_with("NOSCRIPT")) {
        set_error("script cache flushed; reloading");
      } else {
        const Row& r = rows[from + std::min(done, n - 1)];
        logger("relay")->error("[relay] XADD of interaction {} to {}:{} failed: {}", r.id, r.queue,
                               r.priority, err);
        set_error(err);
      }
      failed = true;
    }
  }
  if (done_upto > watermark_) {
    watermark_ = done_upto;
    pending_ = std::max<std::int64_t>(0, pending_ - static_cast<std::int64_t>(rows.size()));
    // Once the delete is on disk no replay can reach these operations, not even after a power
    // loss: their markers go then (on a pass after the next full checkpoint) instead of filling
    // Redis for the TTL. A crash before that leaves them to expire.
    auto markers = std::make_shared<std::vector<std::string>>();
    for (const auto& r : rows) {
      if (r.seq <= done_upto) {
        markers->push_back(cfg_.prefix + ":relayed:" + r.id);
      }
    }
    writer_.submit(storage::Job{[upto = done_upto](storage::Db& wdb) {
                                  static thread_local storage::Db* prepared_for = nullptr;
                                  static thread_local std::optional<storage::Stmt> del;
                                  if (prepared_for != &wdb) {
                                    del.emplace(wdb.prepare("DELETE FROM outbox WHERE seq <= ?1"));
                                    prepared_for = &wdb;
                                  }
                                  del->bind(1, upto).run();
                                },
                                [this, markers](const std::string& error) {
                                  if (error.empty()) {
                                    auto commit = writer_.commits();  // this one, or later
                                    std::lock_guard lock(unlink_mu_);
                                    for (auto& m : *markers) {
                                      unlink_.emplace_back(commit, std::move(m));
                                    }
                                  }
                                }});
  }
  if (on_delivered_) {
    for (const auto& [q, n] : touched) {
      on_delivered_(q, n);
    }
  }
  return !failed;
}

}  // namespace sb
