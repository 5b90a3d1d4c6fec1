// The agent routes given what they cannot act on: a transfer into a queue the configuration does
// not name, malformed bodies, and Redis down. Each answer says what is wrong; nothing is
// recorded, and the item stays held by its agent.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <vector>

#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

// Named per file: the test programs are unity builds.
namespace bad_input_test {

std::string lowered(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The error code of a JSON error answer.
std::string code_of(const HttpResponse& r) {
  return std::string(parse(r.body).at("error").at("code").as_string());
}

// Whether Redis's index says `id` is held (by anyone).
bool held_in_redis(AgentDaemon& d, const std::string& id) {
  return d.redis.cmd({"HGET", "sb:held", id}) != "(nil)";
}

// The types of `id`'s timeline events, in order, once its `last` event is committed.
std::string events_until(AgentDaemon& d, const std::string& id, const std::string& last) {
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM events WHERE interaction_id='" + id + "' AND type='" +
                  last + "'") > 0;
  }));
  storage::Db db(d.dir.file("switchboard.db"), true);
  auto st = db.prepare("SELECT type FROM events WHERE interaction_id=?1 ORDER BY seq");
  st.bind(1, id);
  std::string out;
  while (st.step()) {
    out += (out.empty() ? "" : " ") + st.text(0);
  }
  return out;
}

}  // namespace bad_input_test

using namespace bad_input_test;

TEST_CASE(
    "transfer to a queue the configuration does not name: 422 unknown_queue listing the known "
    "ones, nothing moved or recorded, the item still held") {
  AgentDaemon d;
  std::string id = d.ingest("u-1", "my invoice", "ann@example.com", "case-u1");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);

  auto r = d.act("alice-token", id, "transfer", R"({"queue":"biling","priority":"high"})");
  CHECK(r.status == 422);
  CHECK(code_of(r) == "unknown_queue");
  // The test config: default queue general, no rules, alice general+vip, bob general+billing.
  CHECK(error_message(r) ==
        "queue \"biling\" is not known: a transfer moves an item into the default queue, a "
        "rule's queue or an agent's queue (billing, general, vip); nothing was moved");

  CHECK(held_in_redis(d, id));
  CHECK(d.redis.xlen("sb:q:biling:high") == 0);
  CHECK(d.redis.cmd({"EXISTS", "sb:q:biling:high"}) == "0");
  auto queues = d.get("alice-token", "/v1/queues");
  CHECK(queues.body.find("biling") == std::string::npos);
  CHECK(d.http->request("GET", "/metrics").body.find("biling") == std::string::npos);
  // Still hers: she can move it where she meant to, and the conversation follows only that.
  CHECK(d.act("alice-token", id, "transfer", R"({"queue":"billing"})").status == 200);
  CHECK(events_until(d, id, "transfer") == "claim transfer");
  CHECK(d.rows("SELECT count(*) FROM events WHERE detail LIKE '%biling%'") == 0);
  CHECK(d.rows("SELECT count(*) FROM conversations WHERE queue='billing'") == 1);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE queue='biling'") == 0);
}

TEST_CASE(
    "transfer: an unknown queue leaves the item, its record and its conversation as they were") {
  AgentDaemon d;
  std::string id = d.ingest("u-2", "refund please", "ann@example.com", "case-u2");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  CHECK(d.act("alice-token", id, "transfer", R"({"queue":"nowhere"})").status == 422);
  CHECK(d.act("alice-token", id, "ack").status == 200);  // held by her all along
  CHECK(events_until(d, id, "finish") == "claim finish");
  CHECK(d.rows("SELECT count(*) FROM conversations WHERE queue='general'") == 1);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE id='" + id +
               "' AND queue='general' AND json_extract(payload, '$.queue')='general'") == 1);
  // The conversation's next message still goes to general, not to the refused name.
  std::string next = d.ingest("u-3", "any news?", "ann@example.com", "case-u2");
  d.drained();
  CHECK(claimed_id(d.claim("bob-token", "general")) == next);
  CHECK(d.redis.cmd({"EXISTS", "sb:q:nowhere:normal"}) == "0");
}

TEST_CASE("transfer: the known queues are those of the configuration in force after a reload") {
  AgentDaemon d;
  std::string a = d.ingest("u-4", "first");
  std::string b = d.ingest("u-5", "second");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == a);
  CHECK(claimed_id(d.claim("alice-token", "general")) == b);
  CHECK(d.act("alice-token", a, "transfer", R"({"queue":"escalations"})").status == 422);

  // The reload adds a rule's queue and drops bob (and with him billing).
  auto fresh = test_config(d.dir, d.redis.port());
  fresh.agents = {{"alice", "alice-token", {"general", "vip"}}};
  fresh.routing.rules.push_back(subject_rule("escalations", "escalations", "normal", "^escalate"));
  REQUIRE(d.app->reload(fresh).empty());

  CHECK(d.act("alice-token", a, "transfer", R"({"queue":"escalations"})").status == 200);
  auto gone = d.act("alice-token", b, "transfer", R"({"queue":"billing"})");
  CHECK(gone.status == 422);
  CHECK(error_message(gone).find("(escalations, general, vip)") != std::string::npos);
  CHECK(held_in_redis(d, b));
  // A rule's queue no agent works: readable by any Redis client, and listed.
  CHECK(d.queue_stats("escalations").at("depth").as_int64() == 1);
}

TEST_CASE("agent routes: malformed bodies are 400 naming the field, nothing recorded, still held") {
  AgentDaemon d;
  std::string id = d.ingest("m-1", "malformed");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);

  struct Case {
    std::string route, body, says;
  };
  const std::string claim = "/v1/agent/claim";
  const std::string item = "/v1/agent/interactions/" + id + "/";
  std::vector<Case> cases = {
      {claim, R"({"queue":"general")", "not valid JSON: incomplete JSON at byte offset 18"},
      {claim, "{\"queue\":\"gen\xff\"}", "not valid JSON: invalid UTF-8 at byte offset 13"},
      {claim, R"({"queue" "general"})", "not valid JSON: syntax error at byte offset 9"},
      {claim, "[1]", "the body must be a JSON object"},
      {claim, R"({"queue":7})", "field \"queue\""},
      {claim, R"({"queue":"general","wait_ms":"5"})", "field \"wait_ms\" must be an integer"},
      {claim, R"({"queue":"general","wait_ms":1.5})", "field \"wait_ms\" must be an integer"},
      {claim, R"({"queue":"general","wait_ms":-1})", "field \"wait_ms\" must not be negative"},
      // Past 2^64 Boost.JSON gives a double (2^63 .. 2^64-1 is a uint64, cut to 30000 below).
      {claim, R"({"queue":"general","wait_ms":18446744073709551616})",
       "field \"wait_ms\" must be an integer"},
      {item + "transfer", "{}", "field \"queue\" is required"},
      {item + "transfer", R"({"priority":"high"})", "field \"queue\" is required"},
      {item + "transfer", R"({"queue":"a/b"})", "field \"queue\" is required: a queue name"},
      {item + "transfer", R"({"queue":")" + std::string(65, 'q') + "\"}",
       "field \"queue\" is required: a queue name"},
      {item + "transfer", R"({"queue":7})", "field \"queue\""},
      {item + "transfer", R"({"queue":"billing")", "incomplete JSON at byte offset 18"},
      {item + "reply", "{}", "field \"text\" (the answer) is required"},
      {item + "reply", R"({"text":""})", "field \"text\" (the answer) is empty"},
      {item + "reply", R"({"text":7})",
       "field \"text\" (the answer) must be a string, not a number"},
      {item + "reply", R"({"text":["hi"]})",
       "field \"text\" (the answer) must be a string, not an array"},
      // Nothing a customer could see: white space, Unicode's (NBSP, ideographic space) and
      // zero-width characters (ZWSP, BOM, word joiner), as JSON escapes or as UTF-8.
      {item + "reply", R"({"text":"  \t\r\n "})", "field \"text\" (the answer) has no visible"},
      {item + "reply", R"({"text":"\u00a0\u3000"})", "field \"text\" (the answer) has no visible"},
      {item + "reply", R"({"text":"\u200b\ufeff\u2060 \u200d"})",
       "field \"text\" (the answer) has no visible"},
      {item + "reply", "{\"text\":\"\xc2\xa0\xe3\x80\x80\xe2\x80\x8b\"}",
       "field \"text\" (the answer) has no visible"},
      // Directional marks, soft hyphen, invisible operators, a C0 control, the blank letters
      // (Hangul filler, the blank Braille pattern).
      {item + "reply", R"({"text":"\u200e\u200f\u00ad\u2061\u0001"})",
       "field \"text\" (the answer) has no visible"},
      {item + "reply", R"({"text":"\u3164 \u2800\uffa0"})",
       "field \"text\" (the answer) has no visible"},
      {item + "reply", R"({"text":")" + std::string(65537, 't') + "\"}",
       "field \"text\" is longer than 65536 bytes"},
      {item + "reply", "{\"text\":\"caf\xc3\"}", "invalid UTF-8 at byte offset 12"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.route);
    CAPTURE(c.body.substr(0, 80));
    auto r = d.http->post_json(c.route, c.body, "alice-token");
    CHECK(r.status == 400);
    if (r.status == 400) {
      CHECK_MESSAGE(error_message(r).find(c.says) != std::string::npos, error_message(r));
    }
  }
  // A wait_ms past 30000, even 2^63, is cut to 30000 (SPEC: at most 30000): not refused.
  std::string other = d.ingest("m-2", "waiting");
  d.drained();
  auto big =
      d.http->post_json(claim, R"({"queue":"general","wait_ms":9223372036854775808})", "bob-token");
  CHECK(claimed_id(big) == other);

  CHECK(held_in_redis(d, id));
  CHECK(d.act("alice-token", id, "ack").status == 200);
  CHECK(events_until(d, id, "finish") == "claim finish");
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE direction='outbound'") == 0);
  CHECK(d.rows("SELECT count(*) FROM sends") == 0);
}

TEST_CASE(
    "redis down: ack, release, transfer and reply answer 503 naming redis, record nothing, and "
    "the ack works once when it returns") {
  AgentDaemon d;
  std::string id = d.ingest("r-1", "while redis is down");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == id);
  REQUIRE(d.redis.cmd({"SAVE"}) == "OK");  // what Redis comes back with (appendonly, say)
  d.redis.stop();

  for (const char* action : {"ack", "release", "transfer", "reply"}) {
    CAPTURE(action);
    auto r = d.act("alice-token", id, action, R"({"queue":"billing","text":"on its way"})");
    CHECK(r.status == 503);
    CHECK(code_of(r) == "redis_unavailable");
    CHECK(lowered(error_message(r)).find("redis") != std::string::npos);
    CHECK(r.headers["retry-after"] == "1");  // as a claim's 503 (before: only the claim's)
  }
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);  // no outbound reply
  CHECK(d.rows("SELECT count(*) FROM sends") == 0);

  d.redis.start();
  HttpResponse ack;
  REQUIRE(eventually([&] {
    ack = d.act("alice-token", id, "ack");
    return ack.status != 503;
  }));
  CHECK(ack.status == 200);
  CHECK(parse(ack.body).at("status").as_string() == "done");
  // A repeat is answered as the first was (before: 409 "agent alice finished it"); another
  // agent is told who finished it.
  auto again = d.act("alice-token", id, "ack");
  CHECK(again.status == 200);
  CHECK(again.body == ack.body);
  auto bob = d.act("bob-token", id, "ack");
  CHECK(bob.status == 409);
  CHECK(error_message(bob) ==
        "interaction " + id + " is not held by agent bob: agent alice finished it");
  CHECK(events_until(d, id, "finish") == "claim finish");
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE state='done'") == 1);
  CHECK(d.redis.xlen("sb:q:billing:normal") == 0);
  CHECK(d.rows("SELECT count(*) FROM sends") == 0);
}
