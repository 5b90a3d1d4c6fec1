// Telegram: getUpdates parsing (private, group mention, reply to bot, ignored), offsets, 429,
// sendMessage body.
#include <string>

#include <doctest/doctest.h>

#include "channels/social/telegram.hpp"

using namespace sb::social;

namespace {

sb::config::Telegram tg_cfg() {
  sb::config::Telegram cfg;
  cfg.name = "tg";
  cfg.bot_token = "123456:ABC-DEF";
  return cfg;
}

const TelegramBot kBot{5000000001, "SupportBot"};

// Update objects as in core.telegram.org/bots/api#update and #message.
const std::string kUpdates = R"({"ok":true,"result":[
  {"update_id":900001,"message":{"message_id":11,
    "from":{"id":111,"is_bot":false,"first_name":"Ann","last_name":"Lee","username":"annlee","language_code":"en"},
    "chat":{"id":111,"first_name":"Ann","last_name":"Lee","username":"annlee","type":"private"},
    "date":1700000000,"text":"Hello, my order is late"}},
  {"update_id":900002,"message":{"message_id":12,
    "from":{"id":222,"is_bot":false,"first_name":"Bob","username":"bob"},
    "chat":{"id":-1001234567890,"title":"Customers","type":"supergroup"},
    "date":1700000001,"text":"just chatting"}},
  {"update_id":900003,"message":{"message_id":13,
    "from":{"id":222,"is_bot":false,"first_name":"Bob","username":"bob"},
    "chat":{"id":-1001234567890,"title":"Customers","type":"supergroup"},
    "date":1700000002,"text":"\ud83d\ude00 @supportbot can you help?",
    "entities":[{"offset":3,"length":11,"type":"mention"}]}},
  {"update_id":900004,"message":{"message_id":14,
    "from":{"id":333,"is_bot":false,"first_name":"Cy"},
    "chat":{"id":-42,"title":"Old group","type":"group"},
    "date":1700000003,"text":"thanks!",
    "reply_to_message":{"message_id":10,"from":{"id":5000000001,"is_bot":true,"first_name":"Support","username":"SupportBot"},
      "chat":{"id":-42,"type":"group"},"date":1699999999,"text":"How can I help?"}}},
  {"update_id":900005,"edited_message":{"message_id":11,
    "from":{"id":111,"is_bot":false,"first_name":"Ann"},
    "chat":{"id":111,"type":"private"},"date":1700000000,"edit_date":1700000100,"text":"edited"}},
  {"update_id":900006,"message":{"message_id":15,
    "from":{"id":222,"is_bot":false,"first_name":"Bob"},
    "chat":{"id":-1001234567890,"type":"supergroup"},"date":1700000004,
    "text":"@otherbot hello","entities":[{"offset":0,"length":9,"type":"mention"}]}},
  {"update_id":900007,"message":{"message_id":16,
    "from":{"id":111,"is_bot":false,"first_name":"Ann","username":"annlee"},
    "chat":{"id":111,"type":"private"},"date":1700000005,
    "photo":[{"file_id":"small","file_size":100,"width":90,"height":90},
             {"file_id":"AgACAgQAAxkBAAIB","file_size":54321,"width":800,"height":600}],
    "caption":"the damage"}}
]})";

}  // namespace

TEST_CASE("Telegram getUpdates: private DMs, group mentions, replies to the bot") {
  auto u = parse_telegram_updates(tg_cfg(), kBot, kUpdates);
  REQUIRE(u.ok);
  CHECK(u.next_offset == 900008);  // ignored updates advance the cursor too
  REQUIRE(u.items.size() == 4);

  const auto& dm = u.items[0];
  CHECK(dm.channel == "telegram");
  CHECK(dm.kind == "direct_message");
  CHECK(dm.external_id == "5000000001:111:11");  // the bot's id first
  REQUIRE(dm.from);
  CHECK(dm.from->type == "telegram");
  CHECK(dm.from->value == "111");
  CHECK(dm.from->handle == "annlee");
  CHECK(dm.from->name == "Ann Lee");
  CHECK(dm.text == "Hello, my order is late");
  CHECK(dm.occurred_at_ms == 1700000000000);
  CHECK(dm.thread_record == std::vector<std::string>{"telegram:tg:chat:111"});

  const auto& mention = u.items[1];  // the emoji before it is two UTF-16 units
  CHECK(mention.kind == "mention");
  CHECK(mention.external_id == "5000000001:-1001234567890:13");
  CHECK(mention.thread_lookup ==
        std::vector<std::string>{"telegram:tg:chat:-1001234567890:user:222"});

  const auto& reply = u.items[2];
  CHECK(reply.kind == "mention");
  CHECK(reply.external_id == "5000000001:-42:14");
  CHECK(reply.in_reply_to == "5000000001:-42:10");

  const auto& photo = u.items[3];
  CHECK(photo.text == "[photo] the damage");
  REQUIRE(photo.attachments.size() == 1);
  CHECK(photo.attachments[0].filename == "AgACAgQAAxkBAAIB");
  CHECK(photo.attachments[0].size == 54321);
}

TEST_CASE("Telegram: empty result keeps the cursor, 429 carries retry_after") {
  auto empty = parse_telegram_updates(tg_cfg(), kBot, R"({"ok":true,"result":[]})");
  CHECK(empty.ok);
  CHECK_FALSE(empty.next_offset);

  auto limited = parse_telegram_updates(
      tg_cfg(), kBot,
      R"({"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}})");
  CHECK_FALSE(limited.ok);
  REQUIRE(limited.error);
  CHECK(limited.error->error_code == 429);
  CHECK(limited.error->retry_after == std::chrono::seconds(7));

  auto conflict = parse_telegram_error(
      R"({"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request"})");
  REQUIRE(conflict);
  CHECK(conflict->error_code == 409);
  CHECK_FALSE(conflict->retry_after);
}

TEST_CASE("Telegram requests: getMe, getUpdates offset, sendMessage threaded") {
  auto cfg = tg_cfg();
  auto me = parse_telegram_get_me(
      R"({"ok":true,"result":{"id":5000000001,"is_bot":true,"first_name":"Support","username":"SupportBot"}})");
  REQUIRE(me);
  CHECK(me->id == 5000000001);
  CHECK(me->username == "SupportBot");
  CHECK(telegram_get_me(cfg).target == "/bot123456:ABC-DEF/getMe");

  auto poll = telegram_get_updates(cfg, 900008);
  CHECK(
      poll.target ==
      "/bot123456:ABC-DEF/getUpdates?timeout=25&allowed_updates=%5B%22message%22%5D&offset=900008");

  auto ref = parse_telegram_external_id("123456:-1001234567890:13");
  REQUIRE(ref);
  CHECK(ref->bot_id == 123456);
  CHECK(ref->chat_id == "-1001234567890");
  CHECK(ref->message_id == 13);
  CHECK_FALSE(parse_telegram_external_id("nope"));

  auto send = telegram_send_message(cfg, ref->chat_id, "On it!", ref->message_id);
  CHECK(send.method == "POST");
  CHECK(send.target == "/bot123456:ABC-DEF/sendMessage");
  CHECK(
      send.body ==
      R"({"chat_id":-1001234567890,"text":"On it!","reply_to_message_id":13,"allow_sending_without_reply":true})");
}

TEST_CASE("UTF-16 offsets map to UTF-8 bytes") {
  std::string s = "\xF0\x9F\x98\x80 \xC3\xA9@x";  // emoji (2 units), space, e-acute, @x
  CHECK(utf16_to_byte_offset(s, 0) == 0);
  CHECK(utf16_to_byte_offset(s, 2) == 4);
  CHECK(utf16_to_byte_offset(s, 4) == 7);
  CHECK(utf16_to_byte_offset(s, 100) == s.size());
}

TEST_CASE("Telegram: two customers mentioning the bot in one group get a conversation each") {
  // A support group: Ann and Bob both ask the bot. Threading by the chat alone would file Bob's
  // question in Ann's conversation (and under Ann as the customer).
  auto u = parse_telegram_updates(tg_cfg(), kBot, R"({"ok":true,"result":[
    {"update_id":1,"message":{"message_id":20,"from":{"id":111,"is_bot":false,"first_name":"Ann"},
      "chat":{"id":-1001234567890,"title":"Customers","type":"supergroup"},"date":1700000000,
      "text":"@SupportBot my parcel?","entities":[{"offset":0,"length":11,"type":"mention"}]}},
    {"update_id":2,"message":{"message_id":21,"from":{"id":222,"is_bot":false,"first_name":"Bob"},
      "chat":{"id":-1001234567890,"title":"Customers","type":"supergroup"},"date":1700000001,
      "text":"@SupportBot my refund?","entities":[{"offset":0,"length":11,"type":"mention"}]}},
    {"update_id":3,"message":{"message_id":22,"from":{"id":111,"is_bot":false,"first_name":"Ann"},
      "chat":{"id":-1001234567890,"title":"Customers","type":"supergroup"},"date":1700000002,
      "text":"@SupportBot any news?","entities":[{"offset":0,"length":11,"type":"mention"}]}}
  ]})");
  REQUIRE(u.items.size() == 3);
  CHECK(u.items[0].thread_lookup != u.items[1].thread_lookup);
  CHECK(u.items[0].thread_record != u.items[1].thread_record);
  CHECK(u.items[0].thread_lookup == u.items[2].thread_lookup);  // Ann's follow-up joins hers
}

TEST_CASE(
    "Telegram external_id: the bot's id, chat and message, and as stored before it had the bot") {
  CHECK(telegram_external_id(123456, "111", "11") == "123456:111:11");
  CHECK(telegram_external_id(0, "111", "11") == "111:11");  // getMe named no id
  auto old = parse_telegram_external_id("-42:14");          // stored before the bot id was added
  REQUIRE(old);
  CHECK(old->bot_id == 0);
  CHECK(old->chat_id == "-42");
  CHECK(old->message_id == 14);
  CHECK_FALSE(parse_telegram_external_id("x:-42:14"));
  CHECK_FALSE(parse_telegram_external_id("123::14"));
  CHECK_FALSE(parse_telegram_external_id("123:-42:"));
  CHECK(telegram_bot_id("123456:ABC-DEF") == 123456);
  CHECK(telegram_bot_id("not-a-token") == 0);
}

TEST_CASE("Telegram offset cursor: the offset with its bot's id, a bare offset from before") {
  CHECK(format_telegram_offset({900008, 123456}) == "900008:123456");
  auto o = parse_telegram_offset("900008:123456");
  REQUIRE(o);
  CHECK(o->offset == 900008);
  CHECK(o->bot_id == 123456);
  auto old = parse_telegram_offset("900008");
  REQUIRE(old);
  CHECK(old->offset == 900008);
  CHECK(old->bot_id == 0);  // not known: taken for the running bot's
  CHECK_FALSE(parse_telegram_offset(""));
  CHECK_FALSE(parse_telegram_offset("900008:"));
  CHECK_FALSE(parse_telegram_offset("900008 123"));
  CHECK_FALSE(parse_telegram_offset("900008:-5"));
}

TEST_CASE("Telegram: location, venue, contact, poll and dice messages get a readable text") {
  auto up = parse_telegram_updates(tg_cfg(), kBot, R"({"ok":true,"result":[
  {"update_id":1,"message":{"message_id":1,"from":{"id":111,"is_bot":false,"first_name":"Ann"},
    "chat":{"id":111,"type":"private"},"date":1700000000,
    "location":{"latitude":52.520008,"longitude":13.404954}}},
  {"update_id":2,"message":{"message_id":2,"from":{"id":111,"is_bot":false,"first_name":"Ann"},
    "chat":{"id":111,"type":"private"},"date":1700000001,
    "location":{"latitude":48.8584,"longitude":2.2945},
    "venue":{"location":{"latitude":48.8584,"longitude":2.2945},"title":"Eiffel Tower",
      "address":"Champ de Mars, Paris"}}},
  {"update_id":3,"message":{"message_id":3,"from":{"id":111,"is_bot":false,"first_name":"Ann"},
    "chat":{"id":111,"type":"private"},"date":1700000002,
    "contact":{"phone_number":"+4915112345678","first_name":"Max","last_name":"Muster"}}},
  {"update_id":4,"message":{"message_id":4,"from":{"id":111,"is_bot":false,"first_name":"Ann"},
    "chat":{"id":111,"type":"private"},"date":1700000003,
    "poll":{"id":"p1","question":"Which size?","options":[{"text":"M","voter_count":0},
      {"text":"L","voter_count":0}],"total_voter_count":0,"is_closed":false,"is_anonymous":true,
      "type":"regular","allows_multiple_answers":false}}},
  {"update_id":5,"message":{"message_id":5,"from":{"id":111,"is_bot":false,"first_name":"Ann"},
    "chat":{"id":111,"type":"private"},"date":1700000004,"dice":{"emoji":"\ud83c\udfb2","value":4}}}
]})");
  REQUIRE(up.ok);
  REQUIRE(up.items.size() == 5);
  CHECK(up.items[0].text == "[location] (52.520008, 13.404954)");
  CHECK(up.items[1].text == "[venue] Eiffel Tower Champ de Mars, Paris (48.858400, 2.294500)");
  CHECK(up.items[2].text == "[contact] Max Muster +4915112345678");
  CHECK(up.items[3].text == "[poll] Which size?: M / L");
  CHECK(up.items[4].text == "[dice] \xF0\x9F\x8E\xB2 4");
}

TEST_CASE("Telegram: a group's upgrade to a supergroup keeps its customers' conversations") {
  // The 400 a send to the old group gets (ResponseParameters.migrate_to_chat_id).
  auto refused = parse_telegram_error(
      R"({"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001987654321}})");
  REQUIRE(refused);
  CHECK(refused->migrate_to_chat_id == "-1001987654321");
  CHECK_FALSE(refused->retry_after);

  // The service messages: migrate_to_chat_id in the old group, migrate_from_chat_id in the new
  // supergroup. Neither is stored.
  const std::string upgrade = R"({"ok":true,"result":[
  {"update_id":1,"message":{"message_id":20,"from":{"id":333,"is_bot":false,"first_name":"Cy"},
    "chat":{"id":-42,"title":"Old group","type":"group"},"date":1700000000,
    "migrate_to_chat_id":-1001987654321}},
  {"update_id":2,"message":{"message_id":1,"from":{"id":1087968824,"is_bot":true,"first_name":"Group"},
    "sender_chat":{"id":-1001987654321,"type":"supergroup"},
    "chat":{"id":-1001987654321,"title":"Old group","type":"supergroup"},"date":1700000000,
    "migrate_from_chat_id":-42}},
  {"update_id":3,"message":{"message_id":2,"from":{"id":333,"is_bot":false,"first_name":"Cy"},
    "chat":{"id":-1001987654321,"title":"Old group","type":"supergroup"},"date":1700000001,
    "text":"@SupportBot still there?","entities":[{"offset":0,"length":11,"type":"mention"}]}}
]})";
  auto before = parse_telegram_updates(tg_cfg(), kBot, upgrade);
  REQUIRE(before.ok);
  CHECK(before.next_offset == 4);
  REQUIRE(before.migrations.size() == 2);
  for (const auto& m : before.migrations) {
    CHECK(m.from_chat_id == "-42");
    CHECK(m.to_chat_id == "-1001987654321");
  }
  REQUIRE(before.items.size() == 1);
  const std::vector<std::string> only_new{"telegram:tg:chat:-1001987654321:user:333"};
  CHECK(before.items[0].thread_lookup == only_new);

  // Known: the supergroup's message looks up the customer's conversation of the old group too,
  // and records the new key.
  auto after = parse_telegram_updates(tg_cfg(), kBot, upgrade, {{"-1001987654321", "-42"}});
  REQUIRE(after.items.size() == 1);
  const std::vector<std::string> both{"telegram:tg:chat:-1001987654321:user:333",
                                      "telegram:tg:chat:-42:user:333"};
  CHECK(after.items[0].thread_lookup == both);
  CHECK(after.items[0].thread_record == only_new);
}
