// The Redis side of a relay pass: the rows read from the outbox become pipelined EVALSHA
// commands (read_rows), their replies give each row's fate (send), and the markers of deleted
// rows are unlinked (unlink_markers). relay.cpp decides what a pass reads and what it does with
// the fates.
#include "core/log.hpp"
#include "core/resp.hpp"
#include "relay/parts.hpp"

namespace sb {
using namespace relay_detail;
namespace {

constexpr const char* kMarkerTtl = "604800";  // 7 days: far longer than any replay window
constexpr int kValues = 7;                    // stream entry: 7 field/value pairs (SPEC section 4)

}  // namespace

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

// Steps `select` to its end. Each row's EVALSHA arguments are written in Redis's wire format
// (RESP) as it is read, so the payload goes from SQLite's buffer into the command once; hiredis's
// argv formatting cost ~10k instructions a row. A row of a held stream is refused here, unsent,
// unless `send_held` (its retry).
void Relay::read_rows(Conn& c, storage::Stmt& select, Batch& b, bool send_held,
                      const std::unordered_set<std::string>* present) {
  std::string keys, fields;
  std::size_t in_chunk = 0;
  // The pass's note of refused streams, shared by its pipelined calls (see the script).
  std::string note = note_prefix_ + std::to_string(++passes_);
  // The mark each call expects: Redis's, then what the calls before it raise it to (held rows
  // sent again lie below it and raise nothing; Row::below).
  std::int64_t expect = mark_;
  auto close_chunk = [&] {
    if (in_chunk == 0) {
      return;
    }
    std::int64_t last = b.rows[b.sent.back()].seq;
    std::string cmd;
    cmd.reserve(keys.size() + fields.size() + 160);
    resp::array(cmd, 3 + 2 + 2 * in_chunk + 3 + kValues * in_chunk);
    resp::bulk(cmd, "EVALSHA");
    resp::bulk(cmd, c.sha);
    resp::bulk(cmd, std::to_string(2 + 2 * in_chunk));
    resp::bulk(cmd, note);
    resp::bulk(cmd, mark_key_);
    cmd += keys;
    resp::bulk(cmd, kMarkerTtl);
    resp::bulk(cmd, std::to_string(expect));
    resp::bulk(cmd, std::to_string(last));
    cmd += fields;
    b.commands.push_back(std::move(cmd));
    b.lasts.push_back(last);
    expect = std::max(expect, last);
    keys.clear();
    fields.clear();
    in_chunk = 0;
  };
  while (select.step()) {
    if (b.rows.empty()) {
      b.first_created_ms = select.int64(9);
    }
    Row& r = b.rows.emplace_back(Row{select.int64(0),
                                     select.text(1),
                                     select.text(2),
                                     select.text(3),
                                     {},
                                     Row::Fate::unsent,
                                     {}});
    r.stream = cfg_.prefix + ":q:" + r.queue + ":" + r.priority;
    r.round = select.int64(10);
    if (!send_held && !held_.empty() && held_.contains(r.stream)) {
      r.fate = Row::Fate::refused;  // waits behind its stream's held rows
      continue;
    }
    if (present && present->contains(r.id)) {
      ++episode_present_;  // in Redis already: left unsent, and the mark rises past it anyway
      continue;
    }
    r.below = r.seq <= expect;
    resp::bulk(keys, r.stream);
    resp::bulk(keys, r.marker(cfg_.prefix));
    // interaction_id, conversation_id, customer_id, channel, kind, priority, payload
    static constexpr int kColumns[kValues] = {1, 4, 5, 6, 7, 3, 8};
    for (int column : kColumns) {
      resp::bulk(fields, select.text_view(column));
    }
    b.sent.push_back(b.rows.size() - 1);
    if (++in_chunk == kPerScript) {
      close_chunk();
    }
  }
  close_chunk();
  select.reset();
}

// Writes the batch's commands in one go and reads the replies in one pass (pipelining), setting
// the fate of each row sent. False when Redis failed as a whole (connection lost, script cache
// flushed, OOM...) or refused a call for a gap: the rows of the call it failed at, and those
// after it, stay unsent. Rows a failed call added before it stopped are in Redis above its mark:
// they are sent again, and their markers skip them, rather than deleted from the outbox while
// the mark says Redis never had them. A call of a pass whose mark is behind although no call
// before it failed means Redis lost data: lost_.
bool Relay::send(Conn& c, Batch& b) {
  for (const auto& cmd : b.commands) {
    redisAppendFormattedCommand(c.ctx, cmd.data(), cmd.size());
  }
  bool whole = true;
  for (std::size_t from = 0, call = 0; from < b.sent.size(); from += kPerScript, ++call) {
    std::size_t n = std::min<std::size_t>(kPerScript, b.sent.size() - from);
    auto row = [&](std::size_t k) -> Row& { return b.rows[b.sent[from + k]]; };
    void* raw = nullptr;
    if (redisGetReply(c.ctx, &raw) != REDIS_OK) {
      set_error(c.ctx->errstr);
      return false;
    }
    Reply reply(static_cast<redisReply*>(raw));
    if (!whole) {
      continue;  // drain the pipeline; rows after a failure are retried next pass
    }
    std::size_t done = 0;
    std::string err;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 &&
        reply->element[0]->type == REDIS_REPLY_INTEGER) {
      done = std::min(static_cast<std::size_t>(reply->element[0]->integer), n);
      err.assign(reply->element[1]->str ? reply->element[1]->str : "", reply->element[1]->len);
    } else {
      err = reply->type == REDIS_REPLY_ERROR ? std::string(reply->str, reply->len)
                                             : "unexpected reply to the relay script";
    }
    if (done < n) {
      whole = false;
      if (err.starts_with("GAP ")) {
        lost_ = true;  // no call before it failed: Redis's mark went back
      } else if (err.starts_with("NOSCRIPT")) {
        set_error("script cache flushed; reloading");
      } else {
        const Row& r = row(done);
        logger("relay")->error("[relay] XADD of interaction {} to {} failed: {}", r.id, r.stream,
                               err);
        set_error(err);
      }
      continue;
    }
    for (std::size_t e = 2; e + 1 < reply->elements; e += 2) {  // {row index, error} pairs
      auto k = static_cast<std::size_t>(reply->element[e]->integer);
      if (k < n) {
        row(k).fate = Row::Fate::refused;
        row(k).error.assign(reply->element[e + 1]->str ? reply->element[e + 1]->str : "",
                            reply->element[e + 1]->len);
      }
    }
    for (std::size_t k = 0; k < n; ++k) {
      if (row(k).fate == Row::Fate::unsent) {
        row(k).fate = Row::Fate::added;
      }
    }
    mark_ = std::max(mark_, b.lasts[call]);
  }
  return whole;
}

}  // namespace sb
