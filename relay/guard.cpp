// The guard: whether the Redis behind the prefix projects this database, before the relay adds
// anything to it. Two ways it may not:
// - another database uses the prefix (a staging file pointed at production's Redis): Redis keeps
//   the id of the database it projects at {prefix}:db, and this one's (relay_state.db_id,
//   schema 30) differs. Its entries and this database's would mix: agents would claim
//   interactions their database does not have (reply 404, ack "done" on the other's), and a
//   re-projection of this database's open interactions would add thousands next to them.
// - Redis is ahead of the database: its projection mark is past every outbox seq this database
//   ever handed out. The database is older than Redis: a backup restored without clearing
//   Redis (README: Backup and restore). The outbox rows pending at the backup are in Redis
//   already, their once-only markers unlinked since: sent, they would be added twice.
// Either way nothing here can tell good entries from stale ones, so the relay holds (no XADD,
// /readyz 503 with redis_foreign or redis_ahead) until the operator clears the prefix's keys,
// and looks again every second. A Redis without {prefix}:db whose mark is not ahead takes this
// database's id (adopted): a cleared or new Redis, and one of a switchboard from before
// schema 30. The id is set in the same script that checks it, before any entry is added from
// this connection: a snapshot of Redis that holds an entry of this database holds its id too.
#include "core/log.hpp"
#include "relay/parts.hpp"

namespace sb {

namespace {

// KEYS: {prefix}:db, {prefix}:projected. ARGV: this database's id, the last outbox seq it
// handed out. Returns {hold reason or '', Redis's database id or '', Redis's mark}.
constexpr const char* kGuard = R"lua(
local id = redis.call('GET', KEYS[1])
local mark = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if id and id ~= ARGV[1] then return {'redis_foreign', id, mark} end
if mark > tonumber(ARGV[2]) then return {'redis_ahead', id or '', mark} end
if not id then redis.call('SET', KEYS[1], ARGV[1]) end
return {'', '', mark}
)lua";

}  // namespace

Relay::Outcome Relay::guard(Conn& c, std::int64_t& mark) {
  Reader& rd = *reader_;
  rd.db_id.step();
  std::string db_id = rd.db_id.text(0);
  rd.db_id.reset();
  rd.handed_out.step();
  std::int64_t last = rd.handed_out.int64(0);
  rd.handed_out.reset();
  auto r = c.cmd({"EVAL", kGuard, "2", db_key_, mark_key_, db_id, std::to_string(last)});
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
    set_error(c.failure(r, "EVAL (the database check of " + db_key_ + ")"));
    return Outcome::redis_failed;
  }
  std::string reason(r->element[0]->str, r->element[0]->len);
  std::string theirs(r->element[1]->str, r->element[1]->len);
  mark = r->element[2]->integer;
  if (reason.empty()) {
    if (hold_.exchange(Hold::none) != Hold::none) {
      logger("relay")->warn(
          "[redis {}:{}] the prefix {} projects this database again (its keys were cleared): "
          "the relay goes on, the open interactions are queued from the database",
          cfg_.host, cfg_.port, cfg_.prefix);
    }
    return Outcome::idle;
  }
  Hold now = reason == "redis_foreign" ? Hold::foreign : Hold::ahead;
  std::string why;
  if (now == Hold::foreign) {
    why = fmt::format(
        "{} names database {}, not this one ({} in {}): another database uses the prefix {}. "
        "Give each database its own prefix or Redis database ([redis] prefix, url)",
        db_key_, theirs, db_id, writer_.path(), cfg_.prefix);
  } else {
    why = fmt::format(
        "its projection mark {} is {}, past the last outbox seq this database ever handed out "
        "({}): the database is older than Redis (a backup restored without clearing Redis?) "
        "or another database uses the prefix {}. Stop switchboard, delete the prefix's keys and "
        "start it again: the open interactions are then queued from the database",
        mark_key_, mark, last, cfg_.prefix);
  }
  {
    std::lock_guard lock(err_mu_);
    hold_why_ = why;
  }
  if (hold_.exchange(now) != now) {
    logger("relay")->error(
        "[redis {}:{}] {}; the relay holds (nothing is added to Redis, /readyz answers 503 {}) "
        "until the keys of the prefix are cleared (README: Backup and restore)",
        cfg_.host, cfg_.port, why, reason);
  }
  return Outcome::held;
}

std::optional<Relay::HoldState> Relay::held_by() const {
  Hold h = hold_.load();
  if (h == Hold::none) {
    return std::nullopt;
  }
  std::lock_guard lock(err_mu_);
  return HoldState{h == Hold::foreign ? "redis_foreign" : "redis_ahead", hold_why_};
}

}  // namespace sb
