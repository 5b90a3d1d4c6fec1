// X: mentions pages, backlog gathering, errors (429 reset, usage cap), reply body.
#include <map>
#include <string>

#include <doctest/doctest.h>

#include "channels/social/x.hpp"

using namespace sb::social;

namespace {

sb::config::X x_cfg() {
  sb::config::X cfg;
  cfg.name = "x";
  cfg.user_id = "2244994945";
  cfg.bearer_token = "x-token";
  return cfg;
}

// The shape of the "GET /2/users/:id/mentions" response example (data, includes.users, meta).
const std::string kPage1 = R"({
  "data": [
    {"author_id": "2244994945", "conversation_id": "1375152449595338752",
     "created_at": "2021-03-25T18:44:06.000Z", "edit_history_tweet_ids": ["1375152598945312768"],
     "id": "1375152598945312768", "in_reply_to_user_id": "2244994945",
     "referenced_tweets": [{"type": "replied_to", "id": "1375152449595338752"}],
     "text": "@TwitterDev Thank you for the feedback!"},
    {"author_id": "199566737", "conversation_id": "1375152449595338752",
     "created_at": "2021-03-25T18:43:30.000Z", "edit_history_tweet_ids": ["1375152449595338752"],
     "id": "1375152449595338752", "text": "@TwitterDev please help with my order"}
  ],
  "includes": {"users": [
    {"id": "2244994945", "name": "Twitter Dev", "username": "TwitterDev"},
    {"id": "199566737", "name": "Ann Lee", "username": "AnnLee"}
  ]},
  "meta": {"newest_id": "1375152598945312768", "oldest_id": "1375152449595338752",
           "result_count": 2, "next_token": "7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i"}
})";

const std::string kPage2 = R"({
  "data": [{"author_id": "199566737", "conversation_id": "1375000000000000000",
            "created_at": "2021-03-24T10:00:00.000Z", "id": "1375000000000000000",
            "text": "@TwitterDev first"}],
  "includes": {"users": [{"id": "199566737", "name": "Ann Lee", "username": "AnnLee"}]},
  "meta": {"newest_id": "1375000000000000000", "oldest_id": "1375000000000000000",
           "result_count": 1, "previous_token": "77qp8"}
})";

HeaderLookup hdrs(std::map<std::string, std::string> h) {
  return [h = std::move(h)](std::string_view n) -> std::optional<std::string> {
    auto it = h.find(std::string(n));
    return it == h.end() ? std::nullopt : std::optional(it->second);
  };
}

}  // namespace

TEST_CASE("X mentions page: identities, handles, conversation threads, pagination") {
  auto page = parse_x_mentions(x_cfg(), kPage1);
  REQUIRE(page.ok);
  CHECK(page.result_count == 2);
  CHECK(page.next_token == "7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i");
  CHECK(page.newest_id == "1375152598945312768");
  REQUIRE(page.items.size() == 1);  // the newer one is @TwitterDev's own post
  const auto& older = page.items[0];
  CHECK(older.external_id == "1375152449595338752");
  CHECK(older.kind == "mention");
  CHECK(older.channel == "x");
  REQUIRE(older.from);
  CHECK(older.from->type == "x");
  CHECK(older.from->value == "199566737");
  CHECK(older.from->handle == "AnnLee");
  CHECK(older.from->name == "Ann Lee");
  CHECK(older.thread_record == std::vector<std::string>{"x:x:conv:1375152449595338752:199566737"});
  CHECK(older.occurred_at_ms == 1616697810000);

  auto empty = parse_x_mentions(x_cfg(), R"({"meta":{"result_count":0}})");
  CHECK(empty.ok);
  CHECK(empty.items.empty());
  CHECK_FALSE(parse_x_mentions(x_cfg(), "[]").ok);
}

TEST_CASE("X pager: follows next_token, hands the backlog over oldest first with one cursor") {
  auto cfg = x_cfg();
  XMentionsPager pager("1374000000000000000");
  CHECK(pager.next_target(cfg) ==
        "/2/users/2244994945/mentions?max_results=100&expansions=author_id&tweet.fields="
        "created_at,conversation_id,in_reply_to_user_id,referenced_tweets,note_tweet,"
        "edit_history_tweet_ids"
        "&since_id=1374000000000000000");
  CHECK_FALSE(pager.add(parse_x_mentions(cfg, kPage1)));
  CHECK(pager.next_target(cfg).find(
            "&pagination_token=7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i") !=
        std::string::npos);
  CHECK(pager.add(parse_x_mentions(cfg, kPage2)));
  CHECK(pager.cursor() == "1375152598945312768");
  auto items = pager.take_items();
  REQUIRE(items.size() == 2);  // and not our own 1375152598945312768, which the cursor covers
  CHECK(items[0].external_id == "1375000000000000000");
  CHECK(items[1].external_id == "1375152449595338752");

  // Nothing new: the cursor stays.
  XMentionsPager idle("1375152598945312768");
  CHECK(idle.add(parse_x_mentions(cfg, R"({"meta":{"result_count":0}})")));
  CHECK_FALSE(idle.cursor());
}

TEST_CASE("X pager: a first start's look-back asks start_time and stops at the first older post") {
  auto cfg = x_cfg();
  // 2021-03-25T00:00:00.500Z: X takes whole seconds, rounded down to keep the first one in.
  XMentionsPager pager("", 800, 1616630400500);
  CHECK(pager.next_target(cfg).find("&start_time=2021-03-25T00:00:00Z") != std::string::npos);
  CHECK(pager.next_target(cfg).find("since_id") == std::string::npos);
  CHECK_FALSE(pager.add(parse_x_mentions(cfg, kPage1)));  // 2021-03-25: inside
  // kPage2 is from 2021-03-24, before the look-back (a server that ignored start_time).
  CHECK(pager.add(parse_x_mentions(cfg, kPage2)));
  CHECK(pager.cursor() == "1375152598945312768");
  auto items = pager.take_items();
  REQUIRE(items.size() == 1);
  CHECK(items[0].external_id == "1375152449595338752");

  // With a cursor the look-back is moot: since_id only.
  XMentionsPager later("1375152598945312768", 800, 1616630400500);
  CHECK(later.next_target(cfg).find("start_time") == std::string::npos);
}

TEST_CASE("X errors: 429 with reset, usage cap, unauthorized, 5xx") {
  auto limited = classify_x_response(
      429,
      R"({"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429})",
      hdrs({{"x-rate-limit-reset", "1700000000"}, {"x-rate-limit-remaining", "0"}}));
  CHECK(limited.kind == XError::Kind::rate_limited);
  CHECK(limited.retryable());
  REQUIRE(limited.reset);
  CHECK(
      std::chrono::duration_cast<std::chrono::seconds>(limited.reset->time_since_epoch()).count() ==
      1700000000);

  auto capped = classify_x_response(
      429,
      R"({"account_id":1234,"product_name":"standard-basic","title":"UsageCapExceeded","period":"Monthly","scope":"Product","detail":"Usage cap exceeded: Monthly product cap","type":"https://api.twitter.com/2/problems/usage-capped"})",
      hdrs({}));
  CHECK(capped.kind == XError::Kind::usage_capped);
  CHECK_FALSE(capped.retryable());
  CHECK(capped.detail == "Usage cap exceeded: Monthly product cap");

  auto unauthorized = classify_x_response(
      401, R"({"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"})",
      hdrs({}));
  CHECK(unauthorized.kind == XError::Kind::unauthorized);
  CHECK_FALSE(unauthorized.retryable());
  CHECK(classify_x_response(503, "", hdrs({})).retryable());
  CHECK(classify_x_response(200, "{}", hdrs({})).kind == XError::Kind::none);
}

TEST_CASE("X errors: a 429 with a 24-hour posting limit at 0 names the limit and its reset") {
  constexpr const char* k429 =
      R"({"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429})";
  auto secs = [](const std::optional<sb::social::Clock::time_point>& t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t->time_since_epoch()).count();
  };
  // The user's day used up while the 15-minute window has room.
  auto user = classify_x_response(429, k429,
                                  hdrs({{"x-rate-limit-remaining", "99"},
                                        {"x-rate-limit-reset", "1700000900"},
                                        {"x-user-limit-24hour-limit", "100"},
                                        {"x-user-limit-24hour-remaining", "0"},
                                        {"x-user-limit-24hour-reset", "1700050000"},
                                        {"x-app-limit-24hour-limit", "1667"},
                                        {"x-app-limit-24hour-remaining", "1500"},
                                        {"x-app-limit-24hour-reset", "1700060000"}}));
  CHECK(user.kind == XError::Kind::rate_limited);
  REQUIRE(user.daily_cap);
  CHECK(user.daily_cap->scope == "user");
  REQUIRE(user.daily_cap->reset);
  CHECK(secs(user.daily_cap->reset) == 1700050000);
  CHECK(secs(user.reset) == 1700000900);  // the window's reset stays what it was

  auto app = classify_x_response(
      429, k429,
      hdrs({{"x-app-limit-24hour-remaining", "0"}, {"x-app-limit-24hour-reset", "1700060000"}}));
  REQUIRE(app.daily_cap);
  CHECK(app.daily_cap->scope == "app");
  CHECK(secs(app.daily_cap->reset) == 1700060000);

  // Both used up: the later reset.
  auto both = classify_x_response(429, k429,
                                  hdrs({{"x-user-limit-24hour-remaining", "0"},
                                        {"x-user-limit-24hour-reset", "1700070000"},
                                        {"x-app-limit-24hour-remaining", "0"},
                                        {"x-app-limit-24hour-reset", "1700060000"}}));
  REQUIRE(both.daily_cap);
  CHECK(both.daily_cap->scope == "user");
  CHECK(secs(both.daily_cap->reset) == 1700070000);

  // Room left, or no 24-hour headers: the window's 429.
  CHECK_FALSE(classify_x_response(429, k429,
                                  hdrs({{"x-user-limit-24hour-remaining", "3"},
                                        {"x-user-limit-24hour-reset", "1700050000"}}))
                  .daily_cap);
  CHECK_FALSE(classify_x_response(429, k429, hdrs({{"x-rate-limit-remaining", "0"}})).daily_cap);
  // Only a 429 is a cap.
  CHECK_FALSE(
      classify_x_response(503, "", hdrs({{"x-user-limit-24hour-remaining", "0"}})).daily_cap);

  // A reset that is no time (garbage, milliseconds sent as seconds): a cap without a reset.
  for (const char* bad : {"tomorrow", "1700050000000", ""}) {
    auto e = classify_x_response(
        429, k429,
        hdrs({{"x-user-limit-24hour-remaining", "0"}, {"x-user-limit-24hour-reset", bad}}));
    REQUIRE(e.daily_cap);
    CHECK_FALSE(e.daily_cap->reset);
    CHECK(e.daily_cap->reset_header == "x-user-limit-24hour-reset \"" + std::string(bad) + "\"");
  }
}

TEST_CASE("X errors: a 403 for duplicate content is told apart from other 403s by its detail") {
  auto duplicate = classify_x_response(
      403,
      R"({"detail":"You are not allowed to create a Tweet with duplicate content.","type":"about:blank","title":"Forbidden","status":403})",
      hdrs({}));
  CHECK(duplicate.duplicate_content);
  CHECK_FALSE(duplicate.retryable());
  auto forbidden = classify_x_response(
      403,
      R"({"detail":"You are not permitted to perform this action.","type":"about:blank","title":"Forbidden","status":403})",
      hdrs({}));
  CHECK_FALSE(forbidden.duplicate_content);
  CHECK_FALSE(classify_x_response(403, "", hdrs({})).duplicate_content);
}

TEST_CASE("X reply body is threaded") {
  auto r = x_reply(x_cfg(), "Sorry to hear that, we're on it", "1375152449595338752");
  CHECK(r.method == "POST");
  CHECK(r.target == "/2/tweets");
  CHECK(
      r.body ==
      R"({"text":"Sorry to hear that, we're on it","reply":{"in_reply_to_tweet_id":"1375152449595338752"}})");
  CHECK(r.headers[0].second == "Bearer x-token");
  CHECK(parse_x_tweet_id(R"({"data":{"id":"1445880548472328192","text":"hi"}})") ==
        "1445880548472328192");
}

TEST_CASE("X mentions: our own posts in the mentions timeline are not customer mentions") {
  // kPage1 is the documented example: its newest tweet is @TwitterDev's own reply in its
  // thread ("@TwitterDev Thank you for the feedback!", author_id = the polled user id).
  auto page = parse_x_mentions(x_cfg(), kPage1);
  REQUIRE(page.ok);
  REQUIRE(page.items.size() == 1);
  CHECK(page.items[0].external_id == "1375152449595338752");
  CHECK(page.items[0].from->value == "199566737");
  // The cursor still moves past our own post: it is not fetched again.
  CHECK(page.newest_id == "1375152598945312768");
  XMentionsPager pager("1374000000000000000");
  CHECK(pager.add(parse_x_mentions(x_cfg(), kPage2)));
  CHECK(pager.cursor() == "1375000000000000000");
}

TEST_CASE("X mentions: text comes with &amp &lt &gt entities and is stored as written") {
  auto page = parse_x_mentions(x_cfg(), R"({
    "data": [{"author_id": "199566737", "id": "1375152449595338999",
              "text": "@TwitterDev Q&amp;A: is 3 &lt; 4 &amp;&amp; 5 &gt; 4? I typed &amp;lt; literally"}],
    "includes": {"users": [{"id": "199566737", "name": "Ann Lee", "username": "AnnLee"}]},
    "meta": {"newest_id": "1375152449595338999", "oldest_id": "1375152449595338999",
             "result_count": 1}})");
  REQUIRE(page.items.size() == 1);
  CHECK(page.items[0].text == "@TwitterDev Q&A: is 3 < 4 && 5 > 4? I typed &lt; literally");
}

TEST_CASE("X mentions: a long post (note_tweet) is stored whole, not the truncated text") {
  std::string full(400, 'x');
  full = "@TwitterDev " + full + " the end";
  auto page = parse_x_mentions(x_cfg(), R"({
    "data": [{"author_id": "199566737", "id": "1375152449595338999",
              "text": "@TwitterDev xxxxxxxxxx… https://t.co/abc",
              "note_tweet": {"text": ")" + full +
                                            R"("}}],
    "meta": {"newest_id": "1375152449595338999", "result_count": 1}})");
  REQUIRE(page.items.size() == 1);
  CHECK(page.items[0].text == full);
  CHECK(x_mentions_target(x_cfg(), "", "").find("note_tweet") != std::string::npos);
}

TEST_CASE("X mentions: customers replying in one public thread get a conversation each") {
  // A brand's post draws replies from many customers: all share its conversation_id. Threading by
  // conversation_id alone would put Bob's complaint into Ann's conversation.
  auto page = parse_x_mentions(x_cfg(), R"({
    "data": [
      {"author_id": "199566737", "conversation_id": "1375000000000000000",
       "id": "1375000000000000001", "text": "@TwitterDev my order is late"},
      {"author_id": "783214", "conversation_id": "1375000000000000000",
       "id": "1375000000000000002", "text": "@TwitterDev same here, and my refund?"},
      {"author_id": "199566737", "conversation_id": "1375000000000000000",
       "id": "1375000000000000003", "text": "@TwitterDev any news?",
       "referenced_tweets": [{"type": "replied_to", "id": "1375000000000000001"}]}],
    "meta": {"newest_id": "1375000000000000003", "result_count": 3}})");
  REQUIRE(page.items.size() == 3);
  CHECK(page.items[0].thread_lookup != page.items[1].thread_lookup);
  CHECK(page.items[0].thread_record != page.items[1].thread_record);
  CHECK(page.items[0].thread_lookup == page.items[2].thread_lookup);
  CHECK(page.items[2].in_reply_to == "1375000000000000001");
}

// The shape of docs.x.com's GET /2/dm_events examples (data newest first, includes, meta).
const std::string kDmPage = R"({
  "data": [
    {"id": "1582838499983564806", "event_type": "MessageCreate", "text": "Hi & <thanks>",
     "sender_id": "944480690", "dm_conversation_id": "944480690-2244994945",
     "created_at": "2022-10-19T20:58:00.000Z",
     "attachments": {"media_keys": ["3_1582838499000000000"]}},
    {"id": "1582838400000000000", "event_type": "MessageCreate", "text": "How can we help?",
     "sender_id": "2244994945", "dm_conversation_id": "944480690-2244994945",
     "created_at": "2022-10-19T20:57:00.000Z"},
    {"id": "1582835469712138240", "event_type": "ParticipantsJoin",
     "participant_ids": ["944480690"], "sender_id": "17200003",
     "dm_conversation_id": "1578398451921985538", "created_at": "2022-10-19T20:45:58.000Z"},
    {"id": "1582835000000000000", "event_type": "MessageCreate", "text": "Hi everyone.",
     "sender_id": "17200003", "dm_conversation_id": "1578398451921985538",
     "created_at": "2022-10-19T20:40:00.000Z"}],
  "includes": {
    "users": [{"id": "944480690", "name": "Pat Lee", "username": "patlee"}],
    "media": [{"media_key": "3_1582838499000000000", "type": "photo",
               "url": "https://pbs.twimg.com/media/Ff0abc.jpg"}]},
  "meta": {"result_count": 4, "next_token": "18LAA581J5II7LA00C00ZZZZ"}})";

TEST_CASE("X dm_events page: customers' messages only, own and join events kept for the cursor") {
  auto page = parse_x_dm_events(x_cfg(), kDmPage);
  REQUIRE(page.ok);
  CHECK(page.next_token == "18LAA581J5II7LA00C00ZZZZ");
  REQUIRE(page.events.size() == 4);
  CHECK_FALSE(page.events[1].in);  // the account's own
  CHECK_FALSE(page.events[2].in);  // not a message
  REQUIRE(page.events[0].in);
  const sb::Inbound& dm = *page.events[0].in;
  CHECK(dm.kind == "direct_message");
  CHECK(dm.external_id == "dm:1582838499983564806");
  CHECK(dm.from->value == "944480690");
  CHECK(dm.from->handle == "patlee");
  CHECK(dm.from->name == "Pat Lee");
  CHECK(dm.text == "Hi & <thanks>");
  CHECK(dm.occurred_at_ms == 1666213080000);
  CHECK(dm.thread_lookup == std::vector<std::string>{"x:x:dm:944480690-2244994945"});
  CHECK(dm.flags == std::vector<std::string>{"dm_conversation_id:944480690-2244994945"});
  REQUIRE(dm.attachments.size() == 1);
  CHECK(dm.attachments[0].url == "https://pbs.twimg.com/media/Ff0abc.jpg");
  CHECK(dm.attachments[0].content_type == "image/*");
  REQUIRE(page.events[3].in);  // a group conversation: its own thread
  CHECK(page.events[3].in->thread_record == std::vector<std::string>{"x:x:dm:1578398451921985538"});
  CHECK_FALSE(parse_x_dm_events(x_cfg(), "[]").ok);
  auto empty = parse_x_dm_events(x_cfg(), R"({"meta":{"result_count":0}})");
  CHECK(empty.ok);
  CHECK(empty.events.empty());
}

TEST_CASE("X DM pager: pages down to the cursor, oldest first, the newest id as the new cursor") {
  auto cfg = x_cfg();
  XDmPager pager("1582835100000000000");
  CHECK(pager.next_target().find("pagination_token") == std::string::npos);
  CHECK(pager.next_target().find("event_types=MessageCreate") != std::string::npos);
  // The cursor falls inside the page: done, without following next_token.
  CHECK(pager.add(parse_x_dm_events(cfg, kDmPage)));
  CHECK(pager.cursor() == "1582838499983564806");
  auto items = pager.take_items();
  REQUIRE(items.size() == 1);  // the group's message is below the cursor: stored before
  CHECK(items[0].external_id == "dm:1582838499983564806");

  // Numbers, not strings: "999..." (shorter) is below "1582...".
  XDmPager deeper("999999999999999999");
  CHECK_FALSE(deeper.add(parse_x_dm_events(cfg, kDmPage)));
  CHECK(deeper.next_target().find("&pagination_token=18LAA581J5II7LA00C00ZZZZ") !=
        std::string::npos);
  CHECK(deeper.add(parse_x_dm_events(cfg, R"({"meta":{"result_count":0}})")));
  auto all = deeper.take_items();
  REQUIRE(all.size() == 2);
  CHECK(all[0].external_id == "dm:1582835000000000000");  // oldest first
  CHECK(all[1].external_id == "dm:1582838499983564806");

  // Nothing newer than the cursor: no new cursor.
  XDmPager idle("1582838499983564806");
  CHECK(idle.add(parse_x_dm_events(cfg, kDmPage)));
  CHECK_FALSE(idle.cursor());
  CHECK(idle.take_items().empty());
}

TEST_CASE("X DM pager: a first start's look-back stops at the first older event") {
  // 2022-10-19T20:50:00Z: the group's message (20:40) is before it.
  XDmPager pager("", 1666212600000);
  CHECK(pager.add(parse_x_dm_events(x_cfg(), kDmPage)));
  auto items = pager.take_items();
  REQUIRE(items.size() == 1);
  CHECK(items[0].external_id == "dm:1582838499983564806");
  CHECK(pager.cursor() == "1582838499983564806");
}

TEST_CASE("X DM reply: to the conversation, else to the sender, never with an unsafe path") {
  auto cfg = x_cfg();
  auto to_conv = x_dm_reply(cfg, "Thanks!", "944480690-2244994945", "944480690");
  REQUIRE(to_conv);
  CHECK(to_conv->method == "POST");
  CHECK(to_conv->target == "/2/dm_conversations/944480690-2244994945/messages");
  CHECK(to_conv->body == R"({"text":"Thanks!"})");
  auto to_user = x_dm_reply(cfg, "Thanks!", "", "944480690");
  REQUIRE(to_user);
  CHECK(to_user->target == "/2/dm_conversations/with/944480690/messages");
  CHECK_FALSE(x_dm_reply(cfg, "Thanks!", "../../2/tweets", "a/b"));
  CHECK(
      parse_x_dm_event_id(
          R"({"data":{"dm_conversation_id":"123123123-456456456","dm_event_id":"1146654567674912769"}})") ==
      "1146654567674912769");
}
