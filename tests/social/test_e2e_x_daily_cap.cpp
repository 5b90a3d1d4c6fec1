// X's 24-hour posting limits on replies (channels/social/x.cpp, senders.cpp): a 429 whose
// x-user-limit-24hour-remaining is 0 pauses the account's replies until
// x-user-limit-24hour-reset, without asking X again meanwhile and without spending the replies'
// attempts; a reset that is no time is retried as today. Through the agent API and the durable
// send queue, against the fake X.
#include <doctest/doctest.h>

#include <functional>
#include <thread>

#include "core/time.hpp"
#include "tests/integration/agent_api.hpp"
#include "tests/social/e2e.hpp"
#include "tests/social/fakes/fake_x.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

struct XReplies {
  FakeX fake{"42"};
  SocialDaemon d;
  std::unique_ptr<AgentClient> alice;
  std::vector<config::X> more;  // other accounts, configured after "x"

  // `mentions` mentions, each from a customer of its own, claimed by alice.
  std::vector<json::object> start(int mentions) {
    fake.start();
    for (int i = 0; i < mentions; ++i) {
      fake.add_mention(std::to_string(7 + i), "pat" + std::to_string(i),
                       "@support where is order " + std::to_string(i) + "?");
    }
    d.cfg.channels.x.push_back(fake.replying_account());
    for (const auto& a : more) {
      d.cfg.channels.x.push_back(a);
    }
    d.start();
    alice = std::make_unique<AgentClient>(d.app->port(), "alice-token");
    std::vector<json::object> claimed;
    for (int i = 0; i < mentions; ++i) {
      claimed.push_back(alice->claim("general"));
    }
    return claimed;
  }

  // The outbound interaction once its send state carries an error (an attempt's result).
  json::object with_error(const json::object& in, const std::string& out_id) {
    const std::string customer = s(in.at("customer").at("id"));
    json::object found;
    bool ok = eventually([&] {
      for (const auto& i : alice->timeline(customer)) {
        const auto& o = i.as_object();
        if (s(o.at("id")) == out_id && o.contains("send") && o.at("send").at("error").is_string()) {
          found = o;
          return true;
        }
      }
      return false;
    });
    REQUIRE_MESSAGE(ok, "no send error on " << out_id);
    return found;
  }

  // A reload whose only change is `change` made to the running config (a SIGHUP), which it
  // then is.
  void reload(const std::function<void(config::Config&)>& change) {
    auto fresh = d.cfg;
    change(fresh);
    REQUIRE(d.app->reload(fresh).empty());
    d.cfg = std::move(fresh);
  }
};

// Credentials of another support user of the same app (the consumer key and secret unchanged).
config::XUserContext another_user() {
  config::XUserContext keys = FakeX::user_context();
  keys.access_token = "43-anotherUserAccessToken00";
  keys.access_token_secret = "another user's secret";
  return keys;
}

// The same user's access token, re-issued (a leaked token rotated): X counts that user's posts
// whatever the token.
config::XUserContext reissued() {
  config::XUserContext keys = FakeX::user_context();
  keys.access_token = "370773112-reissuedAccessTokenOfTheSameUser00000";
  keys.access_token_secret = "the re-issued token's secret";
  return keys;
}

// Unix seconds `ahead` from now, as X's reset headers carry them.
std::int64_t reset_in(std::chrono::seconds ahead) {
  return now_ms() / 1000 + ahead.count();
}

}  // namespace

TEST_CASE(
    "x: a reply refused for the user's 24-hour posting limit is not retried before its reset, "
    "waits pending with X's message and the reset, and is sent after it with its attempts "
    "unspent") {
  LogCapture social("social");  // before the daemon, which logs from its own threads
  XReplies x;
  auto in = x.start(1);
  const std::int64_t reset = reset_in(3s);
  const std::string until = format_rfc3339(reset * 1000);
  x.fake.daily_cap_next_posts(1, "user", std::to_string(reset));
  std::string out_id = x.alice->reply(s(in[0].at("id")), "It ships today.");

  auto pending = x.with_error(in[0], out_id);
  CHECK(s(pending.at("send").at("state")) == "pending");
  const std::string why = s(pending.at("send").at("error"));
  CHECK(why.find("Too Many Requests") != std::string::npos);  // X's message
  CHECK(why.find("daily posting limit reached (user): replies wait until " + until) !=
        std::string::npos);
  CHECK(pending.at("send").at("attempts").as_int64() == 0);  // the cap is not the reply's fault
  CHECK(s(pending.at("send").at("next_attempt_at")) >= until.substr(0, until.size() - 1));
  CHECK(x.fake.post_requests() == 1);

  // Not asked again before the reset (the 15-minute window had room: that reset is no help).
  while (now_ms() < reset * 1000 - 300) {
    std::this_thread::sleep_for(100ms);
    REQUIRE(x.fake.post_requests() == 1);
  }
  auto sent = x.alice->outbound_when(s(in[0].at("customer").at("id")), out_id, "sent", 0, 8s);
  CHECK(now_ms() >= reset * 1000);
  CHECK(sent.at("send").at("attempts").as_int64() == 1);  // the one that posted it
  CHECK(sent.at("send").at("error").is_null());
  CHECK(x.fake.post_requests() == 2);
  REQUIRE(x.fake.posted().size() == 1);
  CHECK(x.fake.posted()[0].text == "It ships today.");
  x.d.stop();
  auto lines = social.lines_with("daily posting limit reached");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] ==
        "warning [x:x] daily posting limit reached (user): replies wait until " + until);
}

TEST_CASE(
    "x: during the pause of a 24-hour posting limit another reply of the account waits for the "
    "reset without reaching X, and both are sent after it") {
  LogCapture social("social");
  XReplies x;
  auto in = x.start(2);
  const std::int64_t reset = reset_in(4s);
  const std::string until = format_rfc3339(reset * 1000);
  x.fake.daily_cap_next_posts(1, "user", std::to_string(reset));
  std::string first = x.alice->reply(s(in[0].at("id")), "It ships today.");
  x.with_error(in[0], first);
  REQUIRE(x.fake.post_requests() == 1);

  std::string second = x.alice->reply(s(in[1].at("id")), "Your refund is on its way.");
  auto held = x.with_error(in[1], second);
  CHECK(s(held.at("send").at("state")) == "pending");
  CHECK(s(held.at("send").at("error")).find("replies wait until " + until) != std::string::npos);
  CHECK(held.at("send").at("attempts").as_int64() == 0);
  while (now_ms() < reset * 1000 - 300) {
    std::this_thread::sleep_for(100ms);
    REQUIRE(x.fake.post_requests() == 1);  // the second reply never asked X
  }
  x.alice->outbound_when(s(in[0].at("customer").at("id")), first, "sent", 1, 8s);
  x.alice->outbound_when(s(in[1].at("customer").at("id")), second, "sent", 1, 8s);
  CHECK(x.fake.post_requests() == 3);
  CHECK(x.fake.posted().size() == 2);
  x.d.stop();
  CHECK(social.lines_with("daily posting limit reached").size() == 1);  // once per cap
  CHECK(social.lines_with("will be retried").empty());  // not a failure line per held reply
}

TEST_CASE(
    "x: a 24-hour limit whose reset is garbage or too large to be a time is retried as a 429 of "
    "the 15-minute window, attempts counted, and the log says why") {
  LogCapture social("social");
  XReplies x;
  auto in = x.start(2);
  const std::int64_t window_reset = now_ms() + 14 * 60 * 1000;  // the fake's 15-minute window
  x.fake.daily_cap_next_posts(1, "user", "tomorrow");
  std::string first = x.alice->reply(s(in[0].at("id")), "It ships today.");
  auto garbage = x.with_error(in[0], first);
  CHECK(garbage.at("send").at("attempts").as_int64() == 1);
  CHECK(s(garbage.at("send").at("error")).find("daily posting limit") == std::string::npos);
  // As before: the retry waits for x-rate-limit-reset.
  CHECK(s(garbage.at("send").at("next_attempt_at")) > format_rfc3339(window_reset));

  // Milliseconds sent as seconds: a time past what the clock holds.
  x.fake.daily_cap_next_posts(1, "user", std::to_string(reset_in(3s) * 1000));
  std::string second = x.alice->reply(s(in[1].at("id")), "Your refund is on its way.");
  auto huge = x.with_error(in[1], second);
  CHECK(huge.at("send").at("attempts").as_int64() == 1);
  CHECK(x.fake.post_requests() == 2);  // no pause: the second reply asked X
  x.d.stop();
  CHECK(social.lines_with("replies wait until").empty());
  auto lines = social.lines_with("x-user-limit-24hour-reset");
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] ==
        "warning [x:x] daily posting limit reached (user), but x-user-limit-24hour-reset "
        "\"tomorrow\" is not a time: the reply is retried as a 429 of the 15-minute window");
  CHECK(lines[1].find("is not a time") != std::string::npos);
}

// A reload may put another user's (or app's) credentials into the account: X counts their posts
// apart, and the pause learned under the old ones is not theirs.
TEST_CASE(
    "x: after a reload puts another user's access token into the account, a new reply asks X at "
    "once instead of waiting for the old user's 24-hour reset") {
  LogCapture social("social");
  XReplies x;
  auto in = x.start(2);
  x.fake.daily_cap_next_posts(1, "user", std::to_string(reset_in(60s)));
  std::string first = x.alice->reply(s(in[0].at("id")), "It ships today.");
  x.with_error(in[0], first);
  REQUIRE(x.fake.post_requests() == 1);

  x.fake.set_credentials("x-token", another_user());  // only the new user's keys sign now
  x.reload([](config::Config& c) { c.channels.x.at(0).user_context = another_user(); });
  std::string second = x.alice->reply(s(in[1].at("id")), "Your refund is on its way.");
  auto sent = x.alice->outbound_when(s(in[1].at("customer").at("id")), second, "sent", 1, 3s);
  CHECK(sent.at("send").at("error").is_null());
  CHECK(x.fake.auth_refusals().empty());  // signed with the new user's keys
  // The held reply goes too (the next test), each once.
  x.alice->outbound_when(s(in[0].at("customer").at("id")), first, "sent", 1, 8s);
  CHECK(x.fake.post_requests() == 3);
  CHECK(x.fake.posted().size() == 2);
  x.d.stop();
  CHECK(social.lines_with("daily posting limit reached").size() == 1);
  auto over = social.lines_with("is over");
  REQUIRE(over.size() == 1);
  CHECK(over[0] ==
        "info [x:x] the reload changed the account's access token's user: the pause for the "
        "daily "
        "posting limit (user) is over, and the replies it held are tried now");
  // Not the token itself.
  CHECK(social.text().find(another_user().access_token) == std::string::npos);
}

TEST_CASE(
    "x: a reply held by the old user's 24-hour limit is sent within seconds of a reload that puts "
    "another user's access token into the account, its attempts unspent") {
  LogCapture agents("agents");
  XReplies x;
  auto in = x.start(1);
  x.fake.daily_cap_next_posts(1, "user", std::to_string(reset_in(60s)));
  std::string held = x.alice->reply(s(in[0].at("id")), "It ships today.");
  auto pending = x.with_error(in[0], held);
  REQUIRE(s(pending.at("send").at("state")) == "pending");
  REQUIRE(x.fake.post_requests() == 1);

  x.fake.set_credentials("x-token", another_user());
  x.reload([](config::Config& c) { c.channels.x.at(0).user_context = another_user(); });
  // No new reply wakes the account: the reload brings the held one forward.
  auto sent = x.alice->outbound_when(s(in[0].at("customer").at("id")), held, "sent", 0, 5s);
  CHECK(sent.at("send").at("attempts").as_int64() == 1);  // the pause spent none
  CHECK(x.fake.post_requests() == 2);
  REQUIRE(x.fake.posted().size() == 1);
  CHECK(x.fake.posted()[0].text == "It ships today.");
  x.d.stop();
  CHECK(agents.lines_with("[x:x] the account's pause ended early: 1 held replies are due now")
            .size() == 1);
}

TEST_CASE(
    "x: a reload that changes nothing the pause was learned under (nothing at all, another "
    "account's token, the account's bearer token, the same user's re-issued token) keeps the "
    "24-hour pause") {
  LogCapture social("social");
  XReplies x;
  FakeX other{"77"};
  other.start();
  config::X x2 = other.replying_account();
  x2.name = "x2";
  x.more.push_back(x2);
  auto in = x.start(2);
  const std::int64_t reset = reset_in(5s);
  x.fake.daily_cap_next_posts(1, "user", std::to_string(reset));
  std::string first = x.alice->reply(s(in[0].at("id")), "It ships today.");
  x.with_error(in[0], first);
  REQUIRE(x.fake.post_requests() == 1);

  x.reload([](config::Config&) {});
  x.reload([](config::Config& c) { c.channels.x.at(1).user_context = another_user(); });
  x.fake.set_credentials("x-rotated-bearer", FakeX::user_context());
  x.reload([](config::Config& c) { c.channels.x.at(0).bearer_token = "x-rotated-bearer"; });
  x.fake.set_credentials("x-rotated-bearer", reissued());
  x.reload([](config::Config& c) { c.channels.x.at(0).user_context = reissued(); });
  std::string second = x.alice->reply(s(in[1].at("id")), "Your refund is on its way.");
  auto waiting = x.with_error(in[1], second);
  CHECK(s(waiting.at("send").at("error")).find("replies wait until") != std::string::npos);
  while (now_ms() < reset * 1000 - 300) {
    std::this_thread::sleep_for(100ms);
    REQUIRE(x.fake.post_requests() == 1);  // neither reply asked X before the reset
  }
  x.alice->outbound_when(s(in[0].at("customer").at("id")), first, "sent", 1, 8s);
  x.alice->outbound_when(s(in[1].at("customer").at("id")), second, "sent", 1, 8s);
  CHECK(x.fake.posted().size() == 2);
  CHECK(other.post_requests() == 0);
  x.d.stop();
  CHECK(social.lines_with("is over").empty());
}

TEST_CASE(
    "x: the app's 24-hour pause follows the consumer key: another user's access token keeps it, "
    "another app's keys end it") {
  LogCapture social("social");
  XReplies x;
  auto in = x.start(2);
  x.fake.daily_cap_next_posts(1, "app", std::to_string(reset_in(60s)));
  std::string first = x.alice->reply(s(in[0].at("id")), "It ships today.");
  auto pending = x.with_error(in[0], first);
  CHECK(s(pending.at("send").at("error")).find("daily posting limit reached (app)") !=
        std::string::npos);

  // Another user of the same app: the app's posts are still counted together.
  x.fake.set_credentials("x-token", another_user());
  x.reload([](config::Config& c) { c.channels.x.at(0).user_context = another_user(); });
  std::string second = x.alice->reply(s(in[1].at("id")), "Your refund is on its way.");
  auto held = x.with_error(in[1], second);
  CHECK(s(held.at("send").at("error")).find("replies wait until") != std::string::npos);
  std::this_thread::sleep_for(1500ms);
  REQUIRE(x.fake.post_requests() == 1);

  // Another app (its own consumer key, and the user's access token for it).
  config::XUserContext app = another_user();
  app.consumer_key = "anotherAppConsumerKey0000";
  app.consumer_secret = "another app's secret";
  x.fake.set_credentials("x-token", app);
  x.reload([&app](config::Config& c) { c.channels.x.at(0).user_context = app; });
  x.alice->outbound_when(s(in[0].at("customer").at("id")), first, "sent", 1, 5s);
  x.alice->outbound_when(s(in[1].at("customer").at("id")), second, "sent", 1, 5s);
  CHECK(x.fake.post_requests() == 3);
  CHECK(x.fake.posted().size() == 2);
  CHECK(x.fake.auth_refusals().empty());
  x.d.stop();
  auto over = social.lines_with("is over");
  REQUIRE(over.size() == 1);
  CHECK(over[0].find("changed the account's consumer key: the pause for the daily posting limit "
                     "(app) is over") != std::string::npos);
}

TEST_CASE(
    "x: a 24-hour limit answered after a reload to a request sent before it is the old user's: "
    "nothing is paused, and the reply goes again with the new user's keys a second later") {
  LogCapture social("social");
  XReplies x;
  auto in = x.start(2);
  x.fake.daily_cap_next_posts(1, "user", std::to_string(reset_in(60s)));
  x.fake.hold_posts(true);
  std::string first = x.alice->reply(s(in[0].at("id")), "It ships today.");
  REQUIRE(eventually([&] { return x.fake.post_held(); }));  // out, with the old user's keys
  x.reload([](config::Config& c) { c.channels.x.at(0).user_context = another_user(); });
  x.fake.hold_posts(false);  // the old user's limit answers it
  REQUIRE(eventually([&] { return x.fake.post_requests() == 1; }));
  x.fake.set_credentials("x-token", another_user());
  auto sent = x.alice->outbound_when(s(in[0].at("customer").at("id")), first, "sent", 1, 5s);
  CHECK(sent.at("send").at("error").is_null());
  std::string second = x.alice->reply(s(in[1].at("id")), "Your refund is on its way.");
  x.alice->outbound_when(s(in[1].at("customer").at("id")), second, "sent", 1, 3s);
  CHECK(x.fake.post_requests() == 3);
  CHECK(x.fake.posted().size() == 2);
  CHECK(x.fake.auth_refusals().empty());
  x.d.stop();
  CHECK(social.lines_with("replies wait until").empty());
  CHECK(social.lines_with("for the credentials a reload has replaced since the request went out")
            .size() == 1);
}

TEST_CASE(
    "x dm: a DM reply refused for the user's 24-hour DM limit waits pending until the reset "
    "hours away with its attempts unspent, without asking X again, and posts are not held") {
  LogCapture social("social");
  XReplies x;
  x.fake.add_dm("7", "pat", "where is my order? (private)");
  x.start(0);
  auto dm = x.alice->claim("general");
  REQUIRE(s(dm.at("kind")) == "direct_message");
  const std::int64_t reset = reset_in(20h);  // past the send loop's 8 attempts of 1 h at most
  const std::string until = format_rfc3339(reset * 1000);
  x.fake.daily_cap_next_dm_posts(1, "user", std::to_string(reset));
  std::string out_id = x.alice->reply(s(dm.at("id")), "It ships today.");

  auto pending = x.with_error(dm, out_id);
  CHECK(s(pending.at("send").at("state")) == "pending");
  const std::string why = s(pending.at("send").at("error"));
  CHECK(why.find("Too Many Requests") != std::string::npos);
  CHECK(why.find("daily direct message limit reached (user): replies wait until " + until) !=
        std::string::npos);
  CHECK(pending.at("send").at("attempts").as_int64() == 0);
  const std::string next = s(pending.at("send").at("next_attempt_at"));
  CHECK(next >= until.substr(0, until.size() - 1));
  CHECK(next <= format_rfc3339((reset + 2) * 1000));
  CHECK(x.fake.dm_post_requests() == 1);
  std::this_thread::sleep_for(1500ms);
  CHECK(x.fake.dm_post_requests() == 1);  // not asked again

  // The posts' limit is another: a mention's reply goes out meanwhile.
  x.fake.add_mention("8", "ann", "@support hello");
  auto mention = x.alice->claim("general");
  REQUIRE(s(mention.at("kind")) == "mention");
  std::string posted = x.alice->reply(s(mention.at("id")), "Hello!");
  x.alice->outbound_when(s(mention.at("customer").at("id")), posted, "sent");
  CHECK(x.fake.posted().size() == 1);
  x.d.stop();
  CHECK(social.lines_with("daily direct message limit reached").size() == 1);
}
