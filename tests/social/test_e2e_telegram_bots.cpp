// Telegram: the stored getUpdates offset belongs to one bot. update_ids are numbered per bot, and
// asking with offset N drops every update below N, so an account given another bot's token
// (at a restart or a reload) must not send it the old bot's offset.
#include <doctest/doctest.h>

#include "tests/social/e2e.hpp"
#include "tests/social/fakes/fake_telegram.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;

namespace {

// The first bot's update_ids start at 500000001; the second bot's at 1001, far below.
constexpr long long kFirst = 123, kSecond = 456;
const char* const kMoved =
    "[telegram:tg] the stored offset belongs to bot 123, not 456: reading the new bot's updates "
    "from the start";

}  // namespace

TEST_CASE(
    "telegram: a restart with another bot's token reads all its pending updates, each stored "
    "once, though their ids are below the old bot's offset") {
  LogCapture social("social");
  FakeTelegram tg("123:first");
  tg.add_bot("456:second", "other_bot", 1000);
  tg.start();
  long long old_mid = tg.add_private_message(501, "Ann", "hi");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:first"});
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  d.stop();
  CHECK(d.cursor("telegram:tg", "offset") == "500000002:123");

  // Ann writes to the new bot too: her chat with it has the same id (hers) and its message ids
  // start again at 1, as her first message to the old bot's did.
  long long mid = tg.add_private_message(501, "Ann", "hello again", kSecond);
  CHECK(mid == old_mid);
  tg.add_private_message(502, "Bob", "hello", kSecond);
  d.cfg.channels.telegram.at(0).bot_token = "456:second";
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; }));
  // Asked without an offset first, then confirmed past both.
  REQUIRE(!tg.offsets_asked(kSecond).empty());
  CHECK(tg.offsets_asked(kSecond).front() == 0);
  CHECK(eventually([&] { return tg.confirmed_offset(kSecond) == 1003; }));
  CHECK(d.cursor("telegram:tg", "offset") == "1003:456");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(d.rows("SELECT count(*) FROM interactions") == 3);
  auto q = d.queued();
  REQUIRE(q.size() == 3);
  CHECK(str(q[0].at("external_id")) == "123:501:" + std::to_string(old_mid));
  CHECK(str(q[1].at("external_id")) == "456:501:" + std::to_string(mid));
  CHECK(str(q[1].at("text")) == "hello again");
  CHECK(social.lines_with(kMoved).size() == 1);

  // A reply to the old bot's message goes without the quote: its message_id numbers the old
  // bot's messages, and in the new bot's chat with Ann the same id is "hello again".
  auto r = d.send("telegram", "tg", reply_to(q[0], "01JTBOT1", "Sorry for the wait."));
  REQUIRE(r.status == SendResult::Status::sent);
  r = d.send("telegram", "tg", reply_to(q[1], "01JTBOT2", "Here now."));
  REQUIRE(r.status == SendResult::Status::sent);
  auto sent = tg.sent();
  REQUIRE(sent.size() == 2);
  CHECK(sent[0].chat_id == "501");
  CHECK(sent[0].reply_to_message_id == 0);
  CHECK(sent[1].reply_to_message_id == mid);
  d.stop();
}

TEST_CASE(
    "telegram: a restart with the same bot goes on from its offset, and an offset stored without "
    "a bot id is taken for the running bot's") {
  LogCapture social("social");
  FakeTelegram tg("123:first");
  tg.start();
  tg.add_private_message(501, "Ann", "hi");
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:first"});
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  d.stop();
  REQUIRE(d.cursor("telegram:tg", "offset") == "500000002:123");

  std::size_t before = tg.offsets_asked(kFirst).size();
  tg.add_private_message(502, "Bob", "hello");
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  d.stop();
  REQUIRE(tg.offsets_asked(kFirst).size() > before);
  CHECK(tg.offsets_asked(kFirst).at(before) == 500000002);  // never from the start again
  CHECK(d.cursor("telegram:tg", "offset") == "500000003:123");

  // A row as stored before the bot id was: the bare offset, used as it was.
  {
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec("UPDATE cursors SET value='500000003' WHERE account='telegram:tg' AND scope='offset'");
  }
  before = tg.offsets_asked(kFirst).size();
  tg.add_private_message(503, "Cy", "and me");
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; }));
  d.stop();
  REQUIRE(tg.offsets_asked(kFirst).size() > before);
  CHECK(tg.offsets_asked(kFirst).at(before) == 500000003);
  CHECK(d.cursor("telegram:tg", "offset") == "500000004:123");
  CHECK(d.rows("SELECT count(*) FROM interactions") == 3);
  CHECK(social.lines_with("the stored offset belongs to").empty());
}

TEST_CASE(
    "telegram: a reload with another bot's token is applied, the poll held with the old token is "
    "stored as the old bot's, the new bot is read from the start") {
  LogCapture log("daemon");  // before the daemon, which logs from its own threads
  LogCapture social("social");
  FakeTelegram tg("123:first");
  tg.add_bot("456:second", "other_bot", 1000);
  tg.start();
  tg.add_private_message(501, "Ann", "hi");
  tg.add_private_message(501, "Ann", "hello again", kSecond);
  tg.add_private_message(502, "Bob", "hello", kSecond);
  SocialDaemon d;
  d.cfg.channels.telegram.push_back(config::Telegram{"tg", tg.base_url(), "123:first"});
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  // The next getUpdates, with the first bot's token and offset, is held by the server.
  REQUIRE(eventually([&] { return tg.offsets_asked(kFirst).size() == 2; }));
  auto fresh = d.cfg;
  fresh.channels.telegram.at(0).bot_token = "456:second";
  REQUIRE(d.app->reload(fresh).empty());
  // The held request answers with the first bot's update after the reload.
  tg.add_private_message(503, "Cy", "still the old bot");
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 4; },
                     std::chrono::seconds(10)));
  CHECK(tg.confirmed_offset(kFirst) == 500000002);  // its last update was not confirmed
  REQUIRE(!tg.offsets_asked(kSecond).empty());
  CHECK(tg.offsets_asked(kSecond).front() == 0);
  CHECK(eventually([&] { return tg.confirmed_offset(kSecond) == 1003; }));
  CHECK(d.cursor("telegram:tg", "offset") == "1003:456");
  auto q = d.queued();
  REQUIRE(q.size() == 4);
  CHECK(str(q[1].at("external_id")) == "123:503:2");
  CHECK(str(q[2].at("external_id")) == "456:501:1");
  CHECK(str(q[3].at("external_id")) == "456:502:2");
  d.stop();
  CHECK(
      log.lines_with("reload: channels.telegram tg: bot_token applied from its next use").size() ==
      1);
  CHECK(log.lines_with("not applied until a restart").empty());
  CHECK(social.lines_with(kMoved).size() == 1);
  CHECK(social.lines_with("[telegram:tg] polling as @other_bot").size() == 1);
  for (const std::string& text : {log.text(), social.text()}) {
    CHECK(text.find("123:first") == std::string::npos);
    CHECK(text.find("456:second") == std::string::npos);
  }
}
