// Issue 6 acceptance 3 through the agent API: a Mastodon mention is claimed over HTTP and
// answered with POST .../reply; the durable send queue retries the fake's 503 with the same
// Idempotency-Key, the reply is posted once, threaded, and the customer's answer to it joins
// the conversation. Telegram: the reply carries reply_to_message_id. X: a retry refused as
// duplicate content after an attempt whose answer was lost is the earlier attempt's success.
#include <doctest/doctest.h>

#include "core/time.hpp"
#include "tests/integration/agent_api.hpp"
#include "tests/social/e2e.hpp"
#include "tests/social/fakes/fake_mastodon.hpp"
#include "tests/social/fakes/fake_telegram.hpp"
#include "tests/social/fakes/fake_x.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {
// The daemon with one X account "x" on `fake` (user 42), replies signed with user context.
void start_with_x(SocialDaemon& d, FakeX& fake) {
  d.cfg.channels.x.push_back(fake.replying_account());
  d.start();
}
}  // namespace

TEST_CASE(
    "mastodon: a reply over HTTP is posted once after a 503 with the outbound id as "
    "Idempotency-Key, threaded, and the answer joins the conversation") {
  FakeMastodon fake;
  fake.start();
  std::string status = fake.add_mention("ann@remote.example", "where is my order?", "unlisted");
  SocialDaemon d;
  d.cfg.channels.mastodon.push_back(
      config::Mastodon{"social", fake.base_url(), "test-token", 200ms});
  d.start();

  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string id = s(in.at("id"));
  CHECK(s(in.at("external_id")) == status);
  std::string conv = s(in.at("conversation_id"));
  std::string customer = s(in.at("customer").at("id"));
  REQUIRE(!conv.empty());

  fake.fail_next_posts(1);
  std::string out_id = alice.reply(id, "It ships today.");
  // Between the attempts the provider's error is visible on the outbound interaction.
  auto pending = alice.outbound_when(customer, out_id, "pending", 1, 5s);
  CHECK(s(pending.at("send").at("error")) == "Service unavailable");
  CHECK(fake.posted().empty());
  auto reply = alice.outbound_when(customer, out_id, "sent");
  CHECK(reply.at("send").at("attempts").as_int64() == 2);
  CHECK(reply.at("send").at("error").is_null());
  auto posted = fake.posted();
  REQUIRE(posted.size() == 1);
  CHECK(posted[0].status == "@ann@remote.example It ships today.");
  CHECK(posted[0].in_reply_to_id == status);
  CHECK(posted[0].visibility == "unlisted");
  CHECK(posted[0].idempotency_key == out_id);
  CHECK(fake.post_attempt_keys() == std::vector<std::string>{out_id, out_id});  // 503, then posted
  CHECK(s(reply.at("send").at("provider_id")) == posted[0].id);
  CHECK(alice.act(id, "ack").status == 200);

  // The customer answers our status: the poller looks up the key the send recorded.
  std::string answer_status =
      fake.add_mention("ann@remote.example", "thanks!", "unlisted", posted[0].id);
  auto answer = alice.claim("general");
  CHECK(s(answer.at("external_id")) == answer_status);
  CHECK(s(answer.at("conversation_id")) == conv);
  std::this_thread::sleep_for(300ms);
  CHECK(fake.posted().size() == 1);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE state='sent'") == 1);
}

TEST_CASE(
    "telegram: a reply over HTTP carries reply_to_message_id and the send state becomes sent") {
  FakeTelegram tg;
  tg.start();
  long long mid = tg.add_private_message(501, "Ann", "are you there?");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:tg-token"});
  d.start();

  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string id = s(in.at("id"));
  CHECK(s(in.at("external_id")) == "123:501:" + std::to_string(mid));  // bot:chat:message
  std::string customer = s(in.at("customer").at("id"));
  std::string out_id = alice.reply(id, "Yes, here.");
  auto reply = alice.outbound_when(customer, out_id, "sent");
  CHECK(s(reply.at("conversation_id")) == s(in.at("conversation_id")));
  auto sent = tg.sent();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].chat_id == "501");
  CHECK(sent[0].reply_to_message_id == mid);
  CHECK(sent[0].text == "Yes, here.");
  CHECK(alice.act(id, "ack").status == 200);

  // The next message of the chat joins the conversation.
  tg.add_private_message(501, "Ann", "thanks");
  auto answer = alice.claim("general");
  CHECK(s(answer.at("conversation_id")) == s(in.at("conversation_id")));
}

TEST_CASE(
    "x: a reply whose answer was lost, then refused on the retry as duplicate content, is "
    "recorded sent with X's reason, posted once") {
  FakeX fake("42");
  fake.start();
  std::string mention = fake.add_mention("7", "pat", "@support where is my order?");
  SocialDaemon d;
  start_with_x(d, fake);

  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string id = s(in.at("id"));
  CHECK(s(in.at("external_id")) == mention);
  std::string customer = s(in.at("customer").at("id"));

  // X posts the first attempt, and its answer never arrives: the outcome is unknown, so the
  // send loop tries again, and X refuses the same text.
  fake.lose_next_post_answers(1);
  std::string out_id = alice.reply(id, "It ships today.");
  auto reply = alice.outbound_when(customer, out_id, "sent");
  CHECK(reply.at("send").at("attempts").as_int64() == 2);
  CHECK(reply.at("send").at("provider_id").is_null());  // the 403 does not name the tweet
  std::string why = s(reply.at("send").at("error"));
  CHECK(why.find("earlier attempt") != std::string::npos);
  CHECK(why.find("duplicate content") != std::string::npos);
  CHECK(fake.post_requests() == 2);
  auto posted = fake.posted();
  REQUIRE(posted.size() == 1);
  CHECK(posted[0].text == "It ships today.");
  CHECK(posted[0].in_reply_to_tweet_id == mention);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE maybe_sent = 1") == 1);
  // The lost attempt's start is kept: a provider whose key expires counts from it.
  CHECK(d.rows("SELECT count(*) FROM sends WHERE uncertain_since > 0") == 1);
}

TEST_CASE(
    "mastodon: a lost answer's repeat counts the Idempotency-Key's hour from the first "
    "uncertain attempt, not from when the reply was written") {
  FakeMastodon fake;
  fake.start();
  fake.add_mention("ann@remote.example", "where is my order?");
  SocialDaemon d;
  d.cfg.channels.mastodon.push_back(
      config::Mastodon{"social", fake.base_url(), "test-token", 200ms});
  d.start();
  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string customer = s(in.at("customer").at("id"));
  std::string out_id = alice.reply(s(in.at("id")), "It ships today.");
  alice.outbound_when(customer, out_id, "sent");
  d.stop();
  // A reply written just now whose first attempt with an unknown outcome started two hours ago
  // (by the wall clock: one set forward since): pending again, maybe sent. Its key may be gone.
  {
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec(
        "UPDATE sends SET state='pending', attempts=1, provider_id='', maybe_sent=1, "
        "uncertain_since=" +
        std::to_string(now_ms() - 2 * 3600 * 1000));
  }
  d.start();
  AgentClient again(d.app->port(), "alice-token");
  auto failed = again.outbound_when(customer, out_id, "failed");
  std::string why = s(failed.at("send").at("error"));
  CHECK_MESSAGE(
      why.find("older than the hour Mastodon keeps its Idempotency-Key") != std::string::npos, why);
  CHECK(fake.posted().size() == 1);
}

TEST_CASE(
    "x: a reply posted by an attempt the daemon died in the middle of is retried after the "
    "restart, and X's duplicate refusal records it sent, posted once") {
  FakeX fake("42");
  fake.start();
  fake.add_mention("7", "pat", "@support where is my order?");
  SocialDaemon d;
  start_with_x(d, fake);

  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string customer = s(in.at("customer").at("id"));
  std::string out_id = alice.reply(s(in.at("id")), "It ships today.");
  alice.outbound_when(customer, out_id, "sent");
  d.stop();
  // The row as kill -9 leaves it between X posting the reply and its result being committed:
  // pending, with the attempt's mark (its only trace).
  {
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec(
        "UPDATE sends SET state='pending', attempts=0, provider_id='', maybe_sent=0, "
        "attempt_started_at=1767322800000");
  }
  d.start();
  AgentClient again(d.app->port(), "alice-token");
  // Before: handed over as a first attempt, X's duplicate refusal failed it though it was posted.
  auto reply = again.outbound_when(customer, out_id, "sent", 2);
  std::string why = s(reply.at("send").at("error"));
  CHECK_MESSAGE(why.find("earlier attempt") != std::string::npos, why);
  CHECK(why.find("duplicate content") != std::string::npos);
  CHECK(fake.post_requests() == 2);
  CHECK(fake.posted().size() == 1);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE maybe_sent = 1 AND attempt_started_at IS NULL") ==
        1);
}

TEST_CASE(
    "x: a reply refused as duplicate content on its first attempt fails - the account did post "
    "that text before") {
  FakeX fake("42");
  fake.start();
  fake.add_mention("7", "pat", "@support hello");
  SocialDaemon d;
  start_with_x(d, fake);

  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string id = s(in.at("id"));
  std::string customer = s(in.at("customer").at("id"));
  std::string first = alice.reply(id, "Thanks, we are on it.");
  alice.outbound_when(customer, first, "sent");
  std::string again = alice.reply(id, "Thanks, we are on it.");
  auto refused = alice.outbound_when(customer, again, "failed");
  CHECK(refused.at("send").at("attempts").as_int64() == 1);
  CHECK(s(refused.at("send").at("error")).find("duplicate content") != std::string::npos);
  CHECK(fake.posted().size() == 1);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE maybe_sent = 1") == 0);
}
