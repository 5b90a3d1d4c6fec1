// The sweep: a Redis restored from an older snapshot (or a replica promoted behind its primary)
// comes back not only without the entries taken since (reproject.cpp adds those again), but also
// with entries the daemon removed since: an ack does XACK + XDEL, a transfer deletes the entry
// and adds one to another stream, a dead letter moves it to {prefix}:dead:{queue}. Those come
// back waiting (or pending for their old holder) and would be handed out again: finished work
// done twice, a transferred item in two queues. So before a re-projection the relay reads every
// queue stream and asks the database, which is the truth, about each entry's interaction (a
// Redis flushed has no stream to read; one that lost its mark alone has all of them, and the
// re-projection from mark 0 then skips every interaction the sweep found: present_):
// - not in the database (another producer's entry, or no interaction_id): left alone;
// - claimed: left alone. It may be a claim the agent made on this Redis, its entry moved by a
//   transfer the database has yet to record (Redis is changed first, the record follows);
// - waiting in this stream's queue and priority: left alone;
// - waiting in another queue or priority (transferred since the snapshot): moved there, the old
//   entry deleted and a new one added with the database's fields, in one script, as a transfer
//   does. The re-projection would not bring it: it was queued below Redis's mark;
// - anything else (finished, dead-lettered): removed.
// A removed or moved entry is acknowledged for the group (XACK), deleted (XDEL), and its
// {prefix}:held field dropped when it names that entry: all of one batch in one script, which
// first looks that each entry is still there (an agent may have acked or transferred it since it
// was read). A target stream that refuses the entry (WRONGTYPE) leaves the old one where it is.
//
// The streams are found with SCAN MATCH {prefix}:q:* TYPE stream rather than from the queues the
// daemon knows: a snapshot may hold a queue first named by a transfer, or one since taken out of
// the configuration, and SCAN costs a walk of the keyspace in steps of 500, not a read of every
// interaction ever queued. Each stream is read up to its last entry when the sweep reaches it,
// kSweepBatch entries at a time (XRANGE COUNT, on after the last id), so entries added while it
// runs (transfers, the sweep's own moves) are not read: they are the database's work already.
// The whole of each stream is read, not only the entries older than the snapshot: nothing says
// when that was taken, and a look at an entry that stays is one indexed lookup in a batch.
//
// It runs on the relay thread: new work waits in the outbox until the sweep and the re-projection
// are done, while agents go on claiming and acking between its batches (each script is short).
// Cut short (Redis failing, a stop, a crash), it leaves Redis's mark where it was, still behind
// the database's: the next connection finds the loss again and sweeps again, and what was swept
// is not there to be swept twice. Only the re-projection, after the sweep, raises the mark.
#include <map>
#include <set>

#include "core/log.hpp"
#include "relay/parts.hpp"
#include "routing/rules.hpp"
#include "storage/interaction_json.hpp"

namespace sb {
using namespace relay_detail;
namespace {

// KEYS: the held hash, the stream swept, then the target streams of moved entries.
// ARGV: per entry 10 values: mode ('r' remove, 'm' move), entry id, interaction id, the target's
// index in KEYS (move), then conversation_id, customer_id, channel, kind, priority, payload.
// Returns per entry 0 (no longer there), 1 (removed), 2 (moved) or the target's refusal.
constexpr const char* kSweepScript = R"lua(
local held, src = KEYS[1], KEYS[2]
local out = {}
for j = 1, #ARGV, 10 do
  local mode, id, iid = ARGV[j], ARGV[j + 1], ARGV[j + 2]
  local r = 0
  if redis.call('XRANGE', src, id, id)[1] then
    r = 1
    if mode == 'm' then
      local dst = KEYS[tonumber(ARGV[j + 3])]
      local fresh = redis.call('EXISTS', dst) == 0
      local nid = redis.pcall('XADD', dst, '*', 'interaction_id', iid,
        'conversation_id', ARGV[j + 4], 'customer_id', ARGV[j + 5], 'channel', ARGV[j + 6],
        'kind', ARGV[j + 7], 'priority', ARGV[j + 8], 'payload', ARGV[j + 9])
      if type(nid) == 'table' and nid.err then
        r = nid.err
      else
        if fresh then redis.pcall('XGROUP', 'CREATE', dst, 'agents', '0') end
        r = 2
      end
    end
    if r == 1 or r == 2 then
      redis.pcall('XACK', src, 'agents', id)  -- NOGROUP: nobody ever claimed from it
      redis.call('XDEL', src, id)
      if redis.call('HGET', held, iid) == src .. ' ' .. id then redis.call('HDEL', held, iid) end
    end
  end
  out[#out + 1] = r
end
return out
)lua";

// A glob pattern that matches `s` literally (SCAN MATCH).
std::string glob_literal(std::string_view s) {
  std::string out;
  for (char ch : s) {
    if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\') {
      out += '\\';
    }
    out += ch;
  }
  return out;
}

std::string_view str(const redisReply* r) {
  return r && r->str ? std::string_view(r->str, r->len) : std::string_view();
}

// What the database says of an entry's interaction.
struct Known {
  std::string state, queue, priority;
  std::string conversation_id, customer_id, channel, kind;
  std::optional<std::string> payload;  // only when waiting in another stream
};

}  // namespace

Relay::Outcome Relay::sweep(Conn& c) {
  Reader& rd = *reader_;
  auto since = std::chrono::steady_clock::now();
  auto failed = [&](const relay_detail::Reply& r, const std::string& what) {
    set_error(c.failure(r, what));
    return Outcome::redis_failed;
  };
  const std::string head = cfg_.prefix + ":q:";
  std::set<std::string> streams;  // SCAN may answer a key twice
  std::string cursor = "0";
  do {
    auto r = c.cmd(
        {"SCAN", cursor, "MATCH", glob_literal(head) + "*", "COUNT", "500", "TYPE", "stream"});
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
      return failed(r, "SCAN");
    }
    cursor = str(r->element[0]);
    for (std::size_t i = 0; i < r->element[1]->elements; ++i) {
      streams.emplace(str(r->element[1]->element[i]));
    }
  } while (cursor != "0");

  present_.clear();  // what this sweep finds: one cut short may have found more than is left
  std::uint64_t foreign = 0, refused = 0;
  std::string refusal;
  for (const auto& stream : streams) {
    // {prefix}:q:{queue}:{priority}; a key of another shape is not a queue of ours.
    auto colon = stream.rfind(':');
    if (colon < head.size()) {
      continue;
    }
    std::string queue = stream.substr(head.size(), colon - head.size());
    std::string priority = stream.substr(colon + 1);
    if (queue.empty() || std::find(std::begin(kPriorities), std::end(kPriorities), priority) ==
                             std::end(kPriorities)) {
      continue;
    }
    auto last = c.cmd({"XREVRANGE", stream, "+", "-", "COUNT", "1"});
    if (!last || last->type != REDIS_REPLY_ARRAY) {
      return failed(last, "XREVRANGE " + stream);
    }
    if (last->elements == 0) {
      continue;
    }
    const std::string upto(str(last->element[0]->element[0]));
    std::string after = "-";
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (stopping_ && std::chrono::steady_clock::now() >= flush_until_) {
          return Outcome::more;  // Redis's mark is still behind: the next start sweeps again
        }
      }
      auto r = c.cmd({"XRANGE", stream, after, upto, "COUNT", std::to_string(kSweepBatch)});
      if (!r || r->type != REDIS_REPLY_ARRAY) {
        return failed(r, "XRANGE " + stream);
      }
      // Entry id and interaction id, in stream order; the ids as a JSON array for the lookup.
      std::vector<std::pair<std::string, std::string>> entries;
      std::string ids = "[";
      for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        std::string iid;
        const redisReply* f = e->elements == 2 ? e->element[1] : nullptr;
        for (std::size_t k = 0; f && k + 1 < f->elements; k += 2) {
          if (str(f->element[k]) == "interaction_id") {
            iid = str(f->element[k + 1]);
            break;
          }
        }
        entries.emplace_back(std::string(str(e->element[0])), iid);
        if (!iid.empty()) {
          if (ids.size() > 1) {
            ids += ',';
          }
          storage::append_json_string(ids, iid);
        }
      }
      ids += ']';
      if (entries.empty()) {
        break;
      }
      after = "(" + entries.back().first;
      std::map<std::string, Known> known;
      rd.db.exec("BEGIN");
      rd.entries.bind(1, ids).bind(2, queue).bind(3, priority);
      while (rd.entries.step()) {
        Known k{rd.entries.text(1), rd.entries.text(2), rd.entries.text(3), rd.entries.text(4),
                rd.entries.text(5), rd.entries.text(6), rd.entries.text(7), std::nullopt};
        if (!rd.entries.is_null(8)) {
          k.payload = rd.entries.text(8);
        }
        known.emplace(rd.entries.text(0), std::move(k));
      }
      rd.entries.reset();
      rd.db.exec("COMMIT");

      std::vector<std::string> keys{cfg_.prefix + ":held", stream};
      std::vector<std::string> args;
      std::vector<std::string> targets;  // per action: the target queue of a move, else ""
      std::vector<std::string> moving;   // per action: the interaction of a move, else ""
      for (const auto& [id, iid] : entries) {
        auto k = known.find(iid);
        if (k == known.end()) {
          ++foreign;
          continue;
        }
        const Known& in = k->second;
        std::string target;
        if (in.state == "claimed" || (in.state == "queued" && !in.payload)) {
          present_.insert(iid);  // claimed, or waiting where it is
          continue;
        }
        if (in.state == "queued") {
          if (in.queue.empty() || in.priority.empty()) {
            continue;  // no stream to move it to
          }
          auto key = head + in.queue + ":" + in.priority;
          auto at = std::find(keys.begin(), keys.end(), key);
          if (at == keys.end()) {
            at = keys.insert(keys.end(), key);
          }
          target = in.queue;
          args.insert(args.end(),
                      {"m", id, iid, std::to_string(at - keys.begin() + 1), in.conversation_id,
                       in.customer_id, in.channel, in.kind, in.priority, *in.payload});
        } else {
          args.insert(args.end(), {"r", id, iid, "0", "", "", "", "", "", ""});
        }
        moving.push_back(target.empty() ? std::string() : iid);
        targets.push_back(std::move(target));
      }
      if (!targets.empty()) {
        std::vector<std::string_view> argv{"EVAL", kSweepScript};
        auto nkeys = std::to_string(keys.size());
        argv.push_back(nkeys);
        argv.insert(argv.end(), keys.begin(), keys.end());
        argv.insert(argv.end(), args.begin(), args.end());
        auto done = c.cmd(argv);
        if (!done || done->type != REDIS_REPLY_ARRAY || done->elements != targets.size()) {
          return failed(done, "the sweep of " + stream);
        }
        std::map<std::string, std::size_t> arrived;  // moved, by target queue: claim wake-ups
        for (std::size_t i = 0; i < targets.size(); ++i) {
          const redisReply* x = done->element[i];
          if (x->type != REDIS_REPLY_INTEGER) {
            ++refused;
            refusal = str(x);
          } else if (x->integer == 1 || x->integer == 2) {
            ++reconciled_;
            ++episode_swept_entries_;
            episode_swept_streams_.insert(stream);
            if (x->integer == 2) {
              ++episode_moved_;
              ++arrived[targets[i]];
              present_.insert(moving[i]);
            }
          }
        }
        if (on_delivered_) {
          for (const auto& [q, n] : arrived) {
            on_delivered_(q, n);
          }
        }
      }
      if (r->elements < static_cast<std::size_t>(kSweepBatch)) {
        break;
      }
    }
  }
  // Once per episode, with what every sweep of it did (one cut short, then the one that went
  // through); the metric counts them as they go.
  if (!episode_swept_) {
    episode_swept_ = true;
    logger("relay")->warn(
        "[redis {}:{}] swept {} queue streams (prefix {}) before re-projecting: removed {} "
        "entries of finished or moved interactions from {} streams ({} of them added again to "
        "the stream the database has them in), left {} entries of other producers{}; in {} ms",
        cfg_.host, cfg_.port, streams.size(), cfg_.prefix, episode_swept_entries_,
        episode_swept_streams_.size(), episode_moved_, foreign,
        refused ? fmt::format(", and {} entries of moved interactions where they were: their "
                              "stream refuses entries ({})",
                              refused, refusal)
                : "",
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                              since)
            .count());
  }
  return Outcome::idle;
}

}  // namespace sb
