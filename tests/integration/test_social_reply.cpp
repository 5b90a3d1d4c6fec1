// Issue 6 acceptance 3 through the agent API: a Mastodon mention is claimed over HTTP and
// answered with POST .../reply; the durable send queue retries the fake's 503 with the same
// Idempotency-Key, the reply is posted once, threaded, and the customer's answer to it joins
// the conversation. Telegram: the reply carries reply_to_message_id.
#include <doctest/doctest.h>

#include "tests/integration/agent_api.hpp"
#include "tests/social/e2e.hpp"
#include "tests/social/fakes/fake_mastodon.hpp"
#include "tests/social/fakes/fake_telegram.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;
using namespace std::chrono_literals;

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
  CHECK(s(in.at("external_id")) == "501:" + std::to_string(mid));
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
