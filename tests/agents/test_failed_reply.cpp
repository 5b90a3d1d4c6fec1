// A reply given up on after its parent was acked puts the parent back to work (a new entry in
// its queue, through the outbox, once), with a send_failed event; a repeated ack or release by
// the agent who did it answers 200 as the first did.
#include <doctest/doctest.h>

#include <mutex>
#include <vector>

#include "core/sender.hpp"
#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"
#include "tests/agents/reply_cutter.hpp"

using namespace sb;
using namespace sb::test;

namespace {
// Holds every send until the test ends it: a provider that refuses after minutes of retries,
// long after the agent acked.
struct HeldSender : Sender {
  std::mutex mu;
  std::vector<Done> held;
  void send(OutboundMessage, Done done) override {
    std::lock_guard lock(mu);
    held.push_back(std::move(done));
  }
  std::size_t waiting() {
    std::lock_guard lock(mu);
    return held.size();
  }
  void answer(const SendResult& r) {
    std::vector<Done> all;
    {
      std::lock_guard lock(mu);
      all.swap(held);
    }
    for (auto& done : all) {
      done(r);
    }
  }
};

// The entries of the general queue's streams that carry `id`.
int entries_of(AgentDaemon& d, const std::string& id) {
  int n = 0;
  for (const char* p : {"urgent", "high", "normal", "low"}) {
    for (const auto& e : d.redis.xrange(std::string("sb:q:general:") + p)) {
      n += e.count("interaction_id") && e.at("interaction_id") == id ? 1 : 0;
    }
  }
  return n;
}

std::string parent_customer(AgentDaemon& d, const std::string& id) {
  storage::Db db(d.dir.file("switchboard.db"), true);
  auto st = db.prepare("SELECT customer_id FROM interactions WHERE id=?1");
  st.bind(1, id);
  REQUIRE(st.step());
  return st.text(0);
}

struct Replied {
  std::string id, out;
};

// alice claims a new item and replies to it; the send is with `sender`, unanswered.
Replied claim_and_reply(AgentDaemon& d, HeldSender& sender, const std::string& external_id) {
  Replied r;
  r.id = d.ingest(external_id, "please answer");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == r.id);
  auto reply = d.act("alice-token", r.id, "reply", R"({"text":"answer"})");
  REQUIRE(reply.status == 202);
  r.out = std::string(parse(reply.body).at("id").as_string());
  // The 202 names the parent's interaction id twice: in_reply_to (as ever) and parent_id (added:
  // the stored reply's in_reply_to is the parent's external id, SPEC section 5).
  CHECK(parse(reply.body).at("in_reply_to").as_string() == r.id);
  CHECK(parse(reply.body).at("parent_id").as_string() == r.id);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE id='" + r.out +
               "' AND json_extract(payload, '$.in_reply_to')='" + external_id + "'") == 1);
  REQUIRE(eventually([&] { return sender.waiting() == 1; }));
  return r;
}

long long send_failed_events(AgentDaemon& d, const Replied& r, const std::string& error,
                             bool back_to_work) {
  return d.rows("SELECT count(*) FROM events WHERE interaction_id='" + r.id +
                "' AND type='send_failed' AND actor='switchboard' AND json_extract(detail, "
                "'$.outbound_id')='" +
                r.out + "' AND json_extract(detail, '$.error')='" + error +
                "' AND json_extract(detail, '$.back_to_work')=" + (back_to_work ? "1" : "0"));
}

// The item claimed by `token` once it is back in its queue (REQUIREd within eventually's wait).
HttpResponse claim_when_back(AgentDaemon& d, const std::string& token) {
  HttpResponse again;
  REQUIRE(eventually([&] {
    again = d.claim(token, "general");
    return again.status == 200;
  }));
  return again;
}

// claim_and_reply, then the send refused with `error` while alice still holds the item.
Replied refused_while_held(AgentDaemon& d, HeldSender& sender, const std::string& external_id,
                           const std::string& error) {
  auto r = claim_and_reply(d, sender, external_id);
  sender.answer(SendResult::failed(error));
  REQUIRE(eventually([&] { return send_failed_events(d, r, error, false) == 1; }));
  return r;
}
}  // namespace

// Before: reply, ack and then the send's failure left the item `done`, in no queue; reply,
// release and transfer answered 409 "agent alice finished it", and nobody was told.
TEST_CASE("a reply given up on after the ack puts its parent back in its queue once") {
  auto sender = std::make_shared<HeldSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", sender); });
  SUBCASE("refused for good: 400 chat not found") {
    auto r = claim_and_reply(d, *sender, "sf-1");
    REQUIRE(d.act("alice-token", r.id, "ack").status == 200);
    REQUIRE(eventually([&] {
      return d.rows("SELECT count(*) FROM interactions WHERE id='" + r.id + "' AND state='done'") ==
             1;
    }));
    // The first round's once-only marker still in Redis (its unlink waits for a checkpoint, or
    // a crash lost it): the new round is a projection of its own all the same.
    d.redis.cmd({"SET", "sb:relayed:" + r.id, "1", "EX", "600"});
    const std::string error = "400 Bad Request: chat not found";
    sender->answer(SendResult::failed(error));
    REQUIRE(
        eventually([&] { return d.rows("SELECT count(*) FROM sends WHERE state='failed'") == 1; }));
    d.drained();
    CHECK(send_failed_events(d, r, error, true) == 1);
    CHECK(entries_of(d, r.id) == 1);
    // Claimable again, by anyone of its queue, telling why it is back.
    HttpResponse again = claim_when_back(d, "bob-token");
    CHECK(claimed_id(again) == r.id);
    auto item = parse(again.body).at("interaction").as_object();
    CHECK(item.at("send_failed").at("outbound_id").as_string() == r.out);
    CHECK(item.at("send_failed").at("error").as_string() == error);
    // In the timeline, on the parent.
    auto customer = std::string(item.at("customer").at("id").as_string());
    auto tl = d.get("alice-token", "/v1/customers/" + customer + "/interactions");
    REQUIRE(tl.status == 200);
    CHECK(tl.body.find("\"type\":\"send_failed\"") != std::string::npos);
    // A restart replays nothing: still the one entry, now bob's.
    d.restart();
    d.drained();
    CHECK(entries_of(d, r.id) == 1);
    CHECK(d.rows("SELECT count(*) FROM outbox") == 0);
    CHECK(d.rows("SELECT queue_round FROM interactions WHERE id='" + r.id + "'") == 1);
  }
  SUBCASE("an unknown outcome not retried") {
    auto r = claim_and_reply(d, *sender, "sf-2");
    REQUIRE(d.act("alice-token", r.id, "ack").status == 200);
    const std::string error = "outcome unknown: 502 Bad Gateway; not retried";
    sender->answer(SendResult::failed_unknown(error));
    HttpResponse again = claim_when_back(d, "alice-token");
    CHECK(claimed_id(again) == r.id);
    CHECK(send_failed_events(d, r, error, true) == 1);
    CHECK(entries_of(d, r.id) == 1);
  }
}

TEST_CASE("a reply given up on while its parent is held leaves it with its agent") {
  auto sender = std::make_shared<HeldSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", sender); });
  auto r = claim_and_reply(d, *sender, "sf-3");
  const std::string error = "400 recipient blocked the account";
  sender->answer(SendResult::failed(error));
  REQUIRE(eventually([&] { return send_failed_events(d, r, error, false) == 1; }));
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE id='" + r.id + "' AND state='claimed'") ==
        1);
  CHECK(d.rows("SELECT count(*) FROM outbox") == 0);
  // Still alice's: she sees the failure on the reply (and may answer again) before she acks.
  CHECK(d.claim("bob-token", "general").status == 204);
  auto out = d.get("alice-token", "/v1/customers/" + parent_customer(d, r.id) + "/interactions");
  CHECK(out.body.find("\"error\":\"" + error + "\"") != std::string::npos);
  CHECK(d.act("alice-token", r.id, "ack").status == 200);
}

// Before: a refusal that came while the item was held (a Telegram 400 a second after the 202)
// was told with back_to_work false, and the ack then left the item `done`, in no queue: the
// customer unanswered and nobody told.
TEST_CASE("a reply refused while its parent is held puts it back to work at the ack") {
  auto sender = std::make_shared<HeldSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", sender); });
  const std::string error = "400 Bad Request: chat not found";
  auto r = refused_while_held(d, *sender, "sf-held-ack", error);
  REQUIRE(d.act("alice-token", r.id, "ack").status == 200);
  HttpResponse again = claim_when_back(d, "bob-token");
  CHECK(claimed_id(again) == r.id);
  auto item = parse(again.body).at("interaction").as_object();
  CHECK(item.at("send_failed").at("outbound_id").as_string() == r.out);
  CHECK(item.at("send_failed").at("error").as_string() == error);
  d.drained();
  CHECK(send_failed_events(d, r, error, true) == 1);
  CHECK(entries_of(d, r.id) == 1);
  // bob acks it: the failure was handled (requeued, claimed anew), nothing goes back again.
  REQUIRE(d.act("bob-token", r.id, "ack").status == 200);
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM interactions WHERE id='" + r.id + "' AND state='done'") ==
           1;
  }));
  d.restart();
  d.drained();
  CHECK(entries_of(d, r.id) == 0);
  CHECK(d.rows("SELECT count(*) FROM outbox") == 0);
  CHECK(d.rows("SELECT queue_round FROM interactions WHERE id='" + r.id + "'") == 1);
  CHECK(send_failed_events(d, r, error, true) == 1);
}

TEST_CASE("a reply refused while held puts it back to work once at the ack retried after a 503") {
  std::unique_ptr<ReplyCutter> cutter;
  auto sender = std::make_shared<HeldSender>();
  AgentDaemon d(through(cutter, std::chrono::minutes(5), 5),
                [&](App& app) { app.senders().add("api", "web-form", sender); });
  const std::string error = "400 Bad Request: user is deactivated";
  auto r = refused_while_held(d, *sender, "sf-held-503", error);
  // Redis runs the ack, its answer is lost: 503, nothing recorded yet.
  cutter->cut_reply_to("$3\r\nack\r\n");  // the mode argument of the finish script
  auto lost = d.act("alice-token", r.id, "ack");
  REQUIRE(cutter->cut());
  CHECK(lost.status == 503);
  // Her retry records the finish, and with it the item goes back to work.
  REQUIRE(d.act("alice-token", r.id, "ack").status == 200);
  HttpResponse again = claim_when_back(d, "bob-token");
  CHECK(claimed_id(again) == r.id);
  d.drained();
  CHECK(send_failed_events(d, r, error, true) == 1);
  CHECK(entries_of(d, r.id) == 1);
  d.restart();
  d.drained();
  CHECK(entries_of(d, r.id) == 1);
  CHECK(d.rows("SELECT count(*) FROM outbox") == 0);
}

// Before: a retried ack answered 409 "agent alice finished it" while a retried transfer answered
// 200; a client whose 200 was lost on its way could not tell its ack had worked.
TEST_CASE("a repeated ack by the agent who finished it answers 200 as the first, another's 409") {
  AgentDaemon d;
  std::string id = d.ingest("rep-1", "ack twice");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == id);
  auto first = d.act("alice-token", id, "ack");
  REQUIRE(first.status == 200);
  auto again = d.act("alice-token", id, "ack");
  CHECK(again.status == 200);
  CHECK(again.body == first.body);
  auto bob = d.act("bob-token", id, "ack");
  CHECK(bob.status == 409);
  CHECK(error_message(bob) ==
        "interaction " + id + " is not held by agent bob: agent alice finished it");
  // From the database after a restart too; recorded once.
  d.restart();
  auto later = d.act("alice-token", id, "ack");
  CHECK(later.status == 200);
  CHECK(later.body == first.body);
  CHECK(d.act("bob-token", id, "ack").status == 409);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='finish'") == 1);
}

TEST_CASE("a repeated release by its agent answers 200 while the item waits, another's 409") {
  AgentDaemon d;
  std::string id = d.ingest("rep-2", "release twice");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == id);
  auto first = d.act("alice-token", id, "release");
  REQUIRE(first.status == 200);
  auto again = d.act("alice-token", id, "release");
  CHECK(again.status == 200);
  CHECK(again.body == first.body);
  auto bob = d.act("bob-token", id, "release");
  CHECK(bob.status == 409);
  CHECK(error_message(bob).find("released and waits") != std::string::npos);
  REQUIRE(
      eventually([&] { return d.rows("SELECT count(*) FROM events WHERE type='release'") == 1; }));
  // Once someone claimed it, the release is over: 409 naming the holder.
  REQUIRE(claimed_id(d.claim("bob-token", "general")) == id);
  auto late = d.act("alice-token", id, "release");
  CHECK(late.status == 409);
  CHECK(error_message(late) ==
        "interaction " + id + " is not held by agent alice: agent bob holds it");
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='release'") == 1);
}
