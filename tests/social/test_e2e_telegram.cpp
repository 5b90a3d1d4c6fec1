// Telegram end to end (issue 6 acceptance 6): long polling, restart, reply_to_message_id.
#include <doctest/doctest.h>

#include "tests/social/e2e.hpp"
#include "tests/social/fakes/fake_telegram.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;

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
