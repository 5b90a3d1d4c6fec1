// Erasing a customer (DELETE /v1/customers/{id}, `switchboard customers erase`): the database
// forgets it in one transaction, and Redis (a projection) holds none of its entries afterwards,
// waiting, claimed or dead-lettered, also when Redis was down at the time.
#include <doctest/doctest.h>

#include <algorithm>

#include "daemon/commands.hpp"
#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

namespace {

HttpResponse erase(AgentDaemon& d, const std::string& token, const std::string& id) {
  std::map<std::string, std::string> h;
  if (!token.empty()) {
    h["Authorization"] = "Bearer " + token;
  }
  return d.http->request("DELETE", "/v1/customers/" + id, "", h);
}

std::string customer_of(AgentDaemon& d, const std::string& interaction_id) {
  storage::Db db(d.dir.file("switchboard.db"), true);
  auto st = db.prepare("SELECT customer_id FROM interactions WHERE id = ?1");
  st.bind(1, interaction_id);
  REQUIRE(st.step());
  return st.text(0);
}

// Every entry of the queue streams and dead letters of `general` that names one of `ids`.
int entries_of(AgentDaemon& d, const std::vector<std::string>& ids) {
  int n = 0;
  for (const char* s : {"sb:q:general:urgent", "sb:q:general:high", "sb:q:general:normal",
                        "sb:q:general:low", "sb:dead:general"}) {
    for (auto& e : d.redis.xrange(s)) {
      n += std::count(ids.begin(), ids.end(), e["interaction_id"]) > 0;
    }
  }
  return n;
}

}  // namespace

TEST_CASE(
    "erase: a customer's waiting, claimed and dead-lettered items leave the database and "
    "Redis, and the address makes a new customer") {
  AgentDaemon d([](config::Config& c) {
    c.routing.claim_timeout = std::chrono::milliseconds(1500);
    c.routing.max_deliveries = 1;
  });
  // Dead-lettered: alice's claim times out with max_deliveries 1; bob's claim moves it.
  std::string dead = d.ingest("e-dead", "dead letter");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == dead);
  CHECK(d.claim("bob-token", "general", 3000).status == 204);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:dead:general") == 1; }));
  // Claimed by alice, and one waiting; another customer's item waits too.
  std::string held = d.ingest("e-held", "claimed", "ann@example.com", "order-7");
  std::string other = d.ingest("e-other", "not ann's", "bob@example.com");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == held);
  std::string waiting = d.ingest("e-wait", "waiting", "ann@example.com", "order-7");
  d.drained();
  const std::string ann = customer_of(d, held);
  REQUIRE(customer_of(d, dead) == ann);
  REQUIRE(customer_of(d, waiting) == ann);
  const std::vector<std::string> ids{dead, held, waiting};
  REQUIRE(entries_of(d, ids) == 3);

  // Agents read customers but may not erase them; an unknown id is 404.
  CHECK(erase(d, "alice-token", ann).status == 403);
  CHECK(erase(d, "", ann).status == 401);
  CHECK(erase(d, "test-token", "01M8KRPCRC94RQQYRS3BRBCSF2").status == 404);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 4);

  auto r = erase(d, "test-token", ann);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  auto body = parse(r.body);
  CHECK(body.at("id").as_string() == ann);
  CHECK(body.at("erased").at("customers").as_int64() == 1);
  CHECK(body.at("erased").at("interactions").as_int64() == 3);
  CHECK(body.at("erased").at("identities").as_int64() == 1);
  CHECK(body.at("erased").at("conversations").as_int64() == 2);
  CHECK(body.at("erased").at("events").as_int64() >= 3);  // two claims, the dead letter
  CHECK(body.at("redis").as_string() == "done");

  CHECK(d.get("alice-token", "/v1/customers/" + ann).status == 404);
  CHECK(d.get("alice-token", "/v1/customers/" + ann + "/interactions").status == 404);
  CHECK(entries_of(d, ids) == 0);
  CHECK(d.redis.cmd({"HGET", "sb:held", held}) == "(nil)");
  CHECK(d.redis.cmd({"XPENDING", "sb:q:general:normal", "agents"}).find("alice") ==
        std::string::npos);
  // alice's claim is gone with it.
  CHECK(d.act("alice-token", held, "ack").status == 404);
  CHECK(d.act("alice-token", held, "release").status == 404);
  // Nothing of ann's is left; bob's item still waits.
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE customer_id = '" + ann + "'") == 0);
  CHECK(d.rows("SELECT count(*) FROM identities WHERE value = 'ann@example.com'") == 0);
  CHECK(d.rows("SELECT count(*) FROM events WHERE interaction_id IN ('" + dead + "', '" + held +
               "', '" + waiting + "')") == 0);
  CHECK(d.rows("SELECT count(*) FROM conversations WHERE customer_id = '" + ann + "'") == 0);
  CHECK(d.rows("SELECT count(*) FROM conversation_keys k WHERE NOT EXISTS "
               "(SELECT 1 FROM conversations c WHERE c.id = k.conversation_id)") == 0);
  CHECK(entries_of(d, {other}) == 1);
  REQUIRE(eventually([&] { return d.rows("SELECT count(*) FROM erased_interactions") == 0; }));

  // The same address again: a new customer, in a new conversation under the same thread key.
  std::string again = d.ingest("e-again", "back again", "ann@example.com", "order-7");
  CHECK(customer_of(d, again) != ann);
  CHECK(d.rows("SELECT json_extract(payload, '$.customer.is_new') FROM interactions WHERE id = '" +
               again + "'") == 1);
  CHECK(d.rows("SELECT count(*) FROM conversations c JOIN interactions i "
               "ON i.conversation_id = c.id WHERE i.id = '" +
               again + "'") == 1);
  // Erased already.
  CHECK(erase(d, "test-token", ann).status == 404);
}

TEST_CASE("erase: while Redis is down the erasure commits, and Redis is cleaned when it is back") {
  AgentDaemon d;
  std::string held = d.ingest("d-held", "claimed");
  std::string waiting = d.ingest("d-wait", "waiting");
  std::string other = d.ingest("d-other", "not ann's", "bob@example.com");
  d.drained();
  CHECK(claimed_id(d.claim("alice-token", "general")) == held);
  const std::string ann = customer_of(d, held);

  d.redis.stop();
  auto r = erase(d, "test-token", ann);
  REQUIRE_MESSAGE(r.status == 200, r.body);
  CHECK(parse(r.body).at("redis").as_string() == "pending");
  CHECK(d.get("alice-token", "/v1/customers/" + ann).status == 404);
  CHECK(d.rows("SELECT count(*) FROM erased_interactions") == 2);

  d.redis.start();
  REQUIRE(eventually([&] { return d.rows("SELECT count(*) FROM erased_interactions") == 0; }));
  CHECK(entries_of(d, {held, waiting}) == 0);
  CHECK(entries_of(d, {other}) == 1);
  CHECK(d.redis.cmd({"HGET", "sb:held", held}) == "(nil)");
  CHECK(d.act("alice-token", held, "ack").status == 404);
  CHECK(claimed_id(d.claim("bob-token", "general")) == other);
}

TEST_CASE("erase: `customers erase` beside the running daemon, and its relay cleans Redis") {
  AgentDaemon d;
  std::string waiting = d.ingest("c-wait", "waiting");
  d.drained();
  const std::string ann = customer_of(d, waiting);
  auto cfg = test_config(d.dir, d.redis.port());
  CHECK(erase_customer(cfg, ann) == 0);
  CHECK(d.get("alice-token", "/v1/customers/" + ann).status == 404);
  REQUIRE(eventually([&] { return entries_of(d, {waiting}) == 0; }));
  CHECK(d.claim("alice-token", "general").status == 204);
  CHECK(erase_customer(cfg, ann) == 1);
  std::string again = d.ingest("c-again", "back again");
  CHECK(customer_of(d, again) != ann);
}
