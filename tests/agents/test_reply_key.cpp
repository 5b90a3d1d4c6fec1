// A reply retried after its 202 was lost (a client timeout, a proxy reset): with the same
// Idempotency-Key it gets the first answer, and the customer gets the answer once.
#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <optional>
#include <thread>

#include "agents/reply_keys.hpp"
#include "core/sender.hpp"
#include "core/time.hpp"
#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

namespace {
struct KeyCountingSender : Sender {
  std::atomic<int> sent{0};
  void send(OutboundMessage m, Done done) override {
    ++sent;
    done(SendResult::sent("p-" + m.id));
  }
};

HttpResponse keyed_reply(AgentDaemon& d, const std::string& token, const std::string& id,
                         const std::string& text, const std::optional<std::string>& key,
                         HttpClient* client = nullptr) {
  std::map<std::string, std::string> h{{"Authorization", "Bearer " + token},
                                       {"Content-Type", "application/json"}};
  if (key) {
    h["Idempotency-Key"] = *key;
  }
  boost::json::object body{{"text", text}};
  return (client ? client : d.http.get())
      ->request("POST", "/v1/agent/interactions/" + id + "/reply", boost::json::serialize(body), h);
}

std::string answered_id(const HttpResponse& r) {
  REQUIRE_MESSAGE(r.status == 202, r.status << " " << r.body);
  return std::string(parse(r.body).at("id").as_string());
}

struct Replying {
  std::shared_ptr<KeyCountingSender> sender = std::make_shared<KeyCountingSender>();
  AgentDaemon d{nullptr, [this](App& app) { app.senders().add("api", "web-form", sender); }};
  long long outbound() {
    return d.rows("SELECT count(*) FROM interactions WHERE direction='outbound'");
  }
  long long sends() { return d.rows("SELECT count(*) FROM sends"); }
  // Moves the reply `outbound_id` back in time by `ms`, as if it had been made that long ago.
  void age(const std::string& outbound_id, std::int64_t ms) {
    storage::Db db(d.dir.file("switchboard.db"));
    auto st = db.prepare("UPDATE sends SET created_at = created_at - ?2 WHERE interaction_id=?1");
    st.bind(1, outbound_id).bind(2, ms).run();
  }
  // One interaction ingested, relayed and claimed by alice: its id.
  std::string claimed(const std::string& key, const std::string& text) {
    d.ingest(key, text);
    d.drained();
    return claimed_id(d.claim("alice-token", "general"));
  }
};
}  // namespace

TEST_CASE("reply key: a retry with the same key gets the first answer and nothing is sent twice") {
  Replying t;
  auto& d = t.d;
  std::string id = t.claimed("k-1", "please answer");

  auto first = keyed_reply(d, "alice-token", id, "It ships today.", "retry-7f3a");
  std::string out = answered_id(first);
  CHECK(first.headers.count("idempotent-replayed") == 0);
  auto again = keyed_reply(d, "alice-token", id, "It ships today.", "retry-7f3a");
  CHECK(answered_id(again) == out);
  CHECK(parse(again.body).at("in_reply_to").as_string() == id);
  CHECK(again.headers["idempotent-replayed"] == "true");
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE state='sent' AND provider_id='p-" + out +
                  "'") == 1;
  }));
  CHECK(t.outbound() == 1);
  CHECK(t.sends() == 1);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='reply'") == 1);
  CHECK(t.sender->sent == 1);

  // Later, even after the ack (the client's retries outlived the item), the same answer, with
  // the send's state as it is now.
  REQUIRE(d.act("alice-token", id, "ack").status == 200);
  auto late = keyed_reply(d, "alice-token", id, "It ships today.", "retry-7f3a");
  CHECK(answered_id(late) == out);
  CHECK(parse(late.body).at("send").at("state").as_string() == "sent");
  CHECK(t.outbound() == 1);
  CHECK(t.sender->sent == 1);
}

TEST_CASE("reply key: different keys, or none, are different answers") {
  Replying t;
  auto& d = t.d;
  std::string id = t.claimed("k-2", "two answers");
  auto a = answered_id(keyed_reply(d, "alice-token", id, "Part one.", "key-a"));
  auto b = answered_id(keyed_reply(d, "alice-token", id, "Part two.", "key-b"));
  CHECK(a != b);
  // Without the header, as before: every request is a new reply.
  auto c = answered_id(keyed_reply(d, "alice-token", id, "Part three.", std::nullopt));
  auto e = answered_id(keyed_reply(d, "alice-token", id, "Part three.", std::nullopt));
  CHECK(c != e);
  REQUIRE(eventually([&] { return t.sender->sent == 4; }));
  CHECK(t.outbound() == 4);
  CHECK(t.sends() == 4);
}

TEST_CASE("reply key: the same key with another text is refused, nothing is stored or sent") {
  Replying t;
  auto& d = t.d;
  std::string id = t.claimed("k-3", "one answer");
  auto out = answered_id(keyed_reply(d, "alice-token", id, "It ships today.", "k-same"));
  auto other = keyed_reply(d, "alice-token", id, "It ships tomorrow.", "k-same");
  CHECK(other.status == 422);
  CHECK(parse(other.body).at("error").at("code").as_string() == "idempotency_key_reused");
  CHECK(error_message(other).find("different text") != std::string::npos);
  CHECK(error_message(other).find(out) != std::string::npos);
  REQUIRE(eventually([&] { return t.sender->sent == 1; }));
  CHECK(t.outbound() == 1);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE payload LIKE '%tomorrow%'") == 0);
}

TEST_CASE("reply key: a key is the agent's own and the item's own") {
  Replying t;
  auto& d = t.d;
  std::string first = d.ingest("k-4", "first item");
  std::string second = d.ingest("k-5", "second item", "bob@example.com");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == first);
  auto alices = answered_id(keyed_reply(d, "alice-token", first, "Hello.", "k-shared"));
  REQUIRE(d.act("alice-token", first, "release").status == 200);
  // Another agent with the same key for the same item: a reply of its own.
  REQUIRE(claimed_id(d.claim("bob-token", "general")) == first);
  auto bobs = answered_id(keyed_reply(d, "bob-token", first, "Hello.", "k-shared"));
  CHECK(bobs != alices);
  // The same agent and key for another item: another reply.
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == second);
  auto other_item = answered_id(keyed_reply(d, "alice-token", second, "Hello.", "k-shared"));
  CHECK(other_item != alices);
  CHECK(other_item != bobs);
  REQUIRE(eventually([&] { return t.sender->sent == 3; }));
  CHECK(t.outbound() == 3);
  // alice's retry for the first item still names hers, though bob holds it now.
  CHECK(answered_id(keyed_reply(d, "alice-token", first, "Hello.", "k-shared")) == alices);
  CHECK(t.outbound() == 3);
}

TEST_CASE("reply key: attempts racing each other store one reply") {
  Replying t;
  auto& d = t.d;
  std::string id = t.claimed("k-6", "a client that retries at once");
  constexpr int kAttempts = 8;
  std::vector<HttpResponse> answers(kAttempts);
  std::vector<std::thread> threads;
  for (int i = 0; i < kAttempts; ++i) {
    threads.emplace_back([&, i] {
      HttpClient client(d.app->port());
      answers[i] = keyed_reply(d, "alice-token", id, "Once only.", "k-race", &client);
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  std::string out = answered_id(answers[0]);
  for (const auto& a : answers) {
    CHECK_MESSAGE(a.status == 202, a.body);
    if (a.status == 202) {
      CHECK(answered_id(a) == out);
    }
  }
  REQUIRE(eventually([&] { return t.sender->sent == 1; }));
  CHECK(t.outbound() == 1);
  CHECK(t.sends() == 1);
}

TEST_CASE("reply key: a key that is empty, too long or not printable ASCII is a clear 400") {
  Replying t;
  auto& d = t.d;
  std::string id = t.claimed("k-7", "bad keys");
  for (std::string bad :
       {std::string(), std::string(201, 'k'), std::string("cl\xc3\xa9"), std::string("a\tb")}) {
    CAPTURE(bad);
    auto r = keyed_reply(d, "alice-token", id, "Hello.", bad);
    CHECK(r.status == 400);
    CHECK(error_message(r).find("Idempotency-Key") != std::string::npos);
    CHECK(error_message(r).find("printable ASCII") != std::string::npos);
  }
  CHECK(t.outbound() == 0);
  CHECK(answered_id(keyed_reply(d, "alice-token", id, "Hello.", std::string(200, 'k'))) != "");
  CHECK(answered_id(keyed_reply(d, "alice-token", id, "Hello.", "a key with spaces")) != "");
  CHECK(t.outbound() == 2);
}

TEST_CASE(
    "reply key: a key older than 24 hours is a new reply, a fresh key still gets the first "
    "answer") {
  Replying t;
  auto& d = t.d;
  std::string id = t.claimed("k-8", "answered yesterday and today");
  std::string old = answered_id(keyed_reply(d, "alice-token", id, "Still on its way.", "k-day"));
  std::string fresh = answered_id(keyed_reply(d, "alice-token", id, "Now shipped.", "k-now"));
  REQUIRE(eventually([&] { return t.sender->sent == 2; }));
  t.age(old, agents::kReplyKeyRetentionMs + 60'000);
  t.age(fresh, agents::kReplyKeyRetentionMs - 60'000);  // a minute left

  // The day-old key, not swept yet: a new request, a new reply sent.
  auto again = keyed_reply(d, "alice-token", id, "Still on its way.", "k-day");
  std::string renewed = answered_id(again);
  CHECK(renewed != old);
  CHECK(again.headers.count("idempotent-replayed") == 0);
  REQUIRE(eventually([&] { return t.sender->sent == 3; }));
  // The old reply keeps its row and its state, without the key; the key is the new reply's.
  CHECK(d.rows("SELECT count(*) FROM sends WHERE interaction_id='" + old +
               "' AND state='sent' AND idempotency_key IS NULL") == 1);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE interaction_id='" + renewed +
               "' AND idempotency_key='k-day'") == 1);
  // ...and a retry of the new one within its window is answered as usual.
  CHECK(answered_id(keyed_reply(d, "alice-token", id, "Still on its way.", "k-day")) == renewed);

  // The key with a minute left still answers the first result, nothing is sent again.
  auto repeat = keyed_reply(d, "alice-token", id, "Now shipped.", "k-now");
  CHECK(answered_id(repeat) == fresh);
  CHECK(repeat.headers["idempotent-replayed"] == "true");
  CHECK(t.outbound() == 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(t.sender->sent == 3);
}

TEST_CASE(
    "reply key: the sweep clears keys older than 24 hours in batches and keeps the send rows") {
  Replying t;
  auto& d = t.d;
  std::string id = t.claimed("k-9", "many old replies");
  std::string fresh = answered_id(keyed_reply(d, "alice-token", id, "Today's.", "k-today"));
  std::string old = answered_id(keyed_reply(d, "alice-token", id, "Yesterday's.", "k-old"));
  REQUIRE(eventually([&] { return t.sender->sent == 2; }));
  t.age(old, agents::kReplyKeyRetentionMs + 1);
  {
    // More old keyed replies than one batch holds (500), as a busy day leaves behind.
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec("BEGIN");
    auto ins = db.prepare(
        "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
        "next_attempt_at, created_at, updated_at, agent, idempotency_key) VALUES "
        "(?1, ?2, 'api', 'web-form', 'sent', 1, ?3, ?3, ?3, 'alice', ?1)");
    std::int64_t day_ago = now_ms() - agents::kReplyKeyRetentionMs - 3'600'000;
    for (int i = 0; i < 1234; ++i) {
      ins.bind(1, "old-" + std::to_string(i)).bind(2, id).bind(3, day_ago + i).run();
    }
    db.exec("COMMIT");
  }
  auto swept = std::make_shared<std::promise<std::pair<std::int64_t, std::string>>>();
  agents::expire_reply_keys(d.app->writer(), now_ms(),
                            [swept](std::int64_t cleared, const std::string& error) {
                              swept->set_value({cleared, error});
                            });
  auto f = swept->get_future();
  REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  auto [cleared, error] = f.get();
  CHECK(error.empty());
  CHECK(cleared == 1235);
  CHECK(d.rows("SELECT count(*) FROM sends") == 1236);  // every row stays
  CHECK(d.rows("SELECT count(*) FROM sends WHERE idempotency_key IS NOT NULL") == 1);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE interaction_id='" + old +
               "' AND state='sent' AND idempotency_key IS NULL") == 1);
  // The fresh key still answers its reply.
  CHECK(answered_id(keyed_reply(d, "alice-token", id, "Today's.", "k-today")) == fresh);
  CHECK(t.outbound() == 2);
}

TEST_CASE("a token rotated by reload: items claimed under the old one are worked with the new") {
  Replying t;
  auto& d = t.d;
  std::string acked = t.claimed("rot-1", "answered, then done");
  std::string released = t.claimed("rot-2", "handed back");
  auto first = keyed_reply(d, "alice-token", acked, "It ships today.", "rot-key-1");
  std::string out = answered_id(first);

  // The old token leaked: a SIGHUP with a new one. The agent (and what it holds) is the same.
  auto fresh = test_config(d.dir, d.redis.port());
  rotate_token(fresh, "alice", "alice-new-token");
  REQUIRE(d.app->reload(fresh).empty());

  // The retry of the reply whose 202 was lost, under the new token: the same answer.
  auto again = keyed_reply(d, "alice-new-token", acked, "It ships today.", "rot-key-1");
  CHECK(answered_id(again) == out);
  CHECK(again.headers["idempotent-replayed"] == "true");
  // The old token is refused everywhere, and changes nothing.
  CHECK(keyed_reply(d, "alice-token", acked, "It ships today.", "rot-key-2").status == 401);
  CHECK(d.act("alice-token", acked, "ack").status == 401);
  CHECK(d.act("alice-token", released, "release").status == 401);
  CHECK(d.claim("alice-token", "general").status == 401);

  CHECK(d.act("alice-new-token", acked, "ack").status == 200);
  CHECK(d.act("alice-new-token", released, "release").status == 200);
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM interactions WHERE (id='" + acked +
                  "' AND state='done') OR (id='" + released + "' AND state='queued')") == 2;
  }));
  CHECK(
      d.rows("SELECT count(*) FROM events WHERE actor='alice' AND type IN ('finish', 'release')") ==
      2);
  // Released: waiting in its queue for the next agent.
  CHECK(claimed_id(d.claim("bob-token", "general")) == released);
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE state='sent' AND provider_id='p-" + out +
                  "'") == 1;
  }));
  CHECK(t.outbound() == 1);
  CHECK(t.sender->sent == 1);
}
