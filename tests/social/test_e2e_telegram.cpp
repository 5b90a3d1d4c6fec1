// Telegram end to end (issue 6 acceptance 6): long polling, restart, reply_to_message_id.
#include <doctest/doctest.h>

#include "tests/social/e2e.hpp"
#include "tests/social/fakes/fake_telegram.hpp"

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
  CHECK(str(q[2].at("external_id")) == "501:" + std::to_string(mid));
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
