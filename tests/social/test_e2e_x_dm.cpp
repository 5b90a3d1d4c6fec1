// X direct messages end to end: GET /2/dm_events in user context, newest first without since_id,
// paged down to the DM cursor; DMs stored as direct_message, one conversation per DM
// conversation; a reply to a DM goes by DM, never as a public post.
#include <doctest/doctest.h>

#include <set>
#include <thread>

#include "tests/social/e2e.hpp"
#include "tests/social/fakes/fake_x.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;

namespace {

// The queued interactions of one kind.
std::vector<boost::json::object> of_kind(const std::vector<boost::json::object>& q,
                                         const std::string& kind) {
  std::vector<boost::json::object> out;
  for (const auto& o : q) {
    if (str(o.at("kind")) == kind) {
      out.push_back(o);
    }
  }
  return out;
}

}  // namespace

TEST_CASE(
    "x dm: DMs across a page boundary become direct_message interactions once each, the "
    "account's own are skipped, one conversation per DM conversation, mentions go on") {
  FakeX fake("42");
  fake.start();
  std::vector<std::string> ids;  // the customers' DMs, oldest first
  for (int i = 0; i < 120; ++i) {
    const std::string who = i % 2 == 0 ? "7" : "8";
    ids.push_back(fake.add_dm(who, who == "7" ? "pat" : "ann", "dm " + std::to_string(i)));
    if (i % 40 == 0) {
      fake.add_dm("42", "support", "our answer " + std::to_string(i));  // the account's own
    }
  }
  std::string mention = fake.add_mention("9", "bob", "@support hello");
  SocialDaemon d;
  d.cfg.channels.x.push_back(fake.replying_account());
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") >= 121; },
                     std::chrono::seconds(20)));
  auto dms = of_kind(d.queued(), "direct_message");
  REQUIRE(dms.size() == 120);
  std::set<std::string> conversations[2];
  for (std::size_t i = 0; i < dms.size(); ++i) {
    CHECK(str(dms[i].at("external_id")) == "dm:" + ids[i]);
    CHECK(str(dms[i].at("channel")) == "x");
    const std::string who = i % 2 == 0 ? "7" : "8";
    CHECK(str(dms[i].at("from").at("value")) == who);
    CHECK(str(dms[i].at("from").at("handle")) == (who == "7" ? "pat" : "ann"));
    CHECK(str(dms[i].at("text")) == "dm " + std::to_string(i));
    conversations[i % 2].insert(str(dms[i].at("conversation_id")));
  }
  CHECK(conversations[0].size() == 1);
  CHECK(conversations[1].size() == 1);
  CHECK(*conversations[0].begin() != *conversations[1].begin());
  auto mentions = of_kind(d.queued(), "mention");
  REQUIRE(mentions.size() == 1);
  CHECK(str(mentions[0].at("external_id")) == mention);

  // The first poll read two pages (123 events, 100 a page); the cursor is the newest event.
  auto queries = fake.dm_queries();
  REQUIRE(queries.size() >= 2);
  CHECK(queries[0].count("pagination_token") == 0);
  CHECK(queries[1].count("pagination_token") == 1);
  CHECK(queries[0]["event_types"] == "MessageCreate");
  CHECK(d.cursor("x:x", "direct_messages") == ids.back());
  CHECK(fake.dm_auth_refusals().empty());

  // Later polls stop at the cursor on their first page, and add nothing.
  int requests = fake.dm_requests();
  REQUIRE(eventually([&] { return fake.dm_requests() >= requests + 2; }));
  CHECK(d.rows("SELECT count(*) FROM interactions") == 121);
  for (std::size_t i = 2; i < fake.dm_queries().size(); ++i) {
    CHECK(fake.dm_queries()[i].count("pagination_token") == 0);
  }

  // A new DM, and one of the account's after it: the customer's arrives once, in pat's
  // conversation; the cursor moves past both.
  std::string fresh = fake.add_dm("7", "pat", "one more");
  std::string own = fake.add_dm("42", "support", "typed in the X app");
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 122; }));
  auto last = d.queued().back();
  CHECK(str(last.at("external_id")) == "dm:" + fresh);
  CHECK(str(last.at("conversation_id")) == *conversations[0].begin());
  REQUIRE(eventually([&] { return d.cursor("x:x", "direct_messages") == own; }));
  CHECK(d.rows("SELECT count(*) FROM interactions") == 122);
  CHECK(d.cursor("x:x", "mentions") == mention);
}

TEST_CASE("x dm: a restart goes on from the DM cursor, without reading back the pages before") {
  FakeX fake("42");
  fake.start();
  for (int i = 0; i < 150; ++i) {
    fake.add_dm("7", "pat", "dm " + std::to_string(i));
  }
  SocialDaemon d;
  d.cfg.channels.x.push_back(fake.replying_account());
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 150; },
                     std::chrono::seconds(20)));
  d.stop();
  std::string cursor = d.cursor("x:x", "direct_messages");
  CHECK(!cursor.empty());

  std::vector<std::string> added;
  for (int i = 0; i < 3; ++i) {
    added.push_back(fake.add_dm("8", "ann", "while down " + std::to_string(i)));
  }
  const std::size_t before = fake.dm_queries().size();
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 153; },
                     std::chrono::seconds(20)));
  REQUIRE(eventually([&] { return fake.dm_queries().size() >= before + 2; }));
  auto q = d.queued();
  for (std::size_t i = 0; i < added.size(); ++i) {
    CHECK(str(q[150 + i].at("external_id")) == "dm:" + added[i]);
  }
  CHECK(d.rows("SELECT count(*) FROM interactions") == 153);
  // Without the cursor the look-back (24 h) would have paged through all 153 again.
  auto queries = fake.dm_queries();
  for (std::size_t i = before; i < queries.size(); ++i) {
    CHECK(queries[i].count("pagination_token") == 0);
  }
  CHECK(d.cursor("x:x", "direct_messages") == added.back());
}

TEST_CASE(
    "x dm: a reply to a DM goes by DM to its conversation and never to POST /2/tweets, a reply "
    "to a mention still posts") {
  FakeX fake("42");
  fake.start();
  std::string dm = fake.add_dm("7", "pat", "where is my order? (private)");
  std::string mention = fake.add_mention("8", "ann", "@support hello");
  SocialDaemon d;
  d.cfg.channels.x.push_back(fake.replying_account());
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  auto q = d.queued();
  auto dms = of_kind(q, "direct_message");
  REQUIRE(dms.size() == 1);

  auto r = d.send("x", "x", reply_to(dms[0], "01JXDM1", "It ships today."));
  INFO(r.error);
  REQUIRE(r.status == SendResult::Status::sent);
  auto posted = fake.dm_posted();
  REQUIRE(posted.size() == 1);
  CHECK(posted[0].text == "It ships today.");
  CHECK(posted[0].conversation_id == "7-42");
  CHECK(posted[0].path == "/2/dm_conversations/7-42/messages");
  CHECK(r.provider_id == "dm:" + posted[0].event_id);
  CHECK(fake.post_requests() == 0);
  CHECK(fake.posted().empty());
  CHECK(fake.dm_auth_refusals().empty());

  // Our DM is in the account's dm_events now: polls skip it.
  int requests = fake.dm_requests();
  REQUIRE(eventually([&] { return fake.dm_requests() >= requests + 2; }));
  CHECK(d.redis.xlen("sb:q:general:normal") == 2);
  CHECK(d.cursor("x:x", "direct_messages") == posted[0].event_id);

  auto m = of_kind(q, "mention");
  REQUIRE(m.size() == 1);
  auto rm = d.send("x", "x", reply_to(m[0], "01JXMENTION1", "Thanks!"));
  REQUIRE(rm.status == SendResult::Status::sent);
  REQUIRE(fake.posted().size() == 1);
  CHECK(fake.posted()[0].in_reply_to_tweet_id == mention);
  CHECK(fake.dm_posted().size() == 1);
}

TEST_CASE(
    "x dm: a DM reply whose answer was lost, or cut by a stop, is failed as unknown and not sent "
    "again") {
  FakeX fake("42");
  fake.start();
  fake.add_dm("7", "pat", "hello?");
  SocialDaemon d;
  d.cfg.channels.x.push_back(fake.replying_account());
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto parent = d.queued()[0];
  fake.lose_next_dm_answers(1);
  auto r = d.send("x", "x", reply_to(parent, "01JXDMLOST", "Hi!"));
  CHECK(r.status == SendResult::Status::failed);
  CHECK(r.unknown);
  CHECK(r.error.find("check the conversation on X") != std::string::npos);
  CHECK(fake.dm_posted().size() == 1);  // it did go out

  Sender* s = d.app->senders().find("x", "x");
  REQUIRE(s != nullptr);
  CHECK(s->marks_attempts());
  auto cut = s->interrupted(reply_to(parent, "01JXDMCUT", "Hi again!"), "the daemon stopped");
  CHECK(cut.status == SendResult::Status::failed);
  CHECK(cut.unknown);
}

// Before: a 5xx to a DM post was retried as X's server error, so a DM that a gateway passed on
// before giving up went out twice (X takes no idempotency key for DMs).
TEST_CASE("x dm: a 504 after the DM went out is failed as unknown and not sent again") {
  FakeX fake("42");
  fake.start();
  fake.add_dm("7", "pat", "hello?");
  SocialDaemon d;
  d.cfg.channels.x.push_back(fake.replying_account());
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto parent = d.queued()[0];
  fake.gateway_error_after_next_dm_posts(1, 504);
  auto r = d.send("x", "x", reply_to(parent, "01JXDM504", "Hi!"));
  CHECK(r.status == SendResult::Status::failed);
  CHECK(r.unknown);
  CHECK_MESSAGE(r.error.find("X answered HTTP 504") != std::string::npos, r.error);
  CHECK(fake.dm_posted().size() == 1);
}

TEST_CASE("x dm: an account without user context reads mentions only, and says so once at start") {
  LogCapture log("social");
  FakeX fake("42");
  fake.start();
  fake.add_dm("7", "pat", "a DM nobody can read without user context");
  std::string mention = fake.add_mention("8", "ann", "@support hello");
  SocialDaemon d;
  d.cfg.channels.x.push_back(
      config::X{"x", fake.base_url(), "x-token", "42", std::chrono::milliseconds(100)});
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  REQUIRE(eventually([&] { return fake.mention_requests() >= 3; }));
  CHECK(str(d.queued()[0].at("external_id")) == mention);
  CHECK(fake.dm_requests() == 0);
  d.stop();
  CHECK(log.lines_with("[x:x] direct messages are not read").size() == 1);
}

TEST_CASE(
    "x dm: a DM numbered below one already read, visible a poll later, is stored once, and the "
    "cursor never moves back") {
  FakeX fake("42");
  fake.start();
  fake.add_dm("7", "pat", "one");
  std::string newer = fake.add_dm("8", "ann", "two");
  SocialDaemon d;
  d.cfg.channels.x.push_back(fake.replying_account());
  d.start();
  REQUIRE(eventually([&] { return d.cursor("x:x", "direct_messages") == newer; }));
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  int polls = fake.dm_requests();
  REQUIRE(eventually([&] { return fake.dm_requests() >= polls + 2; }));
  // Numbered 2 s of snowflake time before `newer`, visible only now.
  fake.set_next_id(std::stoll(newer) - (2000LL << 22));
  std::string late = fake.add_dm("9", "bob", "three");
  REQUIRE(std::stoll(late) < std::stoll(newer));
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; },
                     std::chrono::seconds(5)));
  CHECK(str(d.queued().back().at("external_id")) == "dm:" + late);
  polls = fake.dm_requests();
  REQUIRE(eventually([&] { return fake.dm_requests() >= polls + 3; }));
  CHECK(d.cursor("x:x", "direct_messages") == newer);  // not moved back to `late`
  CHECK(d.rows("SELECT count(*) FROM interactions") == 3);
  CHECK(d.redis.xlen("sb:q:general:normal") == 3);
  CHECK(d.metrics().find("switchboard_duplicates_total{channel=\"x\"") == std::string::npos);
}

TEST_CASE(
    "x dm: direct_messages = false reads mentions only, with user context, and says so once at "
    "start") {
  LogCapture log("social");
  FakeX fake("42");
  fake.start();
  fake.add_dm("7", "pat", "a DM left unread");
  std::string mention = fake.add_mention("8", "ann", "@support hello");
  SocialDaemon d;
  d.cfg.channels.x.push_back(fake.replying_account());
  d.cfg.channels.x.back().direct_messages = false;
  d.start();
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  REQUIRE(eventually([&] { return fake.mention_requests() >= 3; }));
  CHECK(str(d.queued()[0].at("external_id")) == mention);
  CHECK(fake.dm_requests() == 0);
  d.stop();
  CHECK(log.lines_with("[x:x] direct messages are not read (direct_messages = false)").size() == 1);
}

TEST_CASE(
    "x dm: a 403 on /2/dm_events (no DM permission) is logged once at error with the fix, asked "
    "again an hour later, not in minutes, and mentions go on") {
  LogCapture log("social");
  FakeX fake("42");
  fake.start();
  fake.forbid_dm_lookups(true);
  fake.add_dm("7", "pat", "a DM the app may not read");
  SocialDaemon d;
  d.cfg.channels.x.push_back(fake.replying_account());
  d.start();
  REQUIRE(eventually([&] { return fake.dm_requests() >= 1; }));
  // Longer than the failure back-off's first steps (1 s, 2 s): no second request.
  int mentions = fake.mention_requests();
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  CHECK(fake.dm_requests() == 1);
  CHECK(fake.mention_requests() >= mentions + 3);  // mentions unaffected
  std::string mention = fake.add_mention("8", "ann", "@support hello");
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  CHECK(str(d.queued()[0].at("external_id")) == mention);
  d.stop();
  auto lines = log.lines_with("direct messages: GET /2/dm_events refused (HTTP 403");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind("error [x:x]", 0) == 0);
  CHECK(lines[0].find("grant the app Direct Message permission") != std::string::npos);
  CHECK(lines[0].find("direct_messages = false") != std::string::npos);
  CHECK(log.lines_with("direct messages: poll failed").empty());
}

TEST_CASE("x dm: a poll whose commit fails stores the same DMs at the next poll") {
  using namespace std::chrono_literals;
  LogCapture social("social");  // before the daemon, which logs from its own threads
  FakeX fake("42");
  fake.start();
  std::string first = fake.add_dm("7", "pat", "dm one");
  SocialDaemon d;
  auto account = fake.replying_account();
  account.poll_interval = 3000ms;  // the DMs below are added well before the next poll reads
  d.cfg.channels.x.push_back(account);
  d.start();
  REQUIRE(eventually([&] { return d.cursor("x:x", "direct_messages") == first; }));
  std::vector<std::string> later;
  {
    // The next poll reads both and its commit fails (SQLITE_BUSY): neither they nor the cursor
    // are stored. The poll after it reads them again, the overlap included.
    WriteLock lock(d.dir.file("switchboard.db"));
    later.push_back(fake.add_dm("8", "ann", "dm two"));
    later.push_back(fake.add_dm("7", "pat", "dm three"));
    REQUIRE(eventually(
        [&] { return !social.lines_with("poll failed: storing direct messages").empty(); },
        std::chrono::seconds(15)));
  }
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; },
                     std::chrono::seconds(15)));
  auto dms = of_kind(d.queued(), "direct_message");
  REQUIRE(dms.size() == 3);
  CHECK(str(dms[1].at("external_id")) == "dm:" + later[0]);
  CHECK(str(dms[2].at("external_id")) == "dm:" + later[1]);
  CHECK(d.cursor("x:x", "direct_messages") == later[1]);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 3);
  d.stop();
}
