// The Redis side of an erasure (storage/erase.hpp): a projection of the database, as the queue
// entries are. The erasure's transaction lists the interactions it deleted in
// erased_interactions; here the relay removes what Redis holds of them, then deletes the rows.
//
// The daemon does not know the entry ids: the relay's XADD answers one it does not keep, a
// transfer or a re-projection adds another, a dead letter is added by a claim's script, and only
// claimed entries are indexed ({prefix}:held). So every queue stream and every dead-letter stream
// ({prefix}:q:*, {prefix}:dead:*, found with SCAN ... TYPE stream as the sweep finds them) is read
// kSweepBatch entries at a time, and the entries of erased interactions are acknowledged for the
// group (a claimed one leaves its holder's pending list: its ack or release answers 404 from then
// on), deleted, and their {prefix}:held field dropped, in one script per batch. Then the
// per-interaction keys go: the once-only marker {prefix}:relayed:{id}, a transfer's
// {prefix}:transferred:{id}, and the fields of {prefix}:dead-unrecorded and
// {prefix}:transfer-unrecorded (whose records would otherwise be written for rows that are gone).
// Erasures are rare, operators' requests: a read of every stream each time is the price of keeping
// no index of entries on the path of every interaction.
//
// It runs on the relay thread, after a pass, when an erasure asked for it (request_erase_cleanup)
// and once a second otherwise (an erasure by `switchboard customers erase`, another process, or
// one left from before a restart or while Redis was down). Cut short by a Redis failure, it runs
// again whole at the next connection: what it removed is not there to be removed twice.
#include <future>
#include <set>

#include "core/log.hpp"
#include "relay/parts.hpp"
#include "storage/interaction_json.hpp"

namespace sb {
using namespace relay_detail;
namespace {

constexpr int kErasedPerRun = 4096;  // erased interactions read (and cleaned) at a time

// KEYS: the held hash, the stream. ARGV: entry id, interaction id, per entry.
constexpr const char* kEraseEntriesScript = R"lua(
local held, src = KEYS[1], KEYS[2]
local n = 0
for j = 1, #ARGV, 2 do
  local id, iid = ARGV[j], ARGV[j + 1]
  redis.pcall('XACK', src, 'agents', id)  -- NOGROUP: a dead-letter stream, or never claimed from
  n = n + redis.call('XDEL', src, id)
  if redis.call('HGET', held, iid) == src .. ' ' .. id then redis.call('HDEL', held, iid) end
end
return n
)lua";

// KEYS: the held hash, {prefix}:dead-unrecorded, {prefix}:transfer-unrecorded. ARGV: "{prefix}:",
// then the interaction ids.
constexpr const char* kEraseKeysScript = R"lua(
for j = 2, #ARGV do
  local iid = ARGV[j]
  redis.call('HDEL', KEYS[1], iid)
  redis.call('HDEL', KEYS[2], iid)
  redis.call('HDEL', KEYS[3], iid)
  redis.call('DEL', ARGV[1] .. 'relayed:' .. iid, ARGV[1] .. 'transferred:' .. iid)
end
return 0
)lua";

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

}  // namespace

std::uint64_t Relay::request_erase_cleanup() {
  std::uint64_t ticket;
  {
    std::lock_guard lock(mu_);
    ticket = ++erase_requested_;
    woken_ = true;
  }
  cv_.notify_one();
  return ticket;
}

bool Relay::erase_due() {
  std::lock_guard lock(mu_);
  return erase_requested_ > erase_cleaned_.load() ||
         std::chrono::steady_clock::now() >= erase_check_at_;
}

Relay::Outcome Relay::clean_erased(Conn& c) {
  std::uint64_t ticket;
  {
    std::lock_guard lock(mu_);
    ticket = erase_requested_;
    erase_check_at_ = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  }
  // Read after the ticket: every erasure committed before it was asked for is in this read.
  Reader& rd = *reader_;
  std::set<std::string> ids;
  rd.erased.bind(1, kErasedPerRun);
  while (rd.erased.step()) {
    ids.insert(rd.erased.text(0));
  }
  rd.erased.reset();
  if (ids.empty()) {
    erase_cleaned_ = ticket;
    return Outcome::idle;
  }
  auto failed = [&](const relay_detail::Reply& r, const std::string& what) {
    set_error(c.failure(r, what));
    return Outcome::redis_failed;
  };
  const std::string held = cfg_.prefix + ":held";
  std::set<std::string> streams;  // SCAN may answer a key twice
  for (const std::string& head : {cfg_.prefix + ":q:", cfg_.prefix + ":dead:"}) {
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
  }
  std::uint64_t removed = 0;
  for (const auto& stream : streams) {
    std::string after = "-";
    for (;;) {
      auto r = c.cmd({"XRANGE", stream, after, "+", "COUNT", std::to_string(kSweepBatch)});
      if (!r || r->type != REDIS_REPLY_ARRAY) {
        return failed(r, "XRANGE " + stream);
      }
      if (r->elements == 0) {
        break;
      }
      std::vector<std::string> args;
      for (std::size_t i = 0; i < r->elements; ++i) {
        const redisReply* e = r->element[i];
        const redisReply* f = e->elements == 2 ? e->element[1] : nullptr;
        for (std::size_t k = 0; f && k + 1 < f->elements; k += 2) {
          if (str(f->element[k]) == "interaction_id") {
            if (ids.contains(std::string(str(f->element[k + 1])))) {
              args.emplace_back(str(e->element[0]));
              args.emplace_back(str(f->element[k + 1]));
            }
            break;
          }
        }
      }
      after = "(" + std::string(str(r->element[r->elements - 1]->element[0]));
      if (!args.empty()) {
        std::vector<std::string_view> argv{"EVAL", kEraseEntriesScript, "2", held, stream};
        argv.insert(argv.end(), args.begin(), args.end());
        auto done = c.cmd(argv);
        if (!done || done->type != REDIS_REPLY_INTEGER) {
          return failed(done, "the erasure's cleanup of " + stream);
        }
        removed += static_cast<std::uint64_t>(done->integer);
      }
      if (r->elements < static_cast<std::size_t>(kSweepBatch)) {
        break;
      }
    }
  }
  const std::string prefix = cfg_.prefix + ":";
  const std::string dead = prefix + "dead-unrecorded", moved = prefix + "transfer-unrecorded";
  std::vector<std::string> list(ids.begin(), ids.end());
  for (std::size_t from = 0; from < list.size(); from += kPerScript) {
    std::vector<std::string_view> argv{"EVAL", kEraseKeysScript, "3", held, dead, moved, prefix};
    for (std::size_t i = from; i < std::min(list.size(), from + kPerScript); ++i) {
      argv.push_back(list[i]);
    }
    auto done = c.cmd(argv);
    if (!done || done->type != REDIS_REPLY_INTEGER) {
      return failed(done, "the erasure's cleanup of its keys");
    }
  }
  // Redis is clean of them: the rows go (one writer job, awaited, so that the next run does not
  // read them again). A job that fails leaves them for the next run, which finds nothing more.
  std::string json = "[";
  for (const auto& id : list) {
    if (json.size() > 1) {
      json += ',';
    }
    storage::append_json_string(json, id);
  }
  json += ']';
  auto settled = std::make_shared<std::promise<std::string>>();
  auto result = settled->get_future();
  writer_.submit(storage::Job{[json](storage::Db& db) {
                                auto st = db.prepare(
                                    "DELETE FROM erased_interactions WHERE interaction_id IN "
                                    "(SELECT value FROM json_each(?1))");
                                st.bind(1, json);
                                st.run();
                              },
                              [settled](const std::string& error) { settled->set_value(error); }});
  std::string error = result.get();
  erase_entries_ += removed;
  logger("relay")->info(
      "[redis {}:{}] erasure: removed {} stream entries of {} erased interactions{}", cfg_.host,
      cfg_.port, removed, list.size(),
      error.empty() ? "" : fmt::format(" (their rows stay for the next run: {})", error));
  if (list.size() == static_cast<std::size_t>(kErasedPerRun) && error.empty()) {
    return Outcome::more;  // more rows: erase_cleaned_ waits for the run that reads the last
  }
  erase_cleaned_ = ticket;  // Redis is clean of them, whether or not their rows went
  return Outcome::idle;
}

}  // namespace sb
