// Acceptance 5 of issue 3 (401/403/409/404 with clear messages), release, and transfer with
// its sticky conversation.
#include <doctest/doctest.h>

#include <csignal>
#include <thread>

#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

TEST_CASE("wrong token 401, other queue 403, not held 409, unknown id 404: each says why") {
  AgentDaemon d;
  std::string id = d.ingest("a-1", "access control");
  d.drained();

  auto none = d.http->post_json("/v1/agent/claim", R"({"queue":"general"})", "");
  CHECK(none.status == 401);
  CHECK(none.headers["www-authenticate"] == "Bearer");  // RFC 9110 section 11.6.1
  CHECK(error_message(none).find("token") != std::string::npos);
  auto wrong = d.claim("ingest-token", "general");
  CHECK(wrong.status == 401);
  CHECK(error_message(wrong) == "the agent token is not valid");
  auto api = d.claim("test-token", "general");  // an API token is not an agent's
  CHECK(api.status == 401);
  CHECK(error_message(api) ==
        "this is an API token ([api] tokens): agent routes need an agent's token ([[agents]] "
        "token)");

  auto other = d.claim("alice-token", "billing");
  CHECK(other.status == 403);
  CHECK(error_message(other) ==
        "agent alice may not claim from queue \"billing\"; its queues are: general, vip");

  auto bad = d.http->post_json("/v1/agent/claim", R"({"wait_ms":10})", "alice-token");
  CHECK(bad.status == 400);
  CHECK(error_message(bad).find("queue") != std::string::npos);

  // Not claimed yet: 409.
  auto early = d.act("bob-token", id, "ack");
  CHECK(early.status == 409);
  CHECK(error_message(early).find("not held by agent bob") != std::string::npos);

  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  for (const char* action : {"ack", "release", "transfer", "reply"}) {
    auto r = d.act("bob-token", id, action, R"({"queue":"billing","text":"hi"})");
    CHECK_MESSAGE(r.status == 409, action);
    CHECK(error_message(r) ==
          "interaction " + id + " is not held by agent bob: agent alice holds it");
  }
  auto unknown = d.act("alice-token", "01NOSUCHINTERACTION0000000", "ack");
  CHECK(unknown.status == 404);
  CHECK(error_message(unknown) == "no interaction has the id 01NOSUCHINTERACTION0000000");
  CHECK(d.act("alice-token", "01NOSUCHINTERACTION0000000", "transfer", R"({"queue":"x"})").status ==
        404);

  CHECK(d.act("alice-token", id, "ack").status == 200);
  auto twice = d.act("bob-token", id, "ack");
  CHECK(twice.status == 409);
  CHECK(error_message(twice) ==
        "interaction " + id + " is not held by agent bob: agent alice finished it");
  auto anonymous = d.get("", "/v1/queues");
  CHECK(anonymous.status == 401);
  CHECK(error_message(anonymous) ==
        "an agent or API token is required: Authorization: Bearer <token>");
  // A token was sent, and is not one (before: "an agent or API token is required" for both).
  auto unknown_token = d.get("no-such-token", "/v1/queues");
  CHECK(unknown_token.status == 401);
  CHECK(error_message(unknown_token) ==
        "the token is not valid: it is neither an agent's nor an API token");
  CHECK(d.get("test-token", "/v1/queues").status == 200);  // read APIs: API tokens too
}

TEST_CASE("another agent's queue: ack, release, transfer and reply answer 403 naming nobody") {
  AgentDaemon d([](config::Config& c) {
    c.agents.push_back({"carol", "carol-token", {"billing"}});
  });
  std::string id = d.ingest("f-1", "for billing");
  d.drained();
  // alice works general and vip, bob general and billing. alice may move an item into billing
  // (SPEC's example transfers into a queue its agent does not work); then it is out of her reach.
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  REQUIRE(d.act("alice-token", id, "transfer", R"({"queue":"billing"})").status == 200);
  REQUIRE(eventually(
      [&] { return d.rows("SELECT count(*) FROM interactions WHERE queue='billing'") == 1; }));
  const std::string forbidden =
      " interaction " + id + " in queue \"billing\"; its queues are: general, vip";
  auto all_forbidden = [&](const char* when) {
    for (const char* action : {"ack", "release", "transfer", "reply"}) {
      auto r = d.act("alice-token", id, action, R"({"queue":"general","text":"hi"})");
      CHECK_MESSAGE(r.status == 403, when << ": " << action << " " << r.body);
      if (r.status != 403) {
        continue;
      }
      std::string verb = std::string_view(action) == "reply" ? "reply to" : action;
      CHECK(error_message(r) == "agent alice may not " + verb + forbidden);
      CHECK_MESSAGE(r.body.find("bob") == std::string::npos, when << ": " << r.body);
    }
  };
  all_forbidden("waiting, never claimed there");

  auto got = d.claim("bob-token", "billing");
  CHECK(claimed_id(got) == id);
  all_forbidden("held by bob");  // before: 409 "agent bob holds it"
  CHECK(d.act("bob-token", id, "release").status == 200);
  all_forbidden("released by bob");
  // Released for someone else: carol gets it, not bob; once she releases it, bob may.
  CHECK(d.claim("bob-token", "billing").status == 204);
  CHECK(claimed_id(d.claim("carol-token", "billing")) == id);
  CHECK(d.act("carol-token", id, "release").status == 200);
  all_forbidden("released by carol");
  CHECK(claimed_id(d.claim("bob-token", "billing")) == id);
  CHECK(d.act("bob-token", id, "ack").status == 200);
  REQUIRE(eventually(
      [&] { return d.rows("SELECT count(*) FROM interactions WHERE state='done'") == 1; }));
  all_forbidden("finished by bob");
  // Nothing alice tried moved it: one transfer event (hers), one finish (bob's).
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='transfer'") == 1);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='finish' AND actor='bob'") == 1);

  // An unknown id is still 404, for every route.
  for (const char* action : {"ack", "release", "transfer", "reply"}) {
    auto r = d.act("alice-token", "01NOSUCHINTERACTION0000000", action,
                   R"({"queue":"general","text":"hi"})");
    CHECK_MESSAGE(r.status == 404, action);
  }
}

TEST_CASE("a queue taken from an agent by a reload: what it holds there answers 403") {
  AgentDaemon d;
  std::string id = d.ingest("f-2", "held across a reload");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  auto fresh = test_config(d.dir, d.redis.port());
  fresh.agents = {{"alice", "alice-token", {"vip"}}, {"bob", "bob-token", {"general"}}};
  REQUIRE(d.app->reload(fresh).empty());
  auto r = d.act("alice-token", id, "ack");
  CHECK(r.status == 403);
  CHECK(error_message(r) ==
        "agent alice may not ack interaction " + id + " in queue \"general\"; its queues are: vip");
  // Still held by alice in Redis: it returns to general after claim_timeout, as any unfinished
  // item does; bob is told who holds it, as an agent of that queue.
  auto b = d.act("bob-token", id, "ack");
  CHECK(b.status == 409);
  CHECK(error_message(b).find("agent alice holds it") != std::string::npos);
}

TEST_CASE("release: back to its queue at once, for someone else, in its place") {
  AgentDaemon d;
  std::string first = d.ingest("r-1", "first");
  std::string second = d.ingest("r-2", "second");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == first);
  CHECK(d.queue_stats("general").at("claimed").as_int64() == 1);
  auto rel = d.act("alice-token", first, "release");
  CHECK(rel.status == 200);
  auto stats = d.queue_stats("general");  // released: waiting again, nobody holds it
  CHECK(stats.at("depth").as_int64() == 2);
  CHECK(stats.at("claimed").as_int64() == 0);
  CHECK(d.act("alice-token", first, "ack").status == 409);  // not hers any more
  // The released item is the oldest: it comes before `second`.
  auto again = d.claim("bob-token", "general");
  CHECK(claimed_id(again) == first);
  CHECK(parse(again.body).at("delivery").at("deliveries").as_int64() == 1);  // not a failure
  CHECK(claimed_id(d.claim("bob-token", "general")) == second);
  CHECK(d.act("bob-token", first, "ack").status == 200);
  CHECK(d.act("bob-token", second, "ack").status == 200);
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);
}

TEST_CASE(
    "transfer: to another queue and priority, once even if retried, and the conversation follows") {
  AgentDaemon d;
  std::string id = d.ingest("t-1", "my invoice is wrong", "ann@example.com", "case-9");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  auto bad = d.act("alice-token", id, "transfer", R"({"queue":"billing","priority":"asap"})");
  CHECK(bad.status == 400);
  CHECK(error_message(bad).find("priority") != std::string::npos);

  auto t = d.act("alice-token", id, "transfer", R"({"queue":"billing","priority":"high"})");
  REQUIRE(t.status == 200);
  auto retry = d.act("alice-token", id, "transfer", R"({"queue":"billing","priority":"high"})");
  CHECK(retry.status == 200);  // the answer was lost, say: nothing is added twice
  CHECK(d.redis.xlen("sb:q:billing:high") == 1);
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);
  auto entry = d.redis.xrange("sb:q:billing:high").at(0);
  CHECK(entry["interaction_id"] == id);
  CHECK(entry["priority"] == "high");
  auto payload = parse(entry["payload"]);
  CHECK(payload.at("queue").as_string() == "billing");
  CHECK(payload.at("priority").as_string() == "high");

  CHECK(d.claim("alice-token", "general").status == 204);
  auto got = d.claim("bob-token", "billing");
  CHECK(claimed_id(got) == id);
  CHECK(parse(got.body).at("interaction").at("queue").as_string() == "billing");
  CHECK(d.act("bob-token", id, "ack").status == 200);

  // Sticky: the next message of the conversation goes to billing, where it was transferred.
  REQUIRE(eventually(
      [&] { return d.rows("SELECT count(*) FROM conversations WHERE queue='billing'") == 1; }));
  std::string next = d.ingest("t-2", "still wrong", "ann@example.com", "case-9");
  d.drained();
  CHECK(claimed_id(d.claim("bob-token", "billing")) == next);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='transfer'") == 1);
}

TEST_CASE(
    "transfer: a change committed to the interaction while Redis moves the entry is kept, not "
    "overwritten by the row the route read before") {
  AgentDaemon d;
  std::string id = d.ingest("t-3", "call me back");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  d.redis.signal(SIGSTOP);  // the route reads the row, then waits for Redis
  HttpResponse t;
  std::thread transfer([&] { t = d.act("alice-token", id, "transfer", R"({"queue":"billing"})"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  {
    // What a call event does to a queued call (a recording callback): the payload is rewritten.
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec(
        "UPDATE interactions SET payload=json_set(payload, '$.recording_url', "
        "'https://rec.example/1') WHERE id='" +
        id + "'");
  }
  d.redis.signal(SIGCONT);
  transfer.join();
  REQUIRE(t.status == 200);
  REQUIRE(eventually(
      [&] { return d.rows("SELECT count(*) FROM interactions WHERE queue='billing'") == 1; }));
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE "
               "json_extract(payload, '$.recording_url') = 'https://rec.example/1' AND "
               "json_extract(payload, '$.queue') = 'billing' AND "
               "json_extract(payload, '$.priority') = 'normal'") == 1);
}

TEST_CASE("SIGHUP reload: new agents and queues take effect, removed tokens stop working") {
  AgentDaemon d;
  auto fresh = test_config(d.dir, d.redis.port());
  fresh.agents = {{"carol", "carol-token", {"escalations"}}};
  CHECK(d.app->reload(fresh).empty());
  CHECK(d.claim("alice-token", "general").status == 401);
  REQUIRE(eventually([&] { return d.claim("carol-token", "escalations").status == 204; }));
  CHECK(d.redis.cmd({"XINFO", "GROUPS", "sb:q:escalations:urgent"}).find("agents") !=
        std::string::npos);
}

TEST_CASE("SIGHUP reload: a queue first named by a new rule is in /v1/queues with its groups") {
  AgentDaemon d;
  auto fresh = test_config(d.dir, d.redis.port());
  // No agent works "escalations" (yet): read by a plain Redis client, say.
  fresh.routing.rules.push_back(subject_rule("escalations", "escalations", "urgent", "^escalate"));
  REQUIRE(d.app->reload(fresh).empty());
  // Its consumer groups exist before the first item, as for the queues known at start.
  REQUIRE(eventually([&] {
    return d.redis.cmd({"XINFO", "GROUPS", "sb:q:escalations:low"}).find("agents") !=
           std::string::npos;
  }));
  d.ingest("e-1", "escalate: the CEO wrote");
  d.drained();
  auto q = d.queue_stats("escalations");
  CHECK(q.at("depth").as_int64() == 1);
  CHECK(q.at("priorities").at("urgent").at("depth").as_int64() == 1);
  auto metrics = d.http->request("GET", "/metrics").body;
  CHECK(metrics.find("switchboard_queue_depth{queue=\"escalations\"} 1\n") != std::string::npos);
  CHECK(metrics.find("switchboard_queue_depth_by_priority{queue=\"escalations\",priority="
                     "\"urgent\"} 1\n") != std::string::npos);
}
