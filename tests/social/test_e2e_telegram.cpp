// Telegram end to end (issue 6 acceptance 6): long polling, restart, reply_to_message_id.
#include <doctest/doctest.h>

#include "tests/integration/agent_api.hpp"
#include "tests/social/e2e.hpp"
#include "tests/social/fakes/fake_telegram.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;
using namespace std::chrono_literals;

namespace {

// A message of `user` in the group `chat` that mentions the bot (@support_bot), as JSON for
// FakeTelegram::add_message.
std::string group_mention(long long chat, long long user, const std::string& name,
                          const std::string& type = "group") {
  return R"({"from":{"id":)" + std::to_string(user) + R"(,"is_bot":false,"first_name":")" + name +
         R"("},"chat":{"id":)" + std::to_string(chat) + R"(,"title":"Customers","type":")" + type +
         R"("},"text":"@support_bot help","entities":[{"offset":0,"length":12,"type":"mention"}]})";
}

}  // namespace

TEST_CASE(
    "telegram: after a restart no update is processed twice, 429 retry_after is honoured, a reply "
    "carries reply_to_message_id") {
  FakeTelegram tg;
  tg.start();
  tg.add_private_message(501, "Ann", "hi");
  tg.add_private_message(502, "Bob", "hello");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:tg-token"});
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  // Long polling: a message sent while the request is held arrives at once.
  long long mid = tg.add_private_message(501, "Ann", "are you there?");
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; },
                     std::chrono::seconds(3)));

  d.stop();
  tg.add_private_message(503, "Cy", "while you were away");
  tg.rate_limit_next(2);
  auto restarted = std::chrono::steady_clock::now();
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 4; }));
  // The first getUpdates after the restart got 429 with retry_after 2: the poller waited that
  // long before it asked again.
  CHECK(std::chrono::steady_clock::now() - restarted >= std::chrono::milliseconds(1900));
  CHECK(tg.get_updates_requests() >= 2);
  // Every update stored is confirmed (the next getUpdates asks from the following id), so
  // Telegram forgets it: the fake's update ids are 500000001 to 500000004.
  CHECK(eventually([&] { return tg.confirmed_offset() == 500000005; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(d.rows("SELECT count(*) FROM interactions") == 4);
  CHECK(d.rows("SELECT count(DISTINCT external_id) FROM interactions") == 4);
  auto q = d.queued();
  REQUIRE(q.size() == 4);
  CHECK(str(q[2].at("external_id")) == "123:501:" + std::to_string(mid));
  CHECK(str(q[2].at("kind")) == "direct_message");
  CHECK(str(q[2].at("from").at("value")) == "501");
  CHECK(d.metrics().find(
            R"(switchboard_social_rate_limited_total{channel="telegram",account="tg"} 1)") !=
        std::string::npos);

  auto r = d.send("telegram", "tg", reply_to(q[2], "01JTOUT1", "Yes, here."));
  REQUIRE(r.status == SendResult::Status::sent);
  auto sent = tg.sent();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].chat_id == "501");
  CHECK(sent[0].reply_to_message_id == mid);
  CHECK(sent[0].text == "Yes, here.");
}

TEST_CASE(
    "telegram: a 429 with retry_after -1 is not an instant retry, the poller asks once a second") {
  FakeTelegram tg;
  tg.start();
  tg.rate_limit_next(-1, 100000);
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:tg-token"});
  d.start();
  REQUIRE(eventually([&] { return tg.get_updates_requests() >= 1; }));
  int first = tg.get_updates_requests();
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  // At least a second apart (core/provider_wait.hpp); without the floor, thousands.
  CHECK(tg.get_updates_requests() - first <= 3);
  tg.rate_limit_next(0, 0);
  tg.add_private_message(501, "Ann", "hi");
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
}

TEST_CASE("telegram: a 429 with retry_after 10 days away waits the cap, not 10 days") {
  FakeTelegram tg;
  tg.start();
  tg.add_private_message(501, "Ann", "hi");
  tg.rate_limit_next(10 * 24 * 3600);
  SocialDaemon d;
  d.options.max_poll_wait = std::chrono::seconds(2);
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:tg-token"});
  auto started = std::chrono::steady_clock::now();
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; },
                     std::chrono::seconds(10)));
  CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(1900));
  CHECK(tg.get_updates_requests() >= 2);
}

TEST_CASE(
    "telegram: a 200 with a truncated, garbage or oversized body fails the poll, counted, the "
    "offset stays, the next good answer is stored") {
  FakeTelegram tg;
  tg.start();
  tg.add_private_message(501, "Ann", "one");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:tg-token"});
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  // Stopped between two long polls: otherwise the request held by the fake would take the next
  // message before any broken answer.
  d.stop();
  std::string offset = d.cursor("telegram:tg", "offset");
  REQUIRE(!offset.empty());
  tg.answer_next_poll(200, R"({"ok":true,"result":[{"update_id":500000002,"message":{"mess)");
  tg.answer_next_poll(200, "<html><body><h1>502 Bad Gateway</h1></body></html>");
  tg.answer_next_poll(200,
                      R"({"ok":true,"result":[],"padding":")" + std::string(17 << 20, 'x') + "\"}");
  long long mid = tg.add_private_message(502, "Bob", "two");
  d.start();
  REQUIRE(eventually(
      [&] {
        return d.metrics().find(
                   R"(switchboard_channel_errors_total{channel="telegram",account="tg"} 3)") !=
               std::string::npos;
      },
      std::chrono::seconds(15)));
  CHECK(d.cursor("telegram:tg", "offset") == offset);
  CHECK(d.redis.xlen("sb:q:general:normal") == 1);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; },
                     std::chrono::seconds(10)));
  CHECK(str(d.queued().back().at("external_id")) == "123:502:" + std::to_string(mid));
  CHECK(d.cursor("telegram:tg", "offset") != offset);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 2);
}

TEST_CASE(
    "telegram: a reload's new bot token goes with the next getMe, getUpdates and reply, and is "
    "never logged") {
  LogCapture log("daemon");  // before the daemon, which logs from its own threads
  LogCapture social("social");
  FakeTelegram tg("123:rotated");  // the old token was revoked at @BotFather
  tg.start();
  tg.add_private_message(501, "Ann", "hi");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:revoked"});
  d.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  REQUIRE(d.redis.xlen("sb:q:general:normal") == 0);  // 401: nothing comes in
  auto fresh = d.cfg;
  fresh.channels.telegram.at(0).bot_token = "123:rotated";
  REQUIRE(d.app->reload(fresh).empty());
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; },
                     std::chrono::seconds(10)));
  auto r = d.send("telegram", "tg", reply_to(d.queued().at(0), "01JTROT", "Here."));
  CHECK(r.status == SendResult::Status::sent);
  CHECK(tg.sent().size() == 1);
  d.stop();
  CHECK(
      log.lines_with("reload: channels.telegram tg: bot_token applied from its next use").size() ==
      1);
  // The token travels in the URL path (/bot<token>/getUpdates): no line names it, neither the
  // new one nor the revoked one its 401s came with.
  for (const std::string& text : {log.text(), social.text()}) {
    CHECK(text.find("123:revoked") == std::string::npos);
    CHECK(text.find("123:rotated") == std::string::npos);
  }
  CHECK(!social.lines_with("[telegram:tg]").empty());  // it did log: the check means something
}

TEST_CASE(
    "telegram: a reload's new token of the same bot is asked getMe again, and polling goes on") {
  LogCapture log("daemon");  // before the daemon, which logs from its own threads
  LogCapture social("social");
  FakeTelegram tg("123:first");
  tg.start();
  tg.add_private_message(501, "Ann", "hi");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:first"});
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  CHECK(tg.get_me_requests() == 1);
  // Revoked at @BotFather for a new one: the getUpdates held with the old token gets a 401.
  tg.set_token("123:second");
  auto fresh = d.cfg;
  fresh.channels.telegram.at(0).bot_token = "123:second";
  REQUIRE(d.app->reload(fresh).empty());
  tg.add_private_message(502, "Bob", "hello");
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; },
                     std::chrono::seconds(10)));
  // Named again, as at a restart, before the next getUpdates.
  CHECK(tg.get_me_requests() == 2);
  CHECK(social.lines_with("[telegram:tg] polling as @support_bot").size() == 2);
  CHECK(d.rows("SELECT count(DISTINCT external_id) FROM interactions") == 2);
  d.stop();
  for (const std::string& text : {log.text(), social.text()}) {
    CHECK(text.find("123:first") == std::string::npos);
    CHECK(text.find("123:second") == std::string::npos);
  }
}

TEST_CASE("telegram: a 504 to sendMessage is an unknown outcome: sent once, failed, not retried") {
  FakeTelegram tg;
  tg.start();
  tg.add_private_message(501, "Ann", "are you there?");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:tg-token"});
  d.start();
  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  // The gateway in front of the Bot API passed the request on, then gave up waiting: the
  // message may well have been delivered.
  tg.answer_next_sends(504, "<html><body><h1>504 Gateway Time-out</h1></body></html>", 1000);
  std::string out = alice.reply(s(in.at("id")), "Yes, here.");
  auto failed = alice.outbound_when(s(in.at("customer").at("id")), out, "failed", 1, 10s);
  std::string why = s(failed.at("send").at("error"));
  CHECK_MESSAGE(
      why.rfind("outcome unknown: the request went out and Telegram answered HTTP 504", 0) == 0,
      why);
  CHECK_MESSAGE(
      why.find("not retried so that the customer does not get it twice") != std::string::npos, why);
  std::this_thread::sleep_for(1500ms);  // longer than the first back-off: nothing goes again
  CHECK(tg.sent().size() == 1);
  CHECK(d.metrics().find(R"(switchboard_sends_unknown_total{channel="telegram",account="tg"} 1)") !=
        std::string::npos);
}

TEST_CASE(
    "telegram: a reply to a group upgraded to a supergroup goes to the supergroup, and the "
    "customers' next messages there join their conversations") {
  FakeTelegram tg;
  tg.start();
  tg.add_message(group_mention(-42, 333, "Cy"));
  tg.add_message(group_mention(-42, 444, "Di"));
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:tg-token"});
  d.start();
  AgentClient alice(d.app->port(), "alice-token");
  auto cy = alice.claim("general");
  auto di = alice.claim("general");
  REQUIRE(s(cy.at("from").at("value")) == "333");
  // Upgraded since: Telegram refuses the send to the group, naming the supergroup.
  tg.migrate_chat(-42, -1001987654321);
  std::string out = alice.reply(s(cy.at("id")), "Here to help.");
  auto sent = alice.outbound_when(s(cy.at("customer").at("id")), out, "sent", 0, 10s);
  auto msgs = tg.sent();
  REQUIRE(msgs.size() == 1);
  CHECK(msgs[0].chat_id == "-1001987654321");
  CHECK(msgs[0].reply_to_message_id == 0);  // its id numbers the old group's messages
  CHECK(msgs[0].text == "Here to help.");

  // The upgrade's service messages, then both customers write in the supergroup: Cy's message
  // joins his conversation (the key the reply recorded), Di's hers (the poller's map).
  tg.add_message(
      R"({"from":{"id":333,"is_bot":false,"first_name":"Cy"},"chat":{"id":-42,"title":"Customers","type":"group"},"migrate_to_chat_id":-1001987654321})");
  tg.add_message(
      R"({"from":{"id":1087968824,"is_bot":true,"first_name":"Group"},"chat":{"id":-1001987654321,"title":"Customers","type":"supergroup"},"migrate_from_chat_id":-42})");
  tg.add_message(group_mention(-1001987654321, 333, "Cy", "supergroup"));
  tg.add_message(group_mention(-1001987654321, 444, "Di", "supergroup"));
  REQUIRE(eventually([&] { return d.rows("SELECT count(*) FROM interactions") == 5; }));
  auto cy2 = alice.claim("general");
  auto di2 = alice.claim("general");
  CHECK(s(cy2.at("from").at("value")) == "333");
  CHECK(s(cy2.at("conversation_id")) == s(cy.at("conversation_id")));
  CHECK(s(di2.at("from").at("value")) == "444");
  CHECK(s(di2.at("conversation_id")) == s(di.at("conversation_id")));
  CHECK(s(cy.at("conversation_id")) != s(di.at("conversation_id")));
  // The map survives a restart: stored with the poller's cursor.
  CHECK(d.cursor("telegram:tg", "chat_migrations") == R"({"-1001987654321":"-42"})");
}

// Before: the upgrade went into the poller's map before its commit, so after a failed commit
// the next poll, reading the same service messages, found nothing new to store, and the offset
// moved past them: the upgrade was never stored, and lost at the next restart.
TEST_CASE("telegram: a group's upgrade whose commit fails is stored at the next poll") {
  using namespace std::chrono_literals;
  LogCapture social("social");  // before the daemon, which logs from its own threads
  FakeTelegram tg;
  tg.start();
  tg.add_message(group_mention(-42, 444, "Di"));
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:tg-token"});
  d.start();
  AgentClient alice(d.app->port(), "alice-token");
  auto di = alice.claim("general");
  {
    WriteLock lock(d.dir.file("switchboard.db"));
    tg.add_message(
        R"({"from":{"id":444,"is_bot":false,"first_name":"Di"},"chat":{"id":-42,"title":"Customers","type":"group"},"migrate_to_chat_id":-1001987654321})");
    tg.add_message(
        R"({"from":{"id":1087968824,"is_bot":true,"first_name":"Group"},"chat":{"id":-1001987654321,"title":"Customers","type":"supergroup"},"migrate_from_chat_id":-42})");
    REQUIRE(eventually(
        [&] { return !social.lines_with("storing a group's upgrade to a supergroup").empty(); },
        15s));
  }
  tg.add_message(group_mention(-1001987654321, 444, "Di", "supergroup"));
  REQUIRE(eventually([&] { return d.rows("SELECT count(*) FROM interactions") == 2; }, 15s));
  CHECK(d.cursor("telegram:tg", "chat_migrations") == R"({"-1001987654321":"-42"})");
  auto di2 = alice.claim("general");
  CHECK(s(di2.at("conversation_id")) == s(di.at("conversation_id")));
}

TEST_CASE(
    "telegram: a reply over 4096 characters (UTF-16 code units) is refused with 400, nothing "
    "stored") {
  FakeTelegram tg;
  tg.start();
  tg.add_private_message(501, "Ann", "tell me everything");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:tg-token"});
  d.start();
  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  const std::string id = s(in.at("id"));
  auto reply = [&](const std::string& text) {
    return alice.act(id, "reply", boost::json::serialize(boost::json::object{{"text", text}}));
  };
  auto over = reply(std::string(4097, 'a'));
  CHECK(over.status == 400);
  CHECK_MESSAGE(over.body.find("is 4097 characters long; a Telegram message takes at most 4096 "
                               "characters (UTF-16 code units") != std::string::npos,
                over.body);
  // 2049 emoji: 2049 code points, but 4098 UTF-16 units, as Telegram counts.
  std::string emoji;
  for (int i = 0; i < 2049; ++i) {
    emoji += "\xF0\x9F\x98\x80";
  }
  auto pairs = reply(emoji);
  CHECK(pairs.status == 400);
  CHECK_MESSAGE(pairs.body.find("is 4098 characters long") != std::string::npos, pairs.body);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE direction = 'outbound'") == 0);
  // At the limit: accepted and sent.
  std::string out = alice.reply(id, std::string(4096, 'a'));
  alice.outbound_when(s(in.at("customer").at("id")), out, "sent", 0, 10s);
  CHECK(tg.sent().size() == 1);
}
