// A dead-lettered item put back to work: a transfer by an agent of its queue takes it out of
// {prefix}:dead:{queue} into the queue and priority asked for, as a fresh delivery. The answer
// comes once the database has it back at work (state `queued`, the transfer on its timeline);
// Redis has it in exactly one place whatever fails in between.
#include <doctest/doctest.h>

#include <memory>
#include <thread>

#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"
#include "tests/agents/reply_cutter.hpp"

using namespace sb;
using namespace sb::test;

namespace {

long long count(AgentDaemon& d, const std::string& where) {
  return d.rows("SELECT count(*) FROM " + where);
}

bool in_state(AgentDaemon& d, const std::string& id, const std::string& state) {
  return count(d, "interactions WHERE id='" + id + "' AND state='" + state + "'") == 1;
}

// max_deliveries 1: the first claim that times out sends the item to the dead letters. carol
// works billing only.
void one_delivery(config::Config& c) {
  c.routing.claim_timeout = std::chrono::milliseconds(1000);
  c.routing.max_deliveries = 1;
  c.agents.push_back({"carol", "carol-token", {"billing"}});
}

// alice claims `id` from general and lets its claim time out: the periodic pass (or a claim's
// sweep) moves it to sb:dead:general, and the database records it dead. Returns the customer id.
std::string bury(AgentDaemon& d, const std::string& id) {
  auto c = d.claim("alice-token", "general");
  REQUIRE(claimed_id(c) == id);
  std::string customer(parse(c.body).at("interaction").at("customer").at("id").as_string());
  REQUIRE(eventually([&] { return in_state(d, id, "dead"); }, std::chrono::seconds(15)));
  REQUIRE(d.redis.xlen("sb:dead:general") == 1);
  return customer;
}

constexpr const char* kToGeneralHigh = R"({"queue":"general","priority":"high"})";

// alice transfers `id` as `alice_to` says and bob to billing, at once.
void at_once(AgentDaemon& d, const std::string& id, const char* alice_to, HttpResponse& ra,
             HttpResponse& rb) {
  HttpClient a(d.app->port()), b(d.app->port());
  std::thread ta([&] { ra = d.act("alice-token", id, "transfer", alice_to, &a); });
  std::thread tb([&] { rb = d.act("bob-token", id, "transfer", R"({"queue":"billing"})", &b); });
  ta.join();
  tb.join();
}

// The dead-letter entry id the record of `id`'s (latest) burial names.
std::string recorded_entry(AgentDaemon& d, const std::string& id) {
  storage::Db db(d.dir.file("switchboard.db"), true);
  auto st = db.prepare(
      "SELECT json_extract(detail, '$.entry_id') FROM events WHERE interaction_id = ?1 AND "
      "type = 'dead_letter' ORDER BY seq DESC LIMIT 1");
  st.bind(1, id);
  REQUIRE(st.step());
  return st.text(0);
}

}  // namespace

TEST_CASE("dead letters: a transfer puts a dead item back to work, claimed and acked again") {
  AgentDaemon d(one_delivery);
  std::string id = d.ingest("dead-back-1", "stranded, then answered");
  d.drained();
  std::string customer = bury(d, id);

  // An ack or a release is still refused, and now says what to do.
  for (const char* action : {"ack", "release"}) {
    auto r = d.act("alice-token", id, action);
    CHECK(r.status == 409);
    CHECK_MESSAGE(error_message(r).find("moved to sb:dead:general; transfer it to put it back "
                                        "to work") != std::string::npos,
                  error_message(r));
  }
  // An unknown target is refused as for any transfer; it stays dead.
  CHECK(d.act("alice-token", id, "transfer", R"({"queue":"nowhere"})").status == 422);
  CHECK(d.redis.xlen("sb:dead:general") == 1);

  auto r = d.act("alice-token", id, "transfer", kToGeneralHigh);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto body = parse(r.body);
  CHECK(body.at("status").as_string() == "transferred");
  CHECK(body.at("queue").as_string() == "general");
  CHECK(body.at("priority").as_string() == "high");
  CHECK(body.at("from_dead_letters").as_string() == "sb:dead:general");
  // Committed before the answer: no waiting here.
  CHECK(count(d, "interactions WHERE id='" + id +
                     "' AND state='queued' AND queue='general' AND priority='high' AND "
                     "json_extract(payload, '$.priority')='high'") == 1);
  // Out of the dead letters, into general:high, once; the counts follow.
  CHECK(d.redis.xlen("sb:dead:general") == 0);
  CHECK(d.redis.xlen("sb:q:general:high") == 1);
  auto entry = d.redis.xrange("sb:q:general:high").at(0);
  CHECK(entry["interaction_id"] == id);
  CHECK(entry["priority"] == "high");
  CHECK(entry.count("dead_from") == 0);
  CHECK(entry.count("deliveries") == 0);
  auto stats = d.queue_stats("general");
  CHECK(stats.at("dead_letters").as_int64() == 0);
  CHECK(stats.at("depth").as_int64() == 1);
  auto metrics = d.http->request("GET", "/metrics").body;
  CHECK(metrics.find("switchboard_dead_letters_total{queue=\"general\"} 0") != std::string::npos);

  // Another agent claims it as a fresh delivery and finishes it.
  auto c = d.claim("bob-token", "general");
  REQUIRE(claimed_id(c) == id);
  CHECK(parse(c.body).at("delivery").at("deliveries").as_int64() == 1);
  CHECK(parse(c.body).at("delivery").at("stream").as_string() == "sb:q:general:high");
  CHECK(d.act("bob-token", id, "ack").status == 200);
  REQUIRE(eventually([&] { return in_state(d, id, "done"); }));

  boost::json::array ev;
  REQUIRE(eventually([&] {
    auto tl = parse(d.get("bob-token", "/v1/customers/" + customer + "/interactions").body);
    for (const auto& i : tl.at("interactions").as_array()) {
      if (i.at("id").as_string() == id) {
        ev = i.at("events").as_array();
      }
    }
    return ev.size() == 5;
  }));
  auto step = [&](std::size_t i) {
    return std::string(ev[i].at("type").as_string()) + " " +
           std::string(ev[i].at("actor").as_string());
  };
  CHECK(step(0) == "claim alice");
  CHECK(step(1) == "dead_letter switchboard");
  CHECK(!ev[1].at("detail").at("entry_id").as_string().empty());
  CHECK(step(2) == "transfer alice");
  CHECK(ev[2].at("detail").at("from_dead_letters").as_string() == "sb:dead:general");
  CHECK(ev[2].at("detail").at("from_queue").as_string() == "general");
  CHECK(ev[2].at("detail").at("queue").as_string() == "general");
  CHECK(ev[2].at("detail").at("priority").as_string() == "high");
  CHECK(step(3) == "claim bob");
  CHECK(ev[3].at("detail").at("deliveries").as_int64() == 1);
  CHECK(step(4) == "finish bob");
}

TEST_CASE("dead letters: only an agent of the dead letter's queue may transfer it") {
  AgentDaemon d(one_delivery);
  std::string id = d.ingest("dead-back-2", "carol works billing only");
  d.drained();
  bury(d, id);

  // carol may receive transfers into billing, but general's dead letters are not hers.
  auto r = d.act("carol-token", id, "transfer", R"({"queue":"billing"})");
  CHECK(r.status == 403);
  CHECK_MESSAGE(error_message(r).find("in queue \"general\"") != std::string::npos,
                error_message(r));
  CHECK(d.redis.xlen("sb:dead:general") == 1);
  CHECK(d.redis.xlen("sb:q:billing:normal") == 0);
  CHECK(in_state(d, id, "dead"));
  CHECK(count(d, "events WHERE type='transfer'") == 0);

  // bob works general: he may send it to billing, a queue alice does not work.
  auto ok = d.act("bob-token", id, "transfer", R"({"queue":"billing"})");
  CHECK(ok.status == 200);
  CHECK(in_state(d, id, "queued"));
  CHECK(claimed_id(d.claim("carol-token", "billing")) == id);
}

TEST_CASE("dead letters: two agents transfer the same dead item at once: one wins, one gets 409") {
  AgentDaemon d(one_delivery);
  for (int round = 0; round < 5; ++round) {
    CAPTURE(round);
    std::string id = d.ingest("dead-race-" + std::to_string(round), "both want it");
    d.drained();
    bury(d, id);

    HttpResponse ra, rb;
    at_once(d, id, R"({"queue":"vip"})", ra, rb);
    CAPTURE(ra.body);
    CAPTURE(rb.body);
    CHECK(((ra.status == 200 && rb.status == 409) || (ra.status == 409 && rb.status == 200)));
    bool alice_won = ra.status == 200;
    CHECK(error_message(alice_won ? rb : ra).find("no longer in sb:dead:general") !=
          std::string::npos);
    // Exactly one place in Redis: the winner's queue.
    CHECK(d.redis.xlen("sb:dead:general") == 0);
    CHECK(d.redis.xlen("sb:q:vip:normal") == (alice_won ? 1 : 0));
    CHECK(d.redis.xlen("sb:q:billing:normal") == (alice_won ? 0 : 1));
    CHECK(count(d, "interactions WHERE id='" + id + "' AND state='queued' AND queue='" +
                       (alice_won ? "vip" : "billing") + "'") == 1);
    CHECK(count(d, "events WHERE interaction_id='" + id + "' AND type='transfer'") == 1);
    // Cleared for the next round.
    auto c = d.claim(alice_won ? "alice-token" : "bob-token", alice_won ? "vip" : "billing");
    REQUIRE(claimed_id(c) == id);
    REQUIRE(d.act(alice_won ? "alice-token" : "bob-token", id, "ack").status == 200);
  }
}

TEST_CASE("dead letters: with Redis down the transfer is 503 and moves nothing, then works") {
  AgentDaemon d(one_delivery);
  std::string id = d.ingest("dead-back-3", "redis is away");
  d.drained();
  bury(d, id);
  REQUIRE(d.redis.cmd({"SAVE"}) == "OK");  // what Redis comes back with (appendonly, say)
  d.redis.stop();
  auto r = d.act("alice-token", id, "transfer", kToGeneralHigh);
  CHECK(r.status == 503);
  CHECK(parse(r.body).at("error").at("code").as_string() == "redis_unavailable");
  CHECK(in_state(d, id, "dead"));
  CHECK(count(d, "events WHERE type='transfer'") == 0);

  d.redis.start();
  HttpResponse again;
  REQUIRE(eventually([&] {
    again = d.act("alice-token", id, "transfer", kToGeneralHigh);
    return again.status != 503;
  }));
  CHECK(again.status == 200);
  CHECK(in_state(d, id, "queued"));
  CHECK(d.redis.xlen("sb:dead:general") == 0);
  CHECK(d.redis.xlen("sb:q:general:high") == 1);
}

TEST_CASE(
    "dead letters: the transfer's reply is lost and the daemon restarts before any retry: the "
    "item is in one queue, recorded once") {
  std::unique_ptr<ReplyCutter> cutter;  // outlives the daemon
  AgentDaemon d(through(cutter, std::chrono::milliseconds(1000), 1));
  std::string id = d.ingest("dead-back-4", "moved, answer lost");
  d.drained();
  bury(d, id);

  cutter->cut_reply_to("transferred:");  // the transfer script's marker key
  auto r = d.act("alice-token", id, "transfer", kToGeneralHigh);
  REQUIRE(cutter->cut());
  CHECK(r.status == 503);
  // Redis ran it: out of the dead letters, in general:high, and noted for the record.
  CHECK(d.redis.xlen("sb:dead:general") == 0);
  CHECK(d.redis.xlen("sb:q:general:high") == 1);

  // Whether the periodic pass recorded it before the stop or the restarted daemon's does.
  d.restart([](config::Config& c) {
    c.routing.claim_timeout = std::chrono::milliseconds(1000);
    c.routing.max_deliveries = 1;
  });
  REQUIRE(eventually([&] { return in_state(d, id, "queued"); }, std::chrono::seconds(10)));
  REQUIRE(eventually([&] { return d.redis.cmd({"HLEN", "sb:transfer-unrecorded"}) == "0"; }));
  CHECK(count(d, "interactions WHERE id='" + id + "' AND queue='general' AND priority='high'") ==
        1);
  CHECK(count(d,
              "events WHERE type='transfer' AND json_extract(detail, '$.from_dead_letters') = "
              "'sb:dead:general'") == 1);
  CHECK(d.redis.xlen("sb:dead:general") == 0);
  CHECK(d.redis.xlen("sb:q:general:high") == 1);
  // alice's retry after all: the same entry, nothing added, nothing recorded twice.
  auto again = d.act("alice-token", id, "transfer", kToGeneralHigh);
  CHECK(again.status == 200);
  CHECK(d.redis.xlen("sb:q:general:high") == 1);
  CHECK(count(d, "events WHERE type='transfer'") == 1);
  // And it is back at work.
  auto c = d.claim("bob-token", "general");
  CHECK(claimed_id(c) == id);
  CHECK(d.act("bob-token", id, "ack").status == 200);
}

TEST_CASE(
    "dead letters: a burial reported again after the transfer back does not make the item dead "
    "again") {
  // A sweep reports what {prefix}:dead-unrecorded holds; one that read it before a transfer's
  // HDEL reports the burial once more after the transfer put the item back to work. set_dead
  // recognises the entry already recorded and leaves the item at work.
  AgentDaemon d(one_delivery);
  std::string id = d.ingest("dead-again-1", "buried, moved back, reported again");
  d.drained();
  bury(d, id);
  const std::string entry = recorded_entry(d, id);
  REQUIRE(!entry.empty());
  REQUIRE(d.act("alice-token", id, "transfer", kToGeneralHigh).status == 200);
  REQUIRE(in_state(d, id, "queued"));

  // The stale report, as the burial wrote it ("<queue> <dead entry id>"): the periodic pass
  // reports it and drops it once recorded.
  REQUIRE(d.redis.cmd({"HSET", "sb:dead-unrecorded", id, "general " + entry}) == "1");
  REQUIRE(eventually(
      [&] {
        return d.redis.cmd({"HLEN", "sb:dead-unrecorded"}) == "0";
      },
      std::chrono::seconds(10)));
  CHECK(in_state(d, id, "queued"));
  CHECK(count(d, "events WHERE interaction_id='" + id + "' AND type='dead_letter'") == 1);
  // Still an item at work: claimed and finished.
  CHECK(claimed_id(d.claim("bob-token", "general")) == id);
  CHECK(d.act("bob-token", id, "ack").status == 200);
}

TEST_CASE("dead letters: one trimmed from its stream is put back to work from the database") {
  // Operators trim {prefix}:dead:{queue} (README: What grows in Redis); a MAXLEN or an XDEL does
  // the same. The database still has the item, dead: the transfer rebuilds its entry from it.
  AgentDaemon d(one_delivery);
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    std::string id = d.ingest("dead-trim-" + std::to_string(round), "trimmed, then wanted");
    d.drained();
    bury(d, id);
    auto buried = d.redis.xrange("sb:dead:general").at(0);
    REQUIRE(d.redis.cmd({"XTRIM", "sb:dead:general", "MAXLEN", "0"}) == "1");
    REQUIRE(d.redis.xlen("sb:dead:general") == 0);

    HttpResponse ra, rb;
    if (round == 0) {
      ra = d.act("alice-token", id, "transfer", kToGeneralHigh);
      rb = d.act("bob-token", id, "transfer", R"({"queue":"billing"})");  // too late
    } else {
      at_once(d, id, kToGeneralHigh, ra, rb);  // the entry is rebuilt once
    }
    CAPTURE(ra.body);
    CAPTURE(rb.body);
    CHECK(((ra.status == 200 && rb.status == 409) || (ra.status == 409 && rb.status == 200)));
    bool alice_won = ra.status == 200;
    auto body = parse((alice_won ? ra : rb).body);
    CHECK(body.at("rebuilt").as_bool());
    CHECK(body.at("from_dead_letters").as_string() == "sb:dead:general");
    const std::string stream = alice_won ? "sb:q:general:high" : "sb:q:billing:normal";
    CHECK(d.redis.xlen("sb:q:general:high") == (alice_won ? 1 : 0));
    CHECK(d.redis.xlen("sb:q:billing:normal") == (alice_won ? 0 : 1));
    CHECK(count(d, "interactions WHERE id='" + id + "' AND state='queued' AND queue='" +
                       (alice_won ? "general" : "billing") + "'") == 1);
    // The entry the relay made, but for what the burial added and what the transfer changed.
    auto entry = d.redis.xrange(stream).at(0);
    for (const char* same :
         {"interaction_id", "conversation_id", "customer_id", "channel", "kind"}) {
      CAPTURE(same);
      CHECK(entry[same] == buried[same]);
    }
    CHECK(entry["priority"] == (alice_won ? "high" : "normal"));
    CHECK(entry.count("dead_from") == 0);
    CHECK(entry.count("deliveries") == 0);
    // The database's payload, in its new queue and priority.
    auto payload = parse(entry["payload"]);
    CHECK(payload.at("id").as_string() == id);
    CHECK(payload.at("subject").as_string() == "trimmed, then wanted");
    CHECK(payload.at("queue").as_string() == (alice_won ? "general" : "billing"));
    CHECK(payload.at("priority").as_string() == (alice_won ? "high" : "normal"));
    CHECK(count(d, "events WHERE interaction_id='" + id +
                       "' AND type='transfer' AND json_extract(detail, '$.rebuilt') = 1 AND "
                       "json_extract(detail, '$.from_dead_letters') = 'sb:dead:general'") == 1);
    // Back at work: claimed as a fresh delivery and finished.
    const char* token = alice_won ? "alice-token" : "bob-token";
    auto c = d.claim(token, alice_won ? "general" : "billing");
    REQUIRE(claimed_id(c) == id);
    CHECK(parse(c.body).at("delivery").at("deliveries").as_int64() == 1);
    REQUIRE(d.act(token, id, "ack").status == 200);
  }
}
