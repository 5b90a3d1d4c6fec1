// A transfer whose reply is lost after Redis ran it (the connection drops in between): the agent
// is answered 503 and retries, as a 503 asks. Redis moved the item; the database must follow:
// the interaction's queue, priority and payload, the conversation's sticky queue, and one
// transfer event on the timeline.
#include <doctest/doctest.h>

#include <memory>
#include <thread>

#include "tests/agents/fixture.hpp"
#include "tests/agents/reply_cutter.hpp"

using namespace sb;
using namespace sb::test;

namespace {
long long count(AgentDaemon& d, const std::string& where) {
  return d.rows("SELECT count(*) FROM " + where);
}

constexpr const char* kToBilling = R"({"queue":"billing","priority":"high"})";
constexpr const char* kToVip = R"({"queue":"vip","priority":"urgent"})";

std::string notes(AgentDaemon& d) {
  return d.redis.cmd({"HLEN", "sb:transfer-unrecorded"});
}

// The periodic pass runs every 200 ms with this claim_timeout.
constexpr std::chrono::milliseconds kQuickPass{2000};

// Stops the daemon (its database and Redis stay).
void stop(AgentDaemon& d) {
  d.http.reset();
  d.app->stop();
  d.app.reset();
}

// Starts the stopped daemon again, with the quick periodic pass.
void start_with_quick_pass(AgentDaemon& d) {
  auto cfg = test_config(d.dir, d.redis.port());
  cfg.routing.claim_timeout = kQuickPass;
  d.app = std::make_unique<App>(cfg);
  d.app->start();
  d.http = std::make_unique<HttpClient>(d.app->port());
}

// Stops the daemon, keeps a transfer note of `id` (to `queue`, `priority`) dated a second before
// the first transfer recorded, as the periodic pass may find one whose record was on its way,
// and starts the daemon again with the quick periodic pass.
void restart_with_older_note(AgentDaemon& d, const std::string& id, const std::string& queue,
                             const std::string& priority) {
  stop(d);
  std::int64_t before = d.rows("SELECT min(at) FROM events WHERE type='transfer'") - 1000;
  d.redis.cmd({"HSET", "sb:transfer-unrecorded", id,
               R"({"agent":"alice","queue":")" + queue + R"(","priority":")" + priority +
                   R"(","at":")" + std::to_string(before) + R"(","entry":")" +
                   std::to_string(before) + R"(-0","from":"sb:q:general:normal"})"});
  start_with_quick_pass(d);
}
}  // namespace

TEST_CASE("a transfer's reply is lost after Redis ran it: the retry records the transfer once") {
  std::unique_ptr<ReplyCutter> cutter;  // outlives the daemon
  AgentDaemon d(through(cutter));
  std::string id = d.ingest("transfer-lost-1", "moved, but the answer never arrives",
                            "ann@example.com", "order-77");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  REQUIRE(eventually(
      [&] { return count(d, "interactions WHERE id='" + id + "' AND state='claimed'") == 1; }));

  cutter->cut_reply_to("transferred:");  // the transfer script's marker key
  auto r = d.act("alice-token", id, "transfer", kToBilling);
  REQUIRE(cutter->cut());
  CHECK(r.status == 503);
  CHECK(d.redis.xlen("sb:q:billing:high") == 1);  // Redis ran it
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);

  auto again = d.act("alice-token", id, "transfer", kToBilling);
  REQUIRE(again.status == 200);
  CHECK(parse(again.body).at("status").as_string() == "transferred");
  CHECK(d.redis.xlen("sb:q:billing:high") == 1);  // nothing added twice
  // The record follows Redis.
  REQUIRE(eventually([&] {
    return count(d, "interactions WHERE id='" + id +
                        "' AND queue='billing' AND priority='high' AND state='queued' AND "
                        "json_extract(payload, '$.queue')='billing'") == 1;
  }));
  CHECK(count(d, "events WHERE type='transfer' AND actor='alice'") == 1);
  // A further retry (its 200 lost on the way, say) records nothing more.
  CHECK(d.act("alice-token", id, "transfer", kToBilling).status == 200);
  // Sticky routing: the conversation's next message follows it to billing, which also tells
  // that the retry's record is committed (the writer runs jobs in order).
  std::string next =
      d.ingest("transfer-lost-2", "and another thing", "ann@example.com", "order-77");
  d.drained();
  CHECK(count(d, "interactions WHERE id='" + next + "' AND queue='billing'") == 1);
  CHECK(count(d, "events WHERE type='transfer'") == 1);
  // bob (billing) gets it from its new queue with the payload saying so.
  auto bob = d.claim("bob-token", "billing");
  CHECK(claimed_id(bob) == id);
  CHECK(parse(bob.body).at("interaction").at("queue").as_string() == "billing");
}

TEST_CASE(
    "a transfer's reply is lost and another agent claims it before the retry: 200, recorded") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter));
  std::string id = d.ingest("transfer-lost-3", "moved, then taken before the retry");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);

  cutter->cut_reply_to("transferred:");
  CHECK(d.act("alice-token", id, "transfer", kToBilling).status == 503);
  REQUIRE(cutter->cut());
  // Event times are milliseconds, and two in the same millisecond read in the order they were
  // recorded (README): bob's claim in the millisecond she asked would read first, as it did in
  // about one run in ten on a fast machine. A person's claim comes later than that.
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto bobs = d.claim("bob-token", "billing");
  CHECK(claimed_id(bobs) == id);
  std::string customer(parse(bobs.body).at("interaction").at("customer").at("id").as_string());

  // Her retry: the transfer did happen; bob holding it since does not undo that.
  auto again = d.act("alice-token", id, "transfer", kToBilling);
  CHECK(again.status == 200);
  REQUIRE(
      eventually([&] { return count(d, "events WHERE type='transfer' AND actor='alice'") == 1; }));
  // bob's claim stays the state; the queue is the one bob works it in.
  CHECK(count(d, "interactions WHERE id='" + id +
                     "' AND queue='billing' AND priority='high' AND state='claimed'") == 1);
  CHECK(d.act("bob-token", id, "ack").status == 200);
  // The timeline reads in the order things happened: alice's transfer is recorded after bob's
  // claim from billing, with the time she asked for it (before: claim, claim, transfer).
  boost::json::array ev;
  REQUIRE(eventually([&] {
    auto tl = parse(d.get("bob-token", "/v1/customers/" + customer + "/interactions").body);
    for (const auto& i : tl.at("interactions").as_array()) {
      if (i.at("id").as_string() == id) {
        ev = i.at("events").as_array();
      }
    }
    return ev.size() == 4;
  }));
  auto step = [&](std::size_t i) {
    return std::string(ev[i].at("type").as_string()) + " " +
           std::string(ev[i].at("actor").as_string());
  };
  CHECK(step(0) == "claim alice");
  CHECK(step(1) == "transfer alice");
  CHECK(ev[1].at("detail").at("queue").as_string() == "billing");
  CHECK(step(2) == "claim bob");
  CHECK(step(3) == "finish bob");
  // A transfer by someone who never did one is still refused, naming the holder.
  std::string other = d.ingest("transfer-lost-4", "held by alice");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == other);
  auto refused = d.act("bob-token", other, "transfer", kToBilling);
  CHECK(refused.status == 409);
  CHECK(error_message(refused).find("alice holds it") != std::string::npos);
}

TEST_CASE("a transfer's reply is lost and its agent never retries: the periodic pass records it") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, kQuickPass));
  std::string id =
      d.ingest("transfer-lost-5", "moved, and alice gives up", "ann@example.com", "order-78");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  REQUIRE(eventually(
      [&] { return count(d, "interactions WHERE id='" + id + "' AND state='claimed'") == 1; }));

  cutter->cut_reply_to("transferred:");
  CHECK(d.act("alice-token", id, "transfer", kToBilling).status == 503);
  REQUIRE(cutter->cut());
  CHECK(d.redis.xlen("sb:q:billing:high") == 1);  // Redis ran it; alice never asks again

  // Within a few passes the record follows Redis, and Redis forgets the note.
  REQUIRE(eventually([&] {
    return count(d, "interactions WHERE id='" + id +
                        "' AND queue='billing' AND priority='high' AND state='queued' AND "
                        "json_extract(payload, '$.queue')='billing' AND "
                        "json_extract(payload, '$.priority')='high'") == 1;
  }));
  REQUIRE(eventually([&] { return notes(d) == "0"; }));
  CHECK(count(d, "events WHERE interaction_id='" + id +
                     "' AND type='transfer' AND actor='alice' "
                     "AND json_extract(detail, '$.from_queue')='general' AND "
                     "json_extract(detail, '$.from_priority')='normal'") == 1);
  // More passes record nothing more.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  CHECK(count(d, "events WHERE type='transfer'") == 1);
  // Sticky routing: the conversation's next message goes to billing.
  std::string next = d.ingest("transfer-lost-6", "and more", "ann@example.com", "order-78");
  d.drained();
  CHECK(count(d, "interactions WHERE id='" + next + "' AND queue='billing'") == 1);
  auto bob = d.claim("bob-token", "billing");
  CHECK(claimed_id(bob) == id);
  CHECK(parse(bob.body).at("interaction").at("queue").as_string() == "billing");
}

TEST_CASE("a transfer answered 200: one event naming the new entry, and no note left in Redis") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, kQuickPass));
  std::string id = d.ingest("transfer-ok-1", "moved the ordinary way");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  auto r = d.act("alice-token", id, "transfer", kToBilling);
  REQUIRE(r.status == 200);
  std::string entry(parse(r.body).at("entry_id").as_string());
  REQUIRE(eventually([&] { return notes(d) == "0"; }));
  REQUIRE(eventually([&] {
    return count(d, "events WHERE interaction_id='" + id + "' AND type='transfer' AND " +
                        "json_extract(detail, '$.entry_id')='" + entry + "'") == 1;
  }));
  // The passes that come meanwhile do not record it again.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  CHECK(count(d, "events WHERE type='transfer'") == 1);
  CHECK(notes(d) == "0");
  CHECK(count(d, "interactions WHERE id='" + id + "' AND queue='billing' AND state='queued'") == 1);
}

TEST_CASE("a lost transfer reply recorded by the periodic pass: the agent's retry adds nothing") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, kQuickPass));
  std::string id = d.ingest("transfer-lost-7", "recorded before alice retries");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  cutter->cut_reply_to("transferred:");
  CHECK(d.act("alice-token", id, "transfer", kToBilling).status == 503);
  REQUIRE(cutter->cut());
  REQUIRE(eventually([&] {
    return count(d, "interactions WHERE id='" + id + "' AND queue='billing' AND state='queued'") ==
           1;
  }));
  REQUIRE(eventually([&] { return notes(d) == "0"; }));

  // Her retry comes late: the same entry, and the timeline keeps one transfer.
  auto again = d.act("alice-token", id, "transfer", kToBilling);
  CHECK(again.status == 200);
  CHECK(d.redis.xlen("sb:q:billing:high") == 1);
  std::string next = d.ingest("transfer-lost-8", "a barrier for the writer");
  d.drained();
  CHECK(count(d, "events WHERE type='transfer'") == 1);
  CHECK(count(d, "interactions WHERE id='" + id + "' AND queue='billing' AND state='queued'") == 1);
}

TEST_CASE("a lost transfer, then another agent claims it and transfers it on: both recorded") {
  // claim_timeout of 5 min: no periodic pass meanwhile, so the second transfer finds the first's
  // note in Redis and records it first.
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter));
  std::string id = d.ingest("transfer-lost-9", "moved twice", "ann@example.com", "order-79");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  cutter->cut_reply_to("transferred:");
  CHECK(d.act("alice-token", id, "transfer", kToBilling).status == 503);
  REQUIRE(cutter->cut());

  CHECK(claimed_id(d.claim("bob-token", "billing")) == id);
  REQUIRE(eventually([&] { return count(d, "events WHERE type='claim' AND actor='bob'") == 1; }));
  CHECK(d.act("bob-token", id, "transfer", kToVip).status == 200);
  REQUIRE(eventually([&] { return count(d, "events WHERE type='transfer'") == 2; }));
  REQUIRE(eventually([&] { return notes(d) == "0"; }));
  // The row is the later transfer's; the timeline has both, alice's first.
  CHECK(count(d, "interactions WHERE id='" + id +
                     "' AND queue='vip' AND priority='urgent' AND state='queued' AND "
                     "json_extract(payload, '$.queue')='vip'") == 1);
  CHECK(count(d,
              "events WHERE type='transfer' AND actor='alice' AND "
              "json_extract(detail, '$.queue')='billing'") == 1);
  CHECK(count(d,
              "events WHERE type='transfer' AND actor='bob' AND "
              "json_extract(detail, '$.from_queue')='billing' AND "
              "json_extract(detail, '$.queue')='vip'") == 1);
  CHECK(d.rows("SELECT count(*) FROM (SELECT actor FROM events WHERE type='transfer' ORDER BY seq "
               "LIMIT 1) WHERE actor='alice'") == 1);
  std::string next = d.ingest("transfer-lost-10", "follows", "ann@example.com", "order-79");
  d.drained();
  CHECK(count(d, "interactions WHERE id='" + next + "' AND queue='vip'") == 1);
}

TEST_CASE("a lost transfer reply, then the daemon restarts: the restarted daemon records it") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter));  // no periodic pass before the restart
  std::string id = d.ingest("transfer-lost-11", "moved just before a restart");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  cutter->cut_reply_to("transferred:");
  CHECK(d.act("alice-token", id, "transfer", kToBilling).status == 503);
  REQUIRE(cutter->cut());
  stop(d);
  CHECK(count(d, "interactions WHERE id='" + id + "' AND queue='general'") == 1);
  CHECK(notes(d) == "1");

  start_with_quick_pass(d);
  REQUIRE(eventually([&] {
    return count(d, "interactions WHERE id='" + id +
                        "' AND queue='billing' AND priority='high' AND state='queued'") == 1;
  }));
  REQUIRE(eventually([&] { return notes(d) == "0"; }));
  CHECK(count(d, "events WHERE type='transfer' AND actor='alice'") == 1);
}

TEST_CASE("a transfer note of an interaction the database does not have is dropped") {
  AgentDaemon d([](config::Config& c) { c.routing.claim_timeout = kQuickPass; });
  d.redis.cmd({"HSET", "sb:transfer-unrecorded", "01NOSUCHINTERACTION00000000",
               R"({"agent":"alice","queue":"billing","priority":"high","at":"1700000000000",)"
               R"("entry":"1700000000000-0","from":"sb:q:general:normal"})"});
  d.redis.cmd({"HSET", "sb:transfer-unrecorded", "01UNREADABLE000000000000000", "not json"});
  REQUIRE(eventually([&] { return notes(d) == "0"; }));
  CHECK(count(d, "events") == 0);
}

TEST_CASE("a transfer note older than the transfer recorded last adds its event only") {
  // As the periodic pass may find it: read just before the later transfer's record commits.
  AgentDaemon d([](config::Config& c) { c.routing.claim_timeout = std::chrono::minutes(5); });
  std::string id =
      d.ingest("transfer-late-1", "two notes, out of order", "ann@example.com", "order-80");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  REQUIRE(d.act("alice-token", id, "transfer", kToBilling).status == 200);
  REQUIRE(eventually([&] { return count(d, "events WHERE type='transfer'") == 1; }));
  restart_with_older_note(d, id, "vip", "urgent");
  REQUIRE(eventually([&] { return notes(d) == "0"; }));
  REQUIRE(eventually([&] { return count(d, "events WHERE type='transfer'") == 2; }));
  CHECK(count(d, "events WHERE type='transfer' AND json_extract(detail, '$.queue')='vip'") == 1);
  CHECK(count(d, "interactions WHERE id='" + id + "' AND queue='billing' AND priority='high'") ==
        1);
  CHECK(count(d, "conversations WHERE queue='billing'") == 1);
}

TEST_CASE(
    "a lost transfer reply recorded late keeps the claim its own agent made from the new queue") {
  // alice works general and vip: she claims the item from vip before the record comes.
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter));  // no periodic pass before the restart
  std::string id = d.ingest("transfer-lost-12", "moved, then taken back by the same agent");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  cutter->cut_reply_to("transferred:");
  CHECK(d.act("alice-token", id, "transfer", kToVip).status == 503);
  REQUIRE(cutter->cut());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // her claim comes a moment later
  CHECK(claimed_id(d.claim("alice-token", "vip")) == id);
  REQUIRE(eventually([&] { return count(d, "events WHERE type='claim' AND actor='alice'") == 2; }));
  stop(d);

  start_with_quick_pass(d);
  REQUIRE(eventually([&] { return notes(d) == "0"; }));
  CHECK(count(d, "events WHERE type='transfer'") == 1);
  CHECK(count(d, "interactions WHERE id='" + id +
                     "' AND queue='vip' AND priority='urgent' AND state='claimed'") == 1);
  CHECK(d.act("alice-token", id, "ack").status == 200);
}

TEST_CASE(
    "a late transfer record keeps the sticky queue a later transfer in its conversation set") {
  // The transfer of the conversation's first message lost its reply; a transfer of its second
  // message came later and was recorded. The first one's record, made by the periodic pass
  // after that, must not send the conversation back to its queue.
  AgentDaemon d([](config::Config& c) { c.routing.claim_timeout = std::chrono::minutes(5); });
  std::string first = d.ingest("transfer-conv-1", "first message", "ann@example.com", "order-81");
  std::string second = d.ingest("transfer-conv-2", "second message", "ann@example.com", "order-81");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == first);
  CHECK(claimed_id(d.claim("alice-token", "general")) == second);
  REQUIRE(d.act("alice-token", second, "transfer", kToVip).status == 200);
  REQUIRE(eventually([&] { return count(d, "conversations WHERE queue='vip'") == 1; }));
  restart_with_older_note(d, first, "billing", "high");
  REQUIRE(eventually([&] { return notes(d) == "0"; }));
  REQUIRE(eventually([&] { return count(d, "events WHERE type='transfer'") == 2; }));
  // The first message's own row follows its transfer; the conversation keeps the later one.
  CHECK(count(d, "interactions WHERE id='" + first + "' AND queue='billing'") == 1);
  CHECK(count(d, "conversations WHERE queue='vip'") == 1);
  CHECK(count(d, "conversations WHERE queue='billing'") == 0);
}

TEST_CASE(
    "a notes key that is not a hash costs the note only: the transfer moves and is recorded") {
  AgentDaemon d([](config::Config& c) { c.routing.claim_timeout = std::chrono::minutes(5); });
  std::string id = d.ingest("transfer-broken-notes", "moved anyway", "ann@example.com", "order-82");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  REQUIRE(d.redis.cmd({"SET", "sb:transfer-unrecorded", "an operator's mistake"}) == "OK");
  // Before: Redis moved the item, then the note's HSET failed the script: 503 for a transfer
  // that happened, and the same 503 for every retry.
  auto r = d.act("alice-token", id, "transfer", kToBilling);
  CHECK(r.status == 200);
  CHECK(d.redis.xlen("sb:q:billing:high") == 1);
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);
  REQUIRE(eventually([&] {
    return count(d, "interactions WHERE id='" + id + "' AND queue='billing' AND priority='high'") ==
           1;
  }));
  CHECK(count(d, "events WHERE type='transfer'") == 1);
  CHECK(d.act("alice-token", id, "transfer", kToBilling).status == 200);  // a retry, as before
  CHECK(d.redis.xlen("sb:q:billing:high") == 1);
}
