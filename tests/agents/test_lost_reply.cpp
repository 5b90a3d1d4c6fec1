// A claim whose reply is lost after Redis ran the script (the connection drops in between): the
// daemon answers the agent 503, Redis has the entry pending for an agent that was never told.
// Nothing may be lost, and no record may claim what the agent never received. The same for an
// ack's reply, and for a claim's reply that arrives after a reload removed the agent.
#include <doctest/doctest.h>

#include <memory>
#include <thread>

#include "tests/agents/fixture.hpp"
#include "tests/agents/reply_cutter.hpp"

using namespace sb;
using namespace sb::test;

namespace {
// The interaction's state in the database.
bool in_state(AgentDaemon& d, const std::string& id, const std::string& state) {
  return d.rows("SELECT count(*) FROM interactions WHERE id='" + id + "' AND state='" + state +
                "'") == 1;
}
}  // namespace

TEST_CASE("a claim's reply is lost and its agent never retries: redelivered after claim_timeout") {
  std::unique_ptr<ReplyCutter> cutter;  // outlives the daemon
  AgentDaemon d(through(cutter, std::chrono::milliseconds(800), 5));
  std::string id = d.ingest("lost-reply-1", "claimed, but the answer never arrives");
  d.drained();

  cutter->cut_reply_to("alice");
  auto r = d.claim("alice-token", "general");
  REQUIRE(cutter->cut());
  CHECK(r.status == 503);
  CHECK(error_message(r).find("redis is unavailable") != std::string::npos);
  CHECK(error_message(r).find("try again") != std::string::npos);
  // Redis ran the script: the entry is pending for alice, who was never told.
  CHECK(d.redis.cmd({"XPENDING", "sb:q:general:normal", "agents"}).find("alice") !=
        std::string::npos);
  // alice does not come back. The item she was never told about is not handed to another
  // before claim_timeout (the SPEC's rule for any held item)...
  CHECK(d.claim("bob-token", "general").status == 204);
  // ... and no record says anyone holds it.
  CHECK(!in_state(d, id, "claimed"));

  // Not lost: after claim_timeout it goes to the next claim, counted as a second delivery.
  auto t0 = std::chrono::steady_clock::now();
  auto again = d.claim("bob-token", "general", 5000);
  CHECK(claimed_id(again) == id);
  CHECK(parse(again.body).at("delivery").at("deliveries").as_int64() == 2);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(3000));
  // The timeline: one claim, bob's.
  REQUIRE(eventually([&] { return in_state(d, id, "claimed"); }));
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='claim'") == 1);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='claim' AND actor='bob'") == 1);
  CHECK(d.act("bob-token", id, "ack").status == 200);
}

TEST_CASE("a claim's reply is lost after it dead-lettered an item: the record still says dead") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, std::chrono::milliseconds(300), 1));
  std::string id = d.ingest("lost-reply-2", "times out, and the news is lost");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);  // alice vanishes
  REQUIRE(eventually([&] { return in_state(d, id, "claimed"); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // past claim_timeout

  // bob's claim moves it to the dead letters (max_deliveries 1); its reply is lost.
  cutter->cut_reply_to("bob");
  auto r = d.claim("bob-token", "general");
  REQUIRE(cutter->cut());
  CHECK(r.status == 503);
  CHECK(d.redis.xlen("sb:dead:general") == 1);
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);

  // Any later claim of a sweep reports it again: the record follows Redis.
  REQUIRE(eventually([&] {
    CHECK(d.claim("bob-token", "general").status == 204);
    return in_state(d, id, "dead");
  }));
  // Recorded once, and forgotten in Redis once recorded.
  REQUIRE(eventually([&] { return d.redis.cmd({"HLEN", "sb:dead-unrecorded"}) == "0"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  CHECK(d.claim("alice-token", "general").status == 204);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='dead_letter'") == 1);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='claim'") == 1);
}

TEST_CASE("an ack's reply is lost after Redis ran it: the agent's retry is told it is done") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, std::chrono::minutes(5), 5));
  std::string id = d.ingest("lost-reply-3", "finished, but the answer never arrives");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);

  cutter->cut_reply_to("$3\r\nack\r\n");  // the mode argument of the finish script
  auto r = d.act("alice-token", id, "ack");
  REQUIRE(cutter->cut());
  CHECK(r.status == 503);
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);  // Redis ran it: finished for good
  // Her retry (what a 503 asks for) is told it is finished, and the record says so.
  auto again = d.act("alice-token", id, "ack");
  CHECK(again.status == 200);
  CHECK(parse(again.body).at("status").as_string() == "done");
  REQUIRE(eventually([&] { return in_state(d, id, "done"); }));
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='finish' AND actor='alice'") == 1);
  // Bob, who never held it, still hears 409.
  CHECK(d.act("bob-token", id, "ack").status == 409);
}

TEST_CASE("SIGHUP reload while a claim's reply is on its way: the item goes back, not to alice") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, std::chrono::minutes(5), 5));
  std::string id = d.ingest("slow-reply-1", "claimed by alice just before she is removed");
  d.drained();

  HttpClient client(d.app->port());
  HttpResponse got;
  // Redis ran the claim: the entry is alice's there, her answer is on its way.
  std::thread claim = claim_on_its_way(d, *cutter, client, got);
  auto fresh = test_config(d.dir, cutter->port());
  fresh.agents = {{"bob", "bob-token", {"general", "billing"}}};
  REQUIRE(d.app->reload(fresh).empty());
  claim.join();
  CHECK(got.status == 401);
  // Back in its queue at once, and her claim is not counted as a delivery.
  auto r = d.claim("bob-token", "general");
  CHECK(claimed_id(r) == id);
  CHECK(parse(r.body).at("delivery").at("deliveries").as_int64() == 1);
  REQUIRE(
      eventually([&] { return d.rows("SELECT count(*) FROM events WHERE type='claim'") == 1; }));
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='claim' AND actor='alice'") == 0);
}

// The same agent id under a new token (a leaked token rotated by SIGHUP): the item her claim
// took but never handed out is given back for anyone, her too, not parked as her release (which
// her own claims pass over for claim_timeout).
TEST_CASE("SIGHUP rotates a token while a claim's reply is on its way: her next claim gets it") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, std::chrono::minutes(5), 5));
  std::string id = d.ingest("slow-reply-2", "claimed by alice just before her token rotates");
  d.drained();

  HttpClient client(d.app->port());
  HttpResponse got;
  std::thread claim = claim_on_its_way(d, *cutter, client, got);
  auto fresh = test_config(d.dir, cutter->port());
  rotate_token(fresh, "alice", "alice-new-token");
  REQUIRE(d.app->reload(fresh).empty());
  claim.join();
  CHECK(got.status == 401);
  auto r = d.claim("alice-new-token", "general");
  CHECK(claimed_id(r) == id);
  CHECK(parse(r.body).at("delivery").at("deliveries").as_int64() == 1);
}

namespace {
// The entry ids `consumer` holds in `stream` (XPENDING's extended form).
std::string pending_of(AgentDaemon& d, const std::string& stream, const std::string& consumer) {
  return d.redis.cmd({"XPENDING", stream, "agents", "-", "+", "10", consumer});
}
}  // namespace

TEST_CASE("a claim's reply is lost: the same agent's retry is handed the entry it took") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, std::chrono::minutes(5), 5));
  std::string held = d.ingest("retry-1", "claimed with an answer");
  std::string lost = d.ingest("retry-2", "claimed, but the answer never arrives");
  std::string third = d.ingest("retry-3", "the next one in the queue");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == held);  // she works on this one

  cutter->cut_reply_to("alice");
  auto r = d.claim("alice-token", "general");
  REQUIRE(cutter->cut());
  CHECK(r.status == 503);
  CHECK(r.headers["retry-after"] == "1");
  CHECK(error_message(r).find("try again") != std::string::npos);
  auto entries = d.redis.xrange("sb:q:general:normal");
  REQUIRE(entries.size() == 3);
  REQUIRE(entries[1]["interaction_id"] == lost);
  CHECK(pending_of(d, "sb:q:general:normal", "alice").find(entries[1]["_id"]) != std::string::npos);

  // Another agent meanwhile gets the next item, not the one alice's lost claim took.
  CHECK(claimed_id(d.claim("bob-token", "general")) == third);
  // Her retry: the same stream entry, delivered once; not the one she already holds.
  auto again = d.claim("alice-token", "general");
  CHECK(claimed_id(again) == lost);
  auto delivery = parse(again.body).at("delivery").as_object();
  CHECK(delivery.at("entry_id").as_string() == entries[1]["_id"]);
  CHECK(delivery.at("stream").as_string() == "sb:q:general:normal");
  CHECK(delivery.at("deliveries").as_int64() == 1);
  REQUIRE(eventually([&] { return in_state(d, lost, "claimed"); }));
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='claim' AND actor='alice' AND "
               "interaction_id='" +
               lost + "'") == 1);
  // Once only: her next claim is an ordinary one (the queue is empty now).
  CHECK(d.claim("alice-token", "general").status == 204);
  CHECK(d.act("alice-token", lost, "ack").status == 200);
  CHECK(d.act("alice-token", held, "ack").status == 200);
  CHECK(d.act("bob-token", third, "ack").status == 200);
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);
}

TEST_CASE("a lost claim took back the agent's own timed-out item: her retry gets it again") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, std::chrono::milliseconds(1000), 5));
  std::string id = d.ingest("retry-4", "times out, then comes back to the same agent");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  REQUIRE(eventually([&] { return in_state(d, id, "claimed"); }));
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // past claim_timeout

  // The lost claim redelivers it to alice (a second delivery) while the record still shows her
  // first claim: the delivery count tells them apart.
  cutter->cut_reply_to("alice");
  CHECK(d.claim("alice-token", "general").status == 503);
  REQUIRE(cutter->cut());
  auto again = d.claim("alice-token", "general");
  CHECK(claimed_id(again) == id);
  CHECK(parse(again.body).at("delivery").at("deliveries").as_int64() == 2);
  REQUIRE(
      eventually([&] { return d.rows("SELECT count(*) FROM events WHERE type='claim'") == 2; }));
  CHECK(d.act("alice-token", id, "ack").status == 200);
}

TEST_CASE(
    "a release's reply is lost after Redis ran it: the agent's retry is told it is released") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, std::chrono::minutes(5), 5));
  std::string id = d.ingest("release-1", "released, but the answer never arrives");
  std::string other = d.ingest("release-2", "released, then someone else takes it");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  CHECK(claimed_id(d.claim("alice-token", "general")) == other);

  cutter->cut_reply_to("$7\r\nrelease\r\n");  // the mode argument of the finish script
  auto r = d.act("alice-token", id, "release");
  REQUIRE(cutter->cut());
  CHECK(r.status == 503);
  auto entry = d.redis.xrange("sb:q:general:normal").at(0);
  REQUIRE(entry["interaction_id"] == id);
  CHECK(pending_of(d, "sb:q:general:normal", "_released:alice").find(entry["_id"]) !=
        std::string::npos);  // Redis ran it: released by alice
  auto again = d.act("alice-token", id, "release");
  CHECK(again.status == 200);
  CHECK(parse(again.body).at("status").as_string() == "released");
  REQUIRE(eventually([&] { return in_state(d, id, "queued"); }));
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='release' AND actor='alice'") == 1);
  // Bob never held it: 409. A second retry of hers is no longer a lost reply's, but a repeat of
  // an answered release while the item still waits released by her: the same 200, recorded once
  // (before: 409).
  CHECK(d.act("bob-token", id, "release").status == 409);
  auto repeat = d.act("alice-token", id, "release");
  CHECK(repeat.status == 200);
  CHECK(repeat.body == again.body);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='release' AND actor='alice'") == 1);
  // It waits in its place, its delivery not counted.
  auto bob = d.claim("bob-token", "general");
  CHECK(claimed_id(bob) == id);
  CHECK(parse(bob.body).at("delivery").at("deliveries").as_int64() == 1);

  // Her release of the other is lost too, but bob claims and releases it before she retries:
  // what her retry finds is bob's release, not hers.
  cutter->cut_reply_to("$7\r\nrelease\r\n");
  CHECK(d.act("alice-token", other, "release").status == 503);
  REQUIRE(cutter->cut());
  // (A release the daemon did not see is found by the next look for idle entries, <= 100 ms.)
  HttpResponse taken;
  REQUIRE(eventually([&] { return (taken = d.claim("bob-token", "general")).status == 200; }));
  CHECK(claimed_id(taken) == other);
  CHECK(d.act("bob-token", other, "release").status == 200);
  auto late = d.act("alice-token", other, "release");
  CHECK(late.status == 409);
  CHECK(error_message(late).find("released and waits") != std::string::npos);
}

TEST_CASE("an ack's reply is lost while the claim's record is not yet committed: retry is done") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, std::chrono::minutes(5), 5));
  std::string id = d.ingest("lost-reply-4", "claimed, acked at once, the answer lost");
  d.drained();
  // A busy writer (a large ingest batch, a checkpoint): the claim's record waits behind this.
  d.app->writer().submit(storage::Job{
      [](storage::Db&) { std::this_thread::sleep_for(std::chrono::milliseconds(1500)); },
      [](const std::string&) {}});
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  cutter->cut_reply_to("$3\r\nack\r\n");
  CHECK(d.act("alice-token", id, "ack").status == 503);
  REQUIRE(cutter->cut());
  // Her retry: Redis ran the ack. The claim is the daemon's own doing, only not written yet.
  auto again = d.act("alice-token", id, "ack");
  CHECK(again.status == 200);
  REQUIRE(eventually([&] { return in_state(d, id, "done"); }));
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='finish' AND actor='alice'") == 1);
}

TEST_CASE("a lost claim's retry is not handed an entry delivered more than max_deliveries times") {
  std::unique_ptr<ReplyCutter> cutter;
  AgentDaemon d(through(cutter, std::chrono::minutes(5), 1));
  std::string id = d.ingest("retry-5", "held past max_deliveries");
  d.drained();
  auto first = d.claim("bob-token", "general");
  CHECK(claimed_id(first) == id);
  std::string entry(parse(first.body).at("delivery").at("entry_id").as_string());
  REQUIRE(eventually([&] { return in_state(d, id, "claimed"); }));
  // What the claim script used to leave when the dead-letter key refused an entry: taken for the
  // claiming agent as delivery 2 (max_deliveries is 1), then the script failed (503).
  d.redis.cmd(
      {"XCLAIM", "sb:q:general:normal", "agents", "bob", "0", entry, "RETRYCOUNT", "2", "JUSTID"});
  REQUIRE(pending_of(d, "sb:q:general:normal", "bob").find(",2]") != std::string::npos);

  cutter->cut_reply_to("bob");
  CHECK(d.claim("bob-token", "general").status == 503);
  REQUIRE(cutter->cut());
  // The retry looks for what the lost claim took: this entry is not something a claim hands
  // out, so it is not handed out now (before: 200 with deliveries 2).
  auto again = d.claim("bob-token", "general");
  CHECK_MESSAGE(again.status == 204, again.body);
}
