// SPEC section 3: a release puts the item "back to its queue for someone else, at once". The
// agent who released it does not get it back from its own claims for claim_timeout; anyone else
// does at once, and after claim_timeout the releaser may too.
#include <doctest/doctest.h>

#include <memory>
#include <sstream>
#include <thread>

#include "agents/scripts.hpp"
#include "tests/agents/fixture.hpp"
#include "tests/agents/reply_cutter.hpp"

using namespace sb;
using namespace sb::test;

namespace {
using Clock = std::chrono::steady_clock;

long long ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

// Calls of the daemon's Lua scripts so far (claims, finishes, sweeps, stats).
long long script_calls(AgentDaemon& d) {
  auto info = d.redis.cmd({"INFO", "commandstats"});
  auto at = info.find("cmdstat_evalsha:calls=");
  if (at == std::string::npos) {
    return 0;
  }
  return std::stoll(info.substr(at + std::string("cmdstat_evalsha:calls=").size()));
}

const std::string kReleaseIdle = std::to_string(agents::kReleaseIdleMs);

// One run of the claim script over queue "x" (streams t:q:x:*) with a sweep, claim_timeout
// 100000 ms and the daemon's release idle, one claim per consumer. `repark`: as on the first
// run after a start.
std::string claim_script(RedisServer& redis, const std::vector<std::string>& consumers,
                         bool repark = false) {
  std::vector<std::string> args{"EVAL", agents::lua_scripts()[agents::kClaim], "7"};
  for (const char* p : {"urgent", "high", "normal", "low"}) {
    args.push_back(std::string("t:q:x:") + p);
  }
  args.insert(args.end(), {"t:dead:x", "t:held", "t:dead-unrecorded"});
  args.insert(args.end(), {"100000", "5", "1", "x", kReleaseIdle, agents::kReleasedConsumer,
                           std::to_string(agents::kReleasedIdleMinMs), repark ? "1" : "0"});
  args.insert(args.end(), consumers.begin(), consumers.end());
  return redis.cmd(args);
}

// What a release did before the release idle was fixed: park the entry `id` of `stream` for
// `consumer` with the claim_timeout in force then plus 1 s (`idle_ms`), delivery count 0.
void park_the_old_way(RedisServer& redis, const std::string& stream, const std::string& id,
                      const std::string& consumer, long long idle_ms) {
  REQUIRE(redis
              .cmd({"XCLAIM", stream, "agents", consumer, "0", id, "IDLE", std::to_string(idle_ms),
                    "RETRYCOUNT", "0", "JUSTID"})
              .find(id) != std::string::npos);
}

// XPENDING's idle time of entry `id` of `stream`, its holder and its delivery count.
struct Pending {
  long long idle = -1;
  std::string holder;
  long long deliveries = -1;
};
Pending pending(RedisServer& redis, const std::string& stream, const std::string& id) {
  auto p = redis.cmd({"EVAL",
                      "local p = redis.call('XPENDING', KEYS[1], 'agents', ARGV[1], ARGV[1], 1)[1] "
                      "return string.format('%.0f %d ', p[3], p[4]) .. p[2]",
                      "1", stream, id});
  Pending out;
  std::istringstream in(p);
  in >> out.idle >> out.deliveries >> out.holder;
  return out;
}

// Stops the daemon (its database and Redis stay) and starts it again with `claim_timeout`,
// straight to its Redis.
void restart(AgentDaemon& d, std::chrono::milliseconds claim_timeout) {
  d.http.reset();
  d.app->stop();
  d.app.reset();
  auto cfg = test_config(d.dir, d.redis.port());
  cfg.routing.claim_timeout = claim_timeout;
  d.app = std::make_unique<App>(cfg);
  d.app->start();
  d.http = std::make_unique<HttpClient>(d.app->port());
}
}  // namespace

TEST_CASE(
    "release: the releaser's next claims pass the item over, another agent's gets it at once") {
  AgentDaemon d;
  std::string first = d.ingest("rel-1", "not mine");
  std::string second = d.ingest("rel-2", "mine");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == first);
  REQUIRE(d.act("alice-token", first, "release").status == 200);
  // Before: her next claim got `first` straight back.
  auto next = d.claim("alice-token", "general");
  CHECK(claimed_id(next) == second);
  CHECK(d.claim("alice-token", "general").status == 204);
  // In between it waits, for anyone but her.
  auto stats = d.queue_stats("general");
  CHECK(stats.at("depth").as_int64() == 1);
  CHECK(stats.at("claimed").as_int64() == 1);  // `second`, hers
  auto bob = d.claim("bob-token", "general");
  CHECK(claimed_id(bob) == first);
  CHECK(parse(bob.body).at("delivery").at("deliveries").as_int64() == 1);
  CHECK(d.act("bob-token", first, "ack").status == 200);
  CHECK(d.act("alice-token", second, "ack").status == 200);
}

TEST_CASE("release: after claim_timeout the releaser may claim it again, her waiting claim too") {
  AgentDaemon d(
      [](config::Config& c) { c.routing.claim_timeout = std::chrono::milliseconds(1500); });
  std::string id = d.ingest("rel-3", "a queue only alice works");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  auto released = Clock::now();
  REQUIRE(d.act("alice-token", id, "release").status == 200);
  CHECK(d.claim("alice-token", "general").status == 204);
  auto stats = d.queue_stats("general");
  CHECK(stats.at("depth").as_int64() == 1);
  CHECK(stats.at("claimed").as_int64() == 0);
  // A claim of hers that waits gets it once claim_timeout has passed (its periodic re-check,
  // every claim_timeout/2), and is not woken in between into looking again and again.
  auto calls = script_calls(d);
  auto again = d.claim("alice-token", "general", 10000);
  auto after = ms_since(released);
  CHECK(claimed_id(again) == id);
  CHECK(after >= 1400);
  CHECK(after < 4000);
  CHECK(parse(again.body).at("delivery").at("deliveries").as_int64() == 1);
  // Her claim's runs and the periodic sweeps of each queue (every claim_timeout/10): about 30
  // here. A claim looking again and again would make thousands.
  CHECK(script_calls(d) - calls < 150);
  CHECK(d.act("alice-token", id, "ack").status == 200);
}

TEST_CASE("release: it wakes another agent's waiting claim, not the releaser's") {
  AgentDaemon d;  // claim_timeout 5 min: waiting claims re-check every second
  std::string id = d.ingest("rel-4", "released while both wait");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  // Alice's second claim waits first, in front of bob's: the release's wake-up must skip it.
  HttpClient alice_client(d.app->port()), bob_client(d.app->port());
  HttpResponse alice_wait, bob_wait;
  Clock::time_point bob_answered;
  std::thread alice([&] { alice_wait = d.claim("alice-token", "general", 1500, &alice_client); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::thread bob([&] {
    bob_wait = d.claim("bob-token", "general", 5000, &bob_client);
    bob_answered = Clock::now();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto released = Clock::now();
  REQUIRE(d.act("alice-token", id, "release").status == 200);
  bob.join();
  alice.join();
  CHECK(claimed_id(bob_wait) == id);
  // Woken by the release, not found by his re-check a second after he began to wait.
  CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(bob_answered - released).count() <
        400);
  CHECK(alice_wait.status == 204);
  CHECK(d.act("bob-token", id, "ack").status == 200);
}

TEST_CASE("release: the newest release counts") {
  AgentDaemon d;
  std::string id = d.ingest("rel-5", "passed around");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  REQUIRE(d.act("alice-token", id, "release").status == 200);
  CHECK(claimed_id(d.claim("bob-token", "general")) == id);
  REQUIRE(d.act("bob-token", id, "release").status == 200);
  CHECK(d.claim("bob-token", "general").status == 204);
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);  // bob's release, not hers
  CHECK(d.act("alice-token", id, "ack").status == 200);
}

TEST_CASE("release: an entry under the bare _released of earlier versions is anyone's at once") {
  AgentDaemon d;
  std::string id = d.ingest("rel-6", "released before an upgrade");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  auto entry = d.redis.xrange("sb:q:general:normal").at(0);
  // What an earlier version's release did: claim_timeout (5 min) + 1 s idle.
  REQUIRE(d.redis
              .cmd({"XCLAIM", "sb:q:general:normal", "agents", "_released", "0", entry["_id"],
                    "IDLE", "301000", "JUSTID"})
              .find(entry["_id"]) != std::string::npos);
  auto ack = d.act("alice-token", id, "ack");
  CHECK(ack.status == 409);
  CHECK(error_message(ack).find("released and waits") != std::string::npos);
  CHECK(d.queue_stats("general").at("depth").as_int64() == 1);
  // Her own claims too: it names no releaser. (Found by the next look for idle entries,
  // <= 100 ms: the daemon did not see this release.)
  HttpResponse again;
  REQUIRE(eventually([&] { return (again = d.claim("alice-token", "general")).status == 200; }));
  CHECK(claimed_id(again) == id);
  CHECK(d.act("alice-token", id, "ack").status == 200);
}

// The claims of one turn of the io loop share one script run (QueueOps): the releaser's claim,
// which finds nothing, must not end the run for the claims after it. The script alone.
TEST_CASE("release: in one script run the releaser's claim passes it over, another's takes it") {
  RedisServer redis;
  const std::string s = "t:q:x:normal";
  REQUIRE(redis.cmd({"XGROUP", "CREATE", s, "agents", "0", "MKSTREAM"}) == "OK");
  std::string id = redis.cmd({"XADD", s, "*", "interaction_id", "x1"});
  redis.cmd({"XREADGROUP", "GROUP", "agents", "alice", "COUNT", "1", "STREAMS", s, ">"});
  // As kFinish releases it.
  redis.cmd({"XCLAIM", s, "agents", agents::released_by("alice"), "0", id, "IDLE", kReleaseIdle,
             "RETRYCOUNT", "0", "JUSTID"});
  auto claim = [&](const std::vector<std::string>& consumers) {
    return claim_script(redis, consumers);
  };
  // Alice twice, then bob: hers pass it over (and say so: the last 1), his takes it.
  CHECK(claim({"alice", "alice", "bob"}) ==
        "[[[0],[0],[1," + s + "," + id + ",1,[interaction_id,x1]]],[],,1,0]");
  CHECK(redis.cmd({"HGET", "t:held", "x1"}) == s + " " + id);
  // Nothing passed over, nothing found: the run ends at the first empty claim.
  CHECK(claim({"alice", "bob"}) == "[[[0],[0]],[],,0,0]");
}

// The look for idle entries reads pages: a releaser's own recent releases, however many, do not
// use it up before an older timed-out entry (SPEC: the most urgent, then oldest).
TEST_CASE("release: a releaser with 150 recent releases still gets a timed-out item behind them") {
  RedisServer redis;
  const std::string s = "t:q:x:normal";
  REQUIRE(redis.cmd({"XGROUP", "CREATE", s, "agents", "0", "MKSTREAM"}) == "OK");
  for (int i = 0; i < 150; ++i) {
    std::string id = redis.cmd({"XADD", s, "*", "interaction_id", "own" + std::to_string(i)});
    redis.cmd({"XREADGROUP", "GROUP", "agents", "alice", "COUNT", "1", "STREAMS", s, ">"});
    redis.cmd({"XCLAIM", s, "agents", agents::released_by("alice"), "0", id, "IDLE", kReleaseIdle,
               "RETRYCOUNT", "0", "JUSTID"});
  }
  std::string late = redis.cmd({"XADD", s, "*", "interaction_id", "late"});
  redis.cmd({"XREADGROUP", "GROUP", "agents", "carol", "COUNT", "1", "STREAMS", s, ">"});
  // carol's claim timed out long ago.
  redis.cmd({"XCLAIM", s, "agents", "carol", "0", late, "IDLE", "200000", "JUSTID"});
  CHECK(claim_script(redis, {"alice"}) ==
        "[[[1," + s + "," + late + ",2,[interaction_id,late]]],[],,1,0]");
}

// An earlier version parked a release with claim_timeout + 1 s, the claim_timeout of its time.
// After an upgrade whose restart raised claim_timeout (2 s -> 60 s), such an entry was idle less
// than the new one: no claim took it, and /v1/queues counted it as claimed. The first script
// run on the queue (here the counts') parks it again the current way.
TEST_CASE(
    "release: items an earlier version parked are back at once after a restart that raised "
    "claim_timeout") {
  AgentDaemon d([](config::Config& c) { c.routing.claim_timeout = std::chrono::seconds(2); });
  const std::string s = "sb:q:general:normal";
  std::string mine = d.ingest("rel-old-1", "released by alice before the upgrade");
  std::string anyones = d.ingest("rel-old-2", "given back before the upgrade");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == mine);
  CHECK(claimed_id(d.claim("alice-token", "general")) == anyones);
  auto entries = d.redis.xrange(s);
  REQUIRE(entries.size() == 2);
  park_the_old_way(d.redis, s, entries[0]["_id"], agents::released_by("alice"), 3000);
  park_the_old_way(d.redis, s, entries[1]["_id"], agents::kReleasedConsumer, 3000);
  restart(d, std::chrono::seconds(60));

  auto stats = d.queue_stats("general");
  CHECK(stats.at("depth").as_int64() == 2);
  CHECK(stats.at("claimed").as_int64() == 0);
  // What a plain Redis client sees: the same holders and delivery counts, idle ten years.
  auto p = pending(d.redis, s, entries[0]["_id"]);
  CHECK(p.holder == agents::released_by("alice"));
  CHECK(p.deliveries == 0);
  CHECK(p.idle >= agents::kReleaseIdleMs);
  CHECK(p.idle < agents::kReleaseIdleMs + 60000);
  CHECK(pending(d.redis, s, entries[1]["_id"]).holder == agents::kReleasedConsumer);
  // Alice gets the one that names no releaser, not her own release (not claim_timeout old).
  auto a = d.claim("alice-token", "general");
  CHECK(claimed_id(a) == anyones);
  CHECK(parse(a.body).at("delivery").at("deliveries").as_int64() == 1);
  CHECK(d.claim("alice-token", "general").status == 204);
  // Bob gets hers at once.
  auto b = d.claim("bob-token", "general");
  CHECK(claimed_id(b) == mine);
  CHECK(parse(b.body).at("delivery").at("deliveries").as_int64() == 1);
}

// Parked again, an earlier version's release keeps the releaser's wait that version's rule gave
// under the current claim_timeout (idle below 2 claim_timeout + 1 s): the time since the release
// is taken as the idle time past claim_timeout + 1 s. The claim script's first run, alone.
TEST_CASE("release: an earlier version's release parked again keeps its releaser's wait") {
  RedisServer redis;
  const std::string s = "t:q:x:normal";
  REQUIRE(redis.cmd({"XGROUP", "CREATE", s, "agents", "0", "MKSTREAM"}) == "OK");
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    ids.push_back(redis.cmd({"XADD", s, "*", "interaction_id", "old" + std::to_string(i)}));
    redis.cmd({"XREADGROUP", "GROUP", "agents", "alice", "COUNT", "1", "STREAMS", s, ">"});
  }
  // Released 99 s and 101 s ago, claim_timeout 100 s: parked with idle 101 s.
  park_the_old_way(redis, s, ids[0], agents::released_by("alice"), 101000 + 99000);
  park_the_old_way(redis, s, ids[1], agents::released_by("alice"), 101000 + 101000);
  CHECK(claim_script(redis, {"alice"}, true) ==
        "[[[1," + s + "," + ids[1] + ",1,[interaction_id,old1]]],[],,1,1]");
  auto p = pending(redis, s, ids[0]);
  CHECK(p.holder == agents::released_by("alice"));
  CHECK(p.deliveries == 0);
  CHECK(p.idle >= agents::kReleaseIdleMs + 99000);
  CHECK(p.idle < agents::kReleaseIdleMs + 100000);
  CHECK(claim_script(redis, {"alice", "bob"}, true) ==
        "[[[0],[1," + s + "," + ids[0] + ",1,[interaction_id,old0]]],[],,1,1]");
}

// QueueOps::give_back parks an item a claim took across a reload under the bare `_released`, as
// a release does: a restart that raised claim_timeout must not hide it either.
TEST_CASE(
    "release: an item given back across a reload is anyone's at once after a restart that "
    "raised claim_timeout") {
  std::unique_ptr<ReplyCutter> cutter;  // outlives the daemon
  AgentDaemon d(through(cutter, std::chrono::seconds(2)));
  std::string id = d.ingest("rel-back-1", "claimed by alice just before her token rotates");
  d.drained();
  HttpClient client(d.app->port());
  HttpResponse got;
  std::thread claim = claim_on_its_way(d, *cutter, client, got);
  auto fresh = test_config(d.dir, cutter->port());
  fresh.routing.claim_timeout = std::chrono::seconds(2);
  rotate_token(fresh, "alice", "alice-new-token");
  REQUIRE(d.app->reload(fresh).empty());
  claim.join();
  CHECK(got.status == 401);
  auto entry = d.redis.xrange("sb:q:general:normal").at(0);
  CHECK(pending(d.redis, "sb:q:general:normal", entry["_id"]).holder == agents::kReleasedConsumer);

  restart(d, std::chrono::seconds(60));
  auto r = d.claim("alice-token", "general");
  CHECK(claimed_id(r) == id);
  CHECK(parse(r.body).at("delivery").at("deliveries").as_int64() == 1);
}
