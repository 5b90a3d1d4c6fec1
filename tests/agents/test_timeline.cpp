// Acceptance 6 of issue 3 and reply: the customer timeline shows the inbound message, the
// claim, the reply (with its send state after a retry) and the finish, in order.
#include <doctest/doctest.h>

#include <atomic>
#include <cctype>
#include <vector>

#include "core/sender.hpp"
#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;

namespace {
// Stands in for a provider: the first send fails with a retryable error, later ones succeed.
struct FlakySender : Sender {
  std::atomic<int> calls{0};
  std::string last_text, last_id;
  void send(OutboundMessage m, Done done) override {
    int n = ++calls;
    last_text = m.text;
    last_id = m.id;
    if (n == 1) {
      done(SendResult::retry("503 Service Unavailable", std::chrono::milliseconds(400)));
    } else {
      done(SendResult::sent("provider-" + m.id));
    }
  }
};

// POST /v1/interactions from `email`, occurred at `occurred_at` (RFC 3339; "" for none: it
// happened when it arrived). Returns the interaction id.
std::string ingest_at(AgentDaemon& d, const std::string& external_id,
                      const std::string& occurred_at,
                      const std::string& email = "ann@example.com") {
  json::object o{{"source", "web-form"},
                 {"external_id", external_id},
                 {"kind", "message"},
                 {"from", {{"email", email}}},
                 {"text", "about " + external_id}};
  if (!occurred_at.empty()) {
    o["occurred_at"] = occurred_at;
  }
  auto r = d.http->post_json("/v1/interactions", json::serialize(o), "test-token");
  REQUIRE(r.status == 202);
  return std::string(parse(r.body).at("id").as_string());
}

std::string customer_of(AgentDaemon& d, const std::string& interaction_id) {
  storage::Db db(d.dir.file("switchboard.db"), true);
  auto st = db.prepare("SELECT customer_id FROM interactions WHERE id = ?1");
  st.bind(1, interaction_id);
  REQUIRE(st.step());
  return st.text(0);
}

std::vector<std::string> ids_of(const json::object& page) {
  std::vector<std::string> ids;
  for (const auto& i : page.at("interactions").as_array()) {
    ids.emplace_back(i.at("id").as_string());
  }
  return ids;
}
}  // namespace

TEST_CASE("timeline: inbound, claim, reply (sent after one retry), finish, in order") {
  auto sender = std::make_shared<FlakySender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", sender); });
  std::string id = d.ingest("tl-1", "Order 7 is late", "ann@example.com", "order-7");
  d.drained();
  auto c = d.claim("alice-token", "general");
  REQUIRE(claimed_id(c) == id);
  std::string customer(parse(c.body).at("interaction").at("customer").at("id").as_string());

  auto bad = d.act("alice-token", id, "reply", R"({"text":""})");
  CHECK(bad.status == 400);
  auto rep = d.act("alice-token", id, "reply", R"({"text":"It ships today."})");
  REQUIRE(rep.status == 202);
  std::string out_id(parse(rep.body).at("id").as_string());
  // Between the attempts the failure is visible: pending, with the provider's error.
  REQUIRE(eventually([&] {
    return d.rows(
               "SELECT count(*) FROM sends WHERE state='pending' AND attempts=1 AND "
               "last_error='503 Service Unavailable'") == 1;
  }));
  REQUIRE(eventually([&] { return sender->calls == 2; }));
  CHECK(sender->last_text == "It ships today.");
  CHECK(sender->last_id == out_id);
  REQUIRE(eventually(
      [&] { return d.rows("SELECT count(*) FROM sends WHERE state='sent' AND attempts=2") == 1; }));
  CHECK(d.act("alice-token", id, "ack").status == 200);

  auto cust = d.get("alice-token", "/v1/customers/" + customer);
  REQUIRE(cust.status == 200);
  auto cj = parse(cust.body);
  CHECK(cj.at("identities").at(0).at("value").as_string() == "ann@example.com");
  CHECK(d.get("alice-token", "/v1/customers/nobody").status == 404);

  json::object tl;
  REQUIRE(eventually([&] {
    auto r = d.get("alice-token", "/v1/customers/" + customer + "/interactions");
    tl = parse(r.body);
    auto& items = tl.at("interactions").as_array();
    return items.size() == 2 && items[1].at("events").as_array().size() == 3;
  }));
  auto& items = tl.at("interactions").as_array();
  // Newest first: the reply, then the inbound message.
  auto& reply = items[0].as_object();
  auto& inbound = items[1].as_object();
  CHECK(reply.at("id").as_string() == out_id);
  CHECK(reply.at("direction").as_string() == "outbound");
  CHECK(reply.at("conversation_id") == inbound.at("conversation_id"));
  CHECK(reply.at("text").as_string() == "It ships today.");
  CHECK(reply.at("send").at("state").as_string() == "sent");
  CHECK(reply.at("send").at("attempts").as_int64() == 2);
  CHECK(reply.at("send").at("provider_id").as_string() == "provider-" + out_id);
  CHECK(reply.at("send").at("error").is_null());
  auto& ev = inbound.at("events").as_array();
  CHECK(ev[0].at("type").as_string() == "claim");
  CHECK(ev[1].at("type").as_string() == "reply");
  CHECK(ev[2].at("type").as_string() == "finish");
  for (const auto& e : ev) {
    CHECK(e.at("actor").as_string() == "alice");
  }
  // In order in time: received <= claim <= reply <= finish (RFC 3339 ms strings sort).
  std::string received(inbound.at("received_at").as_string());
  std::string t_claim(ev[0].at("at").as_string()), t_reply(ev[1].at("at").as_string()),
      t_finish(ev[2].at("at").as_string());
  CHECK(received.substr(0, 19) <= t_claim.substr(0, 19));
  CHECK(t_claim <= t_reply);
  CHECK(t_reply <= t_finish);
  CHECK(ev[1].at("detail").at("outbound_id").as_string() == out_id);
}

TEST_CASE("reply: a channel without a sender is 422, and the timeline pages newest first") {
  AgentDaemon d;
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(d.ingest("p-" + std::to_string(i), "page " + std::to_string(i)));
  }
  d.drained();
  auto c = d.claim("alice-token", "general");
  std::string id = claimed_id(c);
  auto r = d.act("alice-token", id, "reply", R"({"text":"hello"})");
  CHECK(r.status == 422);
  CHECK(error_message(r).find("\"api\"") != std::string::npos);
  // Not a missing feature: an ingested interaction has no way back to the customer.
  CHECK(error_message(r) ==
        "replies through channel \"api\" (account \"web-form\") are not possible: an ingested "
        "interaction has no way back to the customer; answer from the system that posted it");
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE direction='outbound'") == 0);

  std::string customer(parse(c.body).at("interaction").at("customer").at("id").as_string());
  auto base = "/v1/customers/" + customer + "/interactions";
  auto p1 = parse(d.get("bob-token", base + "?limit=2").body);
  REQUIRE(p1.at("interactions").as_array().size() == 2);
  CHECK(p1.at("interactions").at(0).at("id").as_string() == ids[2]);
  CHECK(p1.at("interactions").at(1).at("id").as_string() == ids[1]);
  std::string cursor(p1.at("next_before").as_string());
  auto p2 = parse(d.get("bob-token", base + "?limit=2&before=" + cursor).body);
  REQUIRE(p2.at("interactions").as_array().size() == 1);
  CHECK(p2.at("interactions").at(0).at("id").as_string() == ids[0]);
  CHECK(p2.at("next_before").is_null());
  CHECK(d.get("bob-token", base + "?limit=0").status == 400);
  CHECK(d.get("", base).status == 401);
}

TEST_CASE("timeline: a reply carries every key of SPEC section 5, in its parent's queue") {
  auto sender = std::make_shared<FlakySender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", sender); });
  std::string id = d.ingest("tl-keys", "Order 9 is late");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == id);
  // Moved on the way (queue and priority unlike the defaults), claimed and answered at once: the
  // transfer's record may be committed only after the reply route read the parent.
  REQUIRE(d.act("alice-token", id, "transfer", R"({"queue":"vip","priority":"high"})").status ==
          200);
  auto c = d.claim("alice-token", "vip");
  REQUIRE(claimed_id(c) == id);
  std::string customer(parse(c.body).at("interaction").at("customer").at("id").as_string());
  auto rep = d.act("alice-token", id, "reply", R"({"text":"On its way."})");
  REQUIRE(rep.status == 202);
  std::string out_id(parse(rep.body).at("id").as_string());

  auto tl = parse(d.get("bob-token", "/v1/customers/" + customer + "/interactions").body);
  auto& items = tl.at("interactions").as_array();
  REQUIRE(items.size() == 2);
  auto& reply = items[0].as_object();
  REQUIRE(reply.at("id").as_string() == out_id);
  for (const char* key :
       {"id", "channel", "account", "kind", "direction", "external_id", "conversation_id",
        "customer", "from", "to", "subject", "text", "occurred_at", "received_at", "in_reply_to",
        "attachments", "flags", "queue", "priority"}) {
    CHECK_MESSAGE(reply.contains(key), "no \"" << key << "\" in " << boost::json::serialize(reply));
  }
  if (reply.contains("from")) {
    CHECK(reply.at("from").is_null());  // our side: no identity of the channel is known here
  }
  if (reply.contains("attachments") && reply.contains("flags")) {
    CHECK(reply.at("attachments").as_array().empty());
    CHECK(reply.at("flags").as_array().empty());
  }
  if (reply.contains("queue") && reply.contains("priority")) {
    CHECK(reply.at("queue").as_string() == "vip");
    CHECK(reply.at("priority").as_string() == "high");
  }
  CHECK(reply.at("agent").as_string() == "alice");
  CHECK(reply.at("to").as_array().at(0).at("value").as_string() == "ann@example.com");
  // The row agrees with its payload.
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE id='" + out_id +
               "' AND queue='vip' AND priority='high'") == 1);
  // Acting on the reply itself: like its parent, a matter of its queue's agents only (bob works
  // general and billing), who are told it is not theirs to finish.
  auto bobs = d.act("bob-token", out_id, "ack");
  CHECK(bobs.status == 403);
  CHECK(error_message(bobs).find("\"vip\"") != std::string::npos);
  CHECK(d.act("alice-token", out_id, "ack").status == 409);
}

TEST_CASE("timeline: a malformed before or limit is 400 naming it, not page one again") {
  // `before` is compared with interaction ids as text. A cursor that is no id ("null", a
  // lower-cased or cut id) sorted after every one: the answer was page one, with the same
  // next_before, so a client paging until next_before was null never stopped.
  AgentDaemon d;
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(d.ingest("q-" + std::to_string(i), "query " + std::to_string(i)));
  }
  d.drained();
  auto c = d.claim("alice-token", "general");
  REQUIRE(c.status == 200);
  std::string customer(parse(c.body).at("interaction").at("customer").at("id").as_string());
  auto base = "/v1/customers/" + customer + "/interactions";

  auto page = d.get("bob-token", base + "?limit=200&before=" + ids[1]);
  REQUIRE(page.status == 200);
  REQUIRE(parse(page.body).at("interactions").as_array().size() == 1);
  CHECK(parse(page.body).at("interactions").at(0).at("id").as_string() == ids[0]);

  std::string lower = ids[1];
  for (auto& ch : lower) {
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  std::string with_u = ids[1];
  with_u[20] = 'U';  // not in Crockford's alphabet (nor are I, L, O)
  for (const std::string& bad : {lower, ids[1].substr(0, 25), ids[1] + "0", std::string("null"),
                                 std::string(), with_u, "8" + ids[1].substr(1)}) {
    CAPTURE(bad);
    auto r = d.get("bob-token", base + "?before=" + bad);
    CHECK(r.status == 400);
    CHECK(error_message(r).find("before must be the id of an interaction") != std::string::npos);
  }
  // std::stoi took " 5" (%20 decoded) and "+5"; the rest were refused without their message
  // being checked.
  for (const char* bad : {"abc", "201", "5x", "0", "-1", "+5", "%205", "", "99999999999"}) {
    CAPTURE(bad);
    auto r = d.get("bob-token", base + "?limit=" + bad);
    CHECK(r.status == 400);
    CHECK(error_message(r) == "limit must be an integer from 1 to 200");
  }
  CHECK(d.get("bob-token", base + "?limit=200").status == 200);
  CHECK(d.get("bob-token", base + "?limit=1").status == 200);

  // The attachment number is a decimal index, not a name or a signed number.
  for (const char* bad : {"abc", "-1", "1x", "0x1", "1234567"}) {
    CAPTURE(bad);
    auto r = d.get("bob-token", "/v1/interactions/" + ids[0] + "/attachments/" + bad);
    CHECK(r.status == 400);
    CHECK(error_message(r) == "the attachment number must be 0, 1, 2, ...");
  }
  CHECK(d.get("bob-token", "/v1/interactions/" + ids[0] + "/attachments/0").status == 404);
}

TEST_CASE("timeline: in the order things happened, not as they arrived, page after page") {
  // What arrives late and happened long ago: an IMAP first sync of old mail, a webhook retried
  // for hours, an import of old messages through the API. Listed by arrival, years-old mail
  // stood above yesterday's call.
  AgentDaemon d;
  const std::string recent = ingest_at(d, "recent", "2025-03-05T10:00:00Z");
  const std::string oldest = ingest_at(d, "oldest", "2019-06-01T08:00:00Z");
  const std::string tie1 = ingest_at(d, "tie-1", "2024-01-01T00:00:00Z");
  const std::string tie2 = ingest_at(d, "tie-2", "2024-01-01T00:00:00Z");
  const std::string tie3 = ingest_at(d, "tie-3", "2024-01-01T00:00:00Z");
  const std::string now1 = ingest_at(d, "now-1", "");  // it happened as it arrived
  // A source whose clock runs ahead: at its arrival, not above everything that comes after it.
  const std::string ahead = ingest_at(d, "ahead", "2999-01-01T00:00:00Z");
  const std::string old = ingest_at(d, "old", "2021-07-01T12:00:00Z");
  const std::string now2 = ingest_at(d, "now-2", "");
  const std::string customer = customer_of(d, recent);
  REQUIRE(customer_of(d, now2) == customer);
  const auto base = "/v1/customers/" + customer + "/interactions";
  // Newest first; the three of one time (a Date header's second, an import's one date) by id.
  const std::vector<std::string> expected{now2, ahead, now1, recent, tie3, tie2, tie1, old, oldest};

  auto whole = parse(d.get("bob-token", base + "?limit=200").body);
  CHECK(ids_of(whole) == expected);
  CHECK(whole.at("next_before").is_null());
  // The time the source gave stays the interaction's; only its place in the list is its arrival.
  auto& items = whole.at("interactions").as_array();
  REQUIRE(items.size() == expected.size());
  CHECK(std::string(items[1].at("occurred_at").as_string()).rfind("2999-01-01T00:00:00", 0) == 0);

  // Two at a time, each page continuing after the last id of the one before: none skipped, none
  // twice, a page boundary inside the three of one time included (after tie2, tie1).
  std::vector<std::string> paged;
  std::string before;
  for (int page = 0; page < 10; ++page) {
    auto r = d.get("bob-token", base + "?limit=2" + (before.empty() ? "" : "&before=" + before));
    REQUIRE(r.status == 200);
    auto body = parse(r.body);
    auto ids = ids_of(body);
    CAPTURE(page);
    CHECK(ids.size() == (page < 4 ? 2u : 1u));
    paged.insert(paged.end(), ids.begin(), ids.end());
    if (body.at("next_before").is_null()) {
      CHECK(page == 4);
      break;
    }
    REQUIRE(!ids.empty());
    before = std::string(body.at("next_before").as_string());
    CHECK(before == ids.back());
  }
  CHECK(paged == expected);
}

TEST_CASE(
    "timeline: a before of another customer's continues after its time and an unknown one "
    "answers with the customer's interactions of smaller ids") {
  // A cursor that is some other customer's interaction now (a call taken from one customer for
  // another since the page before) still marks where the page before ended: the next page goes
  // on after its time. One that is no interaction at all keeps the answer it had before the
  // timeline was ordered by time: 200, the customer's interactions whose ids are smaller, in
  // the timeline's order.
  AgentDaemon d;
  const std::string a = ingest_at(d, "a", "2025-05-01T00:00:00Z");
  const std::string b = ingest_at(d, "b", "2019-01-01T00:00:00Z");
  const std::string c = ingest_at(d, "c", "2024-01-01T00:00:00Z");
  const std::string bobs = ingest_at(d, "bobs", "2020-01-01T00:00:00Z", "bob@example.com");
  const std::string e = ingest_at(d, "e", "");
  const std::string customer = customer_of(d, a);
  REQUIRE(customer_of(d, bobs) != customer);
  const auto base = "/v1/customers/" + customer + "/interactions";

  auto other = d.get("bob-token", base + "?limit=200&before=" + bobs);
  REQUIRE(other.status == 200);
  CHECK(ids_of(parse(other.body)) == std::vector<std::string>{b});  // before 2020, not by id
  // The largest id there can be, and the smallest.
  auto top = d.get("bob-token", base + "?limit=2&before=7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
  REQUIRE(top.status == 200);
  CHECK(ids_of(parse(top.body)) == std::vector<std::string>{e, a});
  CHECK(parse(top.body).at("next_before").as_string() == a);
  auto bottom = d.get("bob-token", base + "?before=00000000000000000000000000");
  REQUIRE(bottom.status == 200);
  CHECK(ids_of(parse(bottom.body)).empty());
  CHECK(parse(bottom.body).at("next_before").is_null());
}

TEST_CASE("timeline: a page of large mails ends at about 4 MiB with a cursor that walks them all") {
  // Each payload holds up to a MiB of text (an email body): 200 of them made one answer of
  // 200 MB, built in memory. Ten of 900 kB each: the default limit of 50 would take them all
  // in one page of 9 MB.
  AgentDaemon d;
  std::vector<std::string> expected;  // newest first
  for (int i = 0; i < 10; ++i) {
    json::object o{{"source", "web-form"},
                   {"external_id", "big-" + std::to_string(i)},
                   {"kind", "message"},
                   {"from", {{"email", "ann@example.com"}}},
                   {"text", std::string(900 * 1000, static_cast<char>('a' + i))}};
    auto r = d.http->post_json("/v1/interactions", json::serialize(o), "test-token");
    REQUIRE(r.status == 202);
    expected.insert(expected.begin(), std::string(parse(r.body).at("id").as_string()));
  }
  const auto base = "/v1/customers/" + customer_of(d, expected.front()) + "/interactions";

  std::vector<std::string> walked;
  std::vector<std::size_t> sizes;
  std::string before;
  for (int page = 0; page < 10; ++page) {
    auto r = d.get("bob-token", base + (before.empty() ? "" : "?before=" + before));
    REQUIRE(r.status == 200);
    CHECK(r.body.size() < 4 * 1024 * 1024 + 64 * 1024);
    auto body = parse(r.body);
    auto ids = ids_of(body);
    REQUIRE(!ids.empty());
    sizes.push_back(ids.size());
    walked.insert(walked.end(), ids.begin(), ids.end());
    // Whole interactions, not cut ones.
    for (const auto& i : body.at("interactions").as_array()) {
      CHECK(i.at("text").as_string().size() == 900 * 1000);
    }
    if (body.at("next_before").is_null()) {
      break;
    }
    before = std::string(body.at("next_before").as_string());
    CHECK(before == ids.back());
  }
  // Four of 900 kB fit in 4 MiB, a fifth does not.
  CHECK(sizes == std::vector<std::size_t>{4, 4, 2});
  CHECK(walked == expected);  // each once, in order
  // A limit below what fits is still the limit.
  auto two = parse(d.get("bob-token", base + "?limit=2").body);
  CHECK(ids_of(two) == std::vector<std::string>{expected[0], expected[1]});
  CHECK(two.at("next_before").as_string() == expected[1]);
}
