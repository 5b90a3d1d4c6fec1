// Replies to Telegram and Meta, which take no idempotency key, through the agent API and the
// durable send queue. A request that went out and got no answer (the fakes deliver the message,
// then close the connection without answering) is not sent again: the send fails saying its
// outcome is unknown, the provider got one request, and /metrics counts it. A connection refused
// before anything went out is retried as before, and the reply goes once.
#include <doctest/doctest.h>

#include <memory>

#include "channels/social/hmac.hpp"
#include "tests/integration/agent_api.hpp"
#include "tests/social/e2e.hpp"
#include "tests/social/fakes/fake_meta.hpp"
#include "tests/social/fakes/fake_telegram.hpp"
#include "tests/support/free_port.hpp"

using namespace sb;
using namespace sb::test;
using namespace std::chrono_literals;

namespace {

std::string loopback(std::uint16_t port) {
  return "http://127.0.0.1:" + std::to_string(port);
}

struct MetaWebhooks : SocialDaemon {
  explicit MetaWebhooks(const std::string& graph_url) {
    cfg.channels.meta.push_back(
        config::Meta{"meta", "app-secret", "verify-me", "meta-token", graph_url});
    start();
  }
  void post(const std::string& body) {
    auto r = http->request(
        "POST", "/webhooks/meta/meta", body,
        {{"Content-Type", "application/json"},
         {"X-Hub-Signature-256", "sha256=" + social::hmac_sha256_hex("app-secret", body)}});
    REQUIRE(r.status == 200);
  }
};

std::string messenger(const std::string& mid, const std::string& text) {
  return R"({"object":"page","entry":[{"id":"PAGE_ID","time":1767322800000,"messaging":[{"sender":{"id":"PSID_1"},"recipient":{"id":"PAGE_ID"},"timestamp":1767322800000,"message":{"mid":")" +
         mid + R"(","text":")" + text + R"("}}]}]})";
}

std::string whatsapp(const std::string& wa_id, const std::string& wamid, const std::string& text) {
  return R"({"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":")" +
         wa_id + R"("}],"messages":[{"from":")" + wa_id + R"(","id":")" + wamid +
         R"(","timestamp":"1767322800","text":{"body":")" + text + R"("},"type":"text"}]}}]}]})";
}

// The send failed after one attempt as "outcome unknown", naming where to look, and stays so.
void check_unknown(SocialDaemon& d, AgentClient& alice, const std::string& customer,
                   const std::string& out_id, const std::string& platform) {
  auto failed = alice.outbound_when(customer, out_id, "failed", 1, 5s);
  std::string why = s(failed.at("send").at("error"));
  CHECK(why.rfind("outcome unknown: the request went out and no answer came", 0) == 0);
  CHECK(why.find("not retried") != std::string::npos);
  CHECK(why.find("check the conversation on " + platform) != std::string::npos);
  // Longer than the first back-off (1 s): nothing is tried again.
  std::this_thread::sleep_for(1500ms);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE state='failed' AND attempts=1 AND "
               "maybe_sent=1") == 1);
}

}  // namespace

TEST_CASE(
    "telegram: a reply whose request went out and got no answer fails as outcome unknown, "
    "delivered once, not retried") {
  FakeTelegram tg;
  tg.start();
  tg.add_private_message(501, "Ann", "are you there?");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:tg-token"});
  d.start();

  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string customer = s(in.at("customer").at("id"));
  tg.lose_next_send_answers(1);
  std::string out_id = alice.reply(s(in.at("id")), "Yes, here.");
  check_unknown(d, alice, customer, out_id, "Telegram");
  auto sent = tg.sent();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].text == "Yes, here.");
  CHECK(d.metrics().find(R"(switchboard_sends_unknown_total{channel="telegram",account="tg"} 1)") !=
        std::string::npos);
}

TEST_CASE("telegram: a reply whose connection is refused is retried and sent once") {
  // The fake goes away after the message is claimed and comes back on the same port.
  std::uint16_t port = free_port();
  auto tg = std::make_unique<FakeTelegram>();
  tg->start(port);
  tg->add_private_message(501, "Ann", "are you there?");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", loopback(port), "123:tg-token"});
  d.start();

  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string customer = s(in.at("customer").at("id"));
  tg.reset();  // closes its connections too: the next request has to connect
  std::string out_id = alice.reply(s(in.at("id")), "Yes, here.");
  auto pending = alice.outbound_when(customer, out_id, "pending", 1, 5s);
  CHECK(s(pending.at("send").at("error")).find("refused") != std::string::npos);

  FakeTelegram back;
  back.start(port);
  auto reply = alice.outbound_when(customer, out_id, "sent", 2);
  CHECK(reply.at("send").at("error").is_null());
  auto sent = back.sent();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].text == "Yes, here.");
  CHECK(d.rows("SELECT count(*) FROM sends WHERE maybe_sent=1") == 0);
  CHECK(d.metrics().find("\nswitchboard_sends_unknown_total{") == std::string::npos);
}

TEST_CASE(
    "meta: a WhatsApp reply whose request went out and got no answer fails as outcome unknown, "
    "delivered once, not retried") {
  FakeMetaGraph graph;
  graph.start();
  MetaWebhooks d(graph.base_url());
  d.post(whatsapp("16505551234", "wamid.ABC2", "hi"));

  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string customer = s(in.at("customer").at("id"));
  graph.lose_next_answers(1);
  std::string out_id = alice.reply(s(in.at("id")), "Hello!");
  check_unknown(d, alice, customer, out_id, "WhatsApp");
  auto sent = graph.sent();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].path == "/106540352242922/messages");
  CHECK(
      d.metrics().find(R"(switchboard_sends_unknown_total{channel="whatsapp",account="meta"} 1)") !=
      std::string::npos);
}

TEST_CASE("meta: a Messenger reply whose connection is refused is retried and sent once") {
  // Nothing listens on the Graph API's port until the first attempt has failed.
  std::uint16_t port = free_port();
  FakeMetaGraph graph;
  MetaWebhooks d(loopback(port));
  d.post(messenger("m_9", "help"));

  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string customer = s(in.at("customer").at("id"));
  std::string out_id = alice.reply(s(in.at("id")), "On it.");
  auto pending = alice.outbound_when(customer, out_id, "pending", 1, 5s);
  CHECK(s(pending.at("send").at("error")).find("refused") != std::string::npos);

  graph.start(port);
  auto reply = alice.outbound_when(customer, out_id, "sent", 2);
  CHECK(s(reply.at("send").at("provider_id")).rfind("m_out", 0) == 0);
  auto sent = graph.sent();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].path == "/me/messages");
  CHECK(d.rows("SELECT count(*) FROM sends WHERE maybe_sent=1") == 0);
  CHECK(d.metrics().find("\nswitchboard_sends_unknown_total{") == std::string::npos);
}
