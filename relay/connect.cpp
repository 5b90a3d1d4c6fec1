// The relay's Redis side before any row flows: the Lua script that projects rows, and the
// connection handshake that loads it.
#include "core/log.hpp"
#include "relay/parts.hpp"
#include "routing/rules.hpp"

namespace sb {
namespace {

// Projects up to kPerScript outbox rows. KEYS: the pass's note (below), the projection mark
// ({prefix}:projected), then stream, marker, stream, marker, ...; ARGV: the marker TTL, the mark
// the call expects, the seq of its last row, then the kValues entry values of each row, in the
// order of the field names in the script. The names are constants of the script rather than
// arguments: Redis copies every argument into a Lua string (lua_pushlstring was 19% of
// redis-server's CPU under bench_ingest), and half of them were the same seven names. For each
// row, atomically: skip if its operation was already projected (the marker, keyed by the
// interaction id), else XADD; a stream created by this XADD gets the `agents` group at id 0 so
// its first entry is claimable (a queue first named by a transfer, say).
// The mark: a call whose rows all went through (added, or refused by their stream) raises it
// to its last row's seq, in the same atomic step, so a snapshot Redis restarts from has every
// entry up to its mark and none above. A mark lower than the call expects is refused before
// anything is done ("GAP ..."): an earlier call of the same pipeline failed (OOM, then memory
// freed in between: its rows must not be overtaken), or Redis lost data (reproject.cpp). One GET
// and at most one SET a call.
// A failing XADD drops that row's marker, so a retry adds it. Two kinds of failure:
// - the stream key's own: WRONGTYPE (an operator's SET on the key), or a stream whose last id is
//   the maximum. That stream refuses this row and every later row of it (they must not overtake
//   it); the other streams' rows go on. Each refused row is reported. The refusal is also
//   written to the note, a hash shared by the calls of one pipelined pass: a later call of the
//   pass refuses the stream's rows too, even if the key was repaired in between. Unrefused, a
//   pass costs one EXISTS of the note per call.
// - anything else (OOM, READONLY, MISCONF...) is Redis's as a whole: stop there, the mark left
//   as it was.
// Returns {rows done, error of a Redis-wide failure or '', row index, error, row index, error...}
// with a pair for each refused row (0-based, in the call). Rows already done in a failed call
// are skipped by their markers when the relay retries them.
constexpr const char* kScript = R"lua(
local ttl, note, mark = ARGV[1], KEYS[1], KEYS[2]
local projected = tonumber(redis.call('GET', mark) or '0') or 0
if projected < tonumber(ARGV[2]) then
  return {0, 'GAP the projection mark ' .. mark .. ' is ' .. projected .. ', not ' .. ARGV[2]}
end
local noted = redis.call('EXISTS', note) == 1
local checked, refused = {}, {}
local n = (#KEYS - 2) / 2
local out = {n, ''}
for i = 0, n - 1 do
  local stream, marker = KEYS[2 * i + 3], KEYS[2 * i + 4]
  local why = refused[stream]
  if why == nil and noted then
    why = redis.call('HGET', note, stream)
    refused[stream] = why
  end
  if why then
    out[#out + 1] = i
    out[#out + 1] = why
  elseif redis.call('SET', marker, '1', 'NX', 'EX', ttl) then
    local fresh = false
    if not checked[stream] then
      checked[stream] = true
      fresh = redis.call('EXISTS', stream) == 0
    end
    local at = 4 + i * 7
    local r = redis.pcall('XADD', stream, '*', 'interaction_id', ARGV[at],
      'conversation_id', ARGV[at + 1], 'customer_id', ARGV[at + 2], 'channel', ARGV[at + 3],
      'kind', ARGV[at + 4], 'priority', ARGV[at + 5], 'payload', ARGV[at + 6])
    if type(r) == 'table' and r.err then
      redis.call('DEL', marker)
      if not (r.err:find('^WRONGTYPE') or r.err:find('exhausted the last possible ID', 1, true)) then
        out[1], out[2] = i, r.err
        return out
      end
      refused[stream] = r.err
      redis.pcall('HSET', note, stream, r.err)
      redis.pcall('PEXPIRE', note, 60000)
      out[#out + 1] = i
      out[#out + 1] = r.err
    elseif fresh then
      redis.pcall('XGROUP', 'CREATE', stream, 'agents', '0')
    end
  end
end
if tonumber(ARGV[3]) > projected then
  redis.call('SET', mark, ARGV[3])
end
return out
)lua";

}  // namespace

const char* Relay::script() {
  return kScript;
}

// A Redis with a memory limit and a maxmemory-policy other than noeviction removes keys to make
// room, silently: a queue stream (its entries lost for good), {prefix}:projected (the mark
// reads 0: the relay sweeps the streams and re-projects what they lack, reproject.cpp), or the
// relayed:* and transferred:* markers that keep a replay from adding an entry twice. With
// noeviction Redis refuses the write instead (OOM), which the relay retries and /readyz shows.
// Looked at on every connection and then once a minute on it (the loop): the policy is a
// CONFIG SET away, and a connection lasts as long as Redis and the daemon do, so a look at
// connection only missed a change on a live Redis for weeks. INFO memory is one small reply
// (no key is read). Said when it becomes true, and when it is false again; kept in
// redis_may_evict() for the metric.
void Relay::check_eviction(Conn& c) {
  eviction_checked_ = std::chrono::steady_clock::now();
  auto r = c.cmd({"INFO", "memory"});
  if (!r || r->type != REDIS_REPLY_STRING) {
    return;  // the steps after this one find out what is wrong
  }
  std::string_view info(r->str, r->len);
  auto field = [&info](std::string_view name) {
    auto at = info.find(name);
    if (at == std::string_view::npos) {
      return std::string();
    }
    at += name.size();
    auto end = info.find_first_of("\r\n", at);
    return std::string(info.substr(at, end == std::string_view::npos ? end : end - at));
  };
  std::string maxmemory = field("\nmaxmemory:");
  std::string policy = field("\nmaxmemory_policy:");
  bool may_evict =
      !maxmemory.empty() && maxmemory != "0" && !policy.empty() && policy != "noeviction";
  if (may_evict && !may_evict_.exchange(true)) {
    logger("relay")->warn(
        "[redis {}:{}] may evict keys: maxmemory is {} bytes with maxmemory-policy {}. At the "
        "limit Redis drops keys silently: a queue stream's entries are lost for good, and a "
        "dropped once-only marker may let an entry be added twice; set `maxmemory-policy "
        "noeviction` (README: Redis)",
        cfg_.host, cfg_.port, maxmemory, policy);
  } else if (!may_evict && may_evict_.exchange(false)) {
    logger("relay")->info(
        "[redis {}:{}] cannot evict keys any more: maxmemory is {} bytes with maxmemory-policy {}",
        cfg_.host, cfg_.port, maxmemory.empty() ? "?" : maxmemory, policy.empty() ? "?" : policy);
  }
}

// Connects, authenticates, loads the script and creates the consumer groups. Returns what
// failed ("" when every step went through); the caller backs off and tries again.
std::string Relay::connect(Conn& c) {
  timeval tv{2, 0};
  c.ctx = redisConnectWithTimeout(cfg_.host.c_str(), cfg_.port, tv);
  if (!c.ctx || c.ctx->err) {
    return c.ctx ? c.ctx->errstr : "cannot connect";
  }
  redisSetTimeout(c.ctx, timeval{5, 0});
  // The step's error, or "" when Redis answered as `ok` says.
  auto failed = [&](const std::vector<std::string>& argv, const char* what,
                    auto ok) -> std::string {
    std::vector<std::string_view> args(argv.begin(), argv.end());
    auto r = c.cmd(args);
    if (!r) {
      return std::string(what) + ": " + (c.ctx->err ? c.ctx->errstr : "no reply");
    }
    if (!ok(*r)) {
      return std::string(what) + " failed: " +
             (r->type == REDIS_REPLY_ERROR ? std::string(r->str, r->len) : "unexpected reply");
    }
    return "";
  };
  auto not_error = [](const redisReply& r) { return r.type != REDIS_REPLY_ERROR; };
  if (auto auth = cfg_.auth_command(); !auth.empty()) {
    if (auto why = failed(auth, "AUTH", not_error); !why.empty()) {
      return why;
    }
  }
  if (cfg_.db != 0) {
    if (auto why = failed({"SELECT", std::to_string(cfg_.db)}, "SELECT", not_error); !why.empty()) {
      return why;
    }
  }
  // A Redis that keeps its data only in memory (or in snapshots minutes apart) comes back from a
  // restart without what it did since: the relay re-projects the open interactions it lost
  // (reproject.cpp), but the claims, acks and transfers of that time are undone. Said once per
  // process, at the first connection.
  if (!persistence_checked_) {
    persistence_checked_ = true;
    auto r = c.cmd({"INFO", "persistence"});
    if (r && r->type == REDIS_REPLY_STRING &&
        std::string_view(r->str, r->len).find("aof_enabled:0") != std::string_view::npos) {
      logger("relay")->warn(
          "[redis {}:{}] runs without its append-only file (appendonly no): if Redis restarts, "
          "it loses what it did since its last snapshot; the relay then queues the open "
          "interactions again, but claims, acks and transfers of that time are undone and "
          "claimed items are handed out again; set `appendonly yes` (README: Redis)",
          cfg_.host, cfg_.port);
    }
  }
  check_eviction(c);
  auto script_sha = [&c](const redisReply& r) {
    if (r.type != REDIS_REPLY_STRING) {
      return false;
    }
    c.sha.assign(r.str, r.len);
    return true;
  };
  if (auto why = failed({"SCRIPT", "LOAD", kScript}, "SCRIPT LOAD", script_sha); !why.empty()) {
    return why;
  }
  // Consumer groups at start (SPEC section 4), from id 0 so nothing already in a stream
  // is skipped. BUSYGROUP (exists) is fine. So is WRONGTYPE: that key is broken, not
  // Redis; its rows are held when their XADD fails, and the script creates the group
  // once the key is repaired.
  auto group_ok = [](const redisReply& r) {
    std::string_view s(r.str ? r.str : "", r.str ? r.len : 0);
    return r.type != REDIS_REPLY_ERROR || s.starts_with("BUSYGROUP") || s.starts_with("WRONGTYPE");
  };
  for (const auto& q : queues_) {
    for (const char* p : kPriorities) {
      auto key = cfg_.prefix + ":q:" + q + ":" + p;
      if (auto why = failed({"XGROUP", "CREATE", key, "agents", "0", "MKSTREAM"}, "XGROUP CREATE",
                            group_ok);
          !why.empty()) {
        return why;
      }
    }
  }
  return "";
}

}  // namespace sb
