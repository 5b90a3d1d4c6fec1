// Meta webhooks: signatures, verification, and the documented payloads of Messenger, Instagram
// and WhatsApp replayed through handle_meta.
#include <map>
#include <string>

#include <doctest/doctest.h>

#include "channels/social/hmac.hpp"
#include "channels/social/meta.hpp"
#include "channels/social/meta_send.hpp"

using namespace sb::social;

namespace {

sb::config::Meta meta_cfg() {
  sb::config::Meta cfg;
  cfg.name = "meta";
  cfg.app_secret = "app-secret-1";
  cfg.verify_token = "verify-me";
  cfg.access_token = "page-token";
  return cfg;
}

HeaderLookup headers(std::map<std::string, std::string> h) {
  return [h = std::move(h)](std::string_view name) -> std::optional<std::string> {
    for (const auto& [k, v] : h) {
      if (k.size() == name.size() &&
          std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
            return std::tolower(static_cast<unsigned char>(a)) ==
                   std::tolower(static_cast<unsigned char>(b));
          })) {
        return v;
      }
    }
    return std::nullopt;
  };
}

MetaResult post_signed(const std::string& body, const PhoneCanonicaliser& phone = {}) {
  auto cfg = meta_cfg();
  std::string sig = "sha256=" + hmac_sha256_hex(cfg.app_secret, body);
  return handle_meta(cfg, "POST", "/webhooks/meta/meta", body,
                     headers({{"x-hub-signature-256", sig}}), phone, "US");
}

// Messenger Platform "messages" webhook reference, "Text Message" example, inside the
// object/entry envelope of the webhook events reference.
const std::string kMessengerText = R"({
  "object": "page",
  "entry": [{
    "id": "PAGE_ID",
    "time": 1458692752478,
    "messaging": [{
      "sender":{
        "id":"<PSID>"
      },
      "recipient":{
        "id":"<PAGE_ID>"
      },
      "timestamp":1458692752478,
      "message":{
        "mid":"mid.1457764197618:41d102a3e1ae206a38",
        "text":"hello, world!",
        "quick_reply": {
          "payload": "<DEVELOPER_DEFINED_PAYLOAD>"
        }
      }
    }]
  }]
})";

}  // namespace

TEST_CASE("HMAC-SHA256 matches RFC 4231 test case 2") {
  CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(constant_time_equal("abc", "abc"));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "abcd"));
}

TEST_CASE("Meta GET verification answers the challenge only for the right token") {
  auto cfg = meta_cfg();
  auto ok = handle_meta(
      cfg, "GET",
      "/webhooks/meta/meta?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444",
      "", headers({}));
  CHECK(ok.status == 200);
  CHECK(ok.response_body == "1158201444");
  CHECK(ok.content_type == "text/plain");

  auto wrong = handle_meta(
      cfg, "GET", "/webhooks/meta/meta?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
      "", headers({}));
  CHECK(wrong.status == 403);
  CHECK(wrong.response_body.find("1") != 0);

  auto no_mode =
      handle_meta(cfg, "GET", "/webhooks/meta/meta?hub.verify_token=verify-me", "", headers({}));
  CHECK(no_mode.status == 403);
}

TEST_CASE("Meta POST signature: missing 401, wrong 403, nothing parsed") {
  auto cfg = meta_cfg();
  auto missing = handle_meta(cfg, "POST", "/webhooks/meta/meta", kMessengerText, headers({}));
  CHECK(missing.status == 401);
  CHECK(missing.error_code == "missing_signature");
  CHECK(missing.response_body.find("\"code\":\"missing_signature\"") != std::string::npos);
  CHECK(missing.items.empty());

  std::string other_secret = "sha256=" + hmac_sha256_hex("other", kMessengerText);
  auto wrong = handle_meta(cfg, "POST", "/webhooks/meta/meta", kMessengerText,
                           headers({{"X-Hub-Signature-256", other_secret}}));
  CHECK(wrong.status == 403);
  CHECK(wrong.error_code == "bad_signature");
  CHECK(wrong.items.empty());

  // A body changed by one byte after signing.
  std::string sig = "sha256=" + hmac_sha256_hex(cfg.app_secret, kMessengerText);
  std::string tampered = kMessengerText;
  tampered.replace(tampered.find("hello"), 5, "HELLO");
  auto t = handle_meta(cfg, "POST", "/webhooks/meta/meta", tampered,
                       headers({{"X-Hub-Signature-256", sig}}));
  CHECK(t.status == 403);

  // No "sha256=" prefix, and the bare SHA1 header of the old scheme, are both rejected.
  auto bare = handle_meta(cfg, "POST", "/webhooks/meta/meta", kMessengerText,
                          headers({{"X-Hub-Signature-256", sig.substr(7)}}));
  CHECK(bare.status == 403);

  // Upper-case hex is the same signature.
  std::string upper = sig;
  for (std::size_t i = 7; i < upper.size(); ++i) {
    upper[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[i])));
  }
  auto u = handle_meta(cfg, "POST", "/webhooks/meta/meta", kMessengerText,
                       headers({{"X-Hub-Signature-256", upper}}));
  CHECK(u.status == 200);
}

TEST_CASE("Meta: signed invalid JSON is 400 saying what is wrong and where") {
  auto r = post_signed("{not json");
  CHECK(r.status == 400);
  CHECK(r.error_code == "invalid_json");
  CHECK(r.error_message == "the body is not valid JSON: syntax error at byte offset 1");
  auto cut = post_signed(kMessengerText.substr(0, 30));
  CHECK(cut.status == 400);
  CHECK(cut.error_message == "the body is not valid JSON: incomplete JSON at byte offset 30");
  auto list = post_signed("[]");
  CHECK(list.status == 400);
  CHECK(list.error_message == "the body must be a JSON object");
}

TEST_CASE("Messenger text message becomes a direct_message") {
  auto r = post_signed(kMessengerText);
  REQUIRE(r.status == 200);
  REQUIRE(r.items.size() == 1);
  const auto& in = r.items[0];
  CHECK(in.channel == "messenger");
  CHECK(in.account == "meta");
  CHECK(in.kind == "direct_message");
  CHECK(in.external_id == "mid.1457764197618:41d102a3e1ae206a38");
  REQUIRE(in.from);
  CHECK(in.from->type == "messenger");
  CHECK(in.from->value == "<PSID>");
  CHECK(in.text == "hello, world!");
  CHECK(in.occurred_at_ms == 1458692752478);
  CHECK(in.thread_lookup == std::vector<std::string>{"messenger:meta:<PAGE_ID>:<PSID>"});
  CHECK(in.thread_record == in.thread_lookup);
}

TEST_CASE("Messenger echoes, reads, deliveries and reactions create nothing") {
  // message_echoes, message_reads, message_deliveries, message_reactions reference examples.
  // (A postback was in this list: it is a customer's choice, stored since; see the postback
  // test below.)
  const std::string body = R"({"object":"page","entry":[{"id":"PAGE_ID","time":1,"messaging":[
    {"sender":{"id":"<PAGE_ID>"},"recipient":{"id":"<PSID>"},"timestamp":1457764197627,
     "message":{"is_echo":true,"app_id":1517776481860111,
       "metadata":"<DEVELOPER_DEFINED_METADATA_STRING>",
       "mid":"mid.1457764197618:41d102a3e1ae206a38","text":"our own reply"}},
    {"sender":{"id":"<PSID>"},"recipient":{"id":"<PAGE_ID>"},"timestamp":1458668856463,
     "read":{"watermark":1458668856253}},
    {"sender":{"id":"<PSID>"},"recipient":{"id":"<PAGE_ID>"},
     "delivery":{"mids":["mid.1458668856218:ed81099e15d3f4f233"],"watermark":1458668856253}},
    {"sender":{"id":"<PSID>"},"recipient":{"id":"<PAGE_ID>"},"timestamp":1458668856463,
     "reaction":{"reaction":"love","emoji":"\u2764\uFE0F","action":"react",
       "mid":"<MID_OF_ReactedTo_Message>"}}
  ]}]})";
  auto r = post_signed(body);
  CHECK(r.status == 200);
  CHECK(r.items.empty());
  CHECK(r.statuses.empty());
}

TEST_CASE(
    "Messenger and Instagram postbacks are direct_messages with the button's title, under their "
    "mid") {
  // messaging_postbacks reference: Get Started, a persistent menu item or a postback button;
  // Instagram ice breakers come as the same postback.
  const std::string body = R"({"object":"page","entry":[{"id":"PAGE_ID","time":1,"messaging":[
    {"sender":{"id":"PSID_1"},"recipient":{"id":"PAGE_ID"},"timestamp":1527459824000,
     "postback":{"mid":"m_POSTBACK_1","title":"Talk to a human","payload":"HUMAN",
       "referral":{"ref":"ad-7","source":"SHORT-URL","type":"OPEN_THREAD"}}}
  ]}]})";
  auto r = post_signed(body);
  REQUIRE(r.status == 200);
  REQUIRE(r.items.size() == 1);
  const auto& in = r.items[0];
  CHECK(in.channel == "messenger");
  CHECK(in.kind == "direct_message");
  CHECK(in.external_id == "m_POSTBACK_1");
  REQUIRE(in.from);
  CHECK(in.from->value == "PSID_1");
  REQUIRE(in.to.size() == 1);
  CHECK(in.to[0].value == "PAGE_ID");
  CHECK(in.text == "Talk to a human");
  CHECK(in.flags == std::vector<std::string>{"postback"});
  CHECK(in.occurred_at_ms == 1527459824000);
  CHECK(in.thread_record == std::vector<std::string>{"messenger:meta:PAGE_ID:PSID_1"});
  CHECK(r.problems.empty());

  const std::string ig = R"({"object":"instagram","entry":[{"id":"17841400000000000","time":1,
    "messaging":[{"sender":{"id":"IGSID-1"},"recipient":{"id":"17841400000000000"},
    "timestamp":1569262485349,"postback":{"mid":"aWdfIceBreaker","title":"Where is my order?",
    "payload":"ORDER_STATUS"}}]}]})";
  auto i = post_signed(ig);
  REQUIRE(i.items.size() == 1);
  CHECK(i.items[0].channel == "instagram");
  CHECK(i.items[0].external_id == "aWdfIceBreaker");
  CHECK(i.items[0].text == "Where is my order?");
  CHECK(i.items[0].thread_lookup ==
        std::vector<std::string>{"instagram:meta:17841400000000000:IGSID-1"});

  // The messaging_postbacks reference's own example gives the time in seconds, as a string.
  const std::string secs = R"({"object":"page","entry":[{"id":"PAGE_ID","time":1,"messaging":[
    {"sender":{"id":"PSID_2"},"recipient":{"id":"PAGE_ID"},"timestamp":"1527459824",
     "postback":{"mid":"m_POSTBACK_2","title":"Get Started","payload":"START"}}]}]})";
  auto sec = post_signed(secs);
  REQUIRE(sec.items.size() == 1);
  CHECK(sec.items[0].occurred_at_ms == 1527459824000);

  // An older postback without mid or title (the reference's earlier example): stored all the
  // same, as a message without a mid is, under a stand-in id that a redelivery repeats.
  const std::string old = R"({"object":"page","entry":[{"id":"PAGE_ID","time":1,"messaging":[
    {"sender":{"id":"USER_ID"},"recipient":{"id":"PAGE_ID"},"timestamp":1458692752478,
     "postback":{"payload":"USER_DEFINED_PAYLOAD"}}]}]})";
  auto o = post_signed(old);
  REQUIRE(o.items.size() == 1);
  CHECK(o.items[0].text == "[postback]");
  CHECK(o.items[0].external_id.rfind("nomid.", 0) == 0);
  CHECK(o.items[0].external_id == post_signed(old).items[0].external_id);
}

TEST_CASE("Messenger attachment-only message gets a placeholder text and attachment") {
  const std::string body = R"({"object":"page","entry":[{"id":"682498302938465",
    "time":1518479195594,"messaging":[{"sender":{"id":"1254459154682919"},
    "recipient":{"id":"682498302938465"},"timestamp":1518479195308,
    "message":{"mid":"mid.$cAAJdkrCd2ORnva8ErFhjGm0X_Q_c","attachments":[{"type":"image",
    "payload":{"url":"https://scontent.example/image.png"}}]}}]}]})";
  auto r = post_signed(body);
  REQUIRE(r.items.size() == 1);
  CHECK(r.items[0].text == "[image]");
  REQUIRE(r.items[0].attachments.size() == 1);
  CHECK(r.items[0].attachments[0].content_type == "image/*");
  CHECK(r.items[0].attachments[0].url == "https://scontent.example/image.png");
  CHECK(r.items[0].attachments[0].filename == "image.png");
}

TEST_CASE("Instagram message is an instagram direct_message, echoes are ignored") {
  // Instagram Platform webhook examples, messaging payload (Instagram includes echoes in the
  // `messages` field subscription).
  const std::string body = R"([{"ignored":"arrays at the top are not Meta's shape"}])";
  CHECK(post_signed(body).status == 400);

  const std::string ig = R"({"object":"instagram","entry":[{"id":"17841400000000000",
    "time":1569262486134,"messaging":[
      {"sender":{"id":"IGSID-1"},"recipient":{"id":"17841400000000000"},"timestamp":1569262485349,
       "message":{"mid":"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx","text":"Is this in stock?"}},
      {"sender":{"id":"17841400000000000"},"recipient":{"id":"IGSID-1"},"timestamp":1569262485350,
       "message":{"mid":"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQy","text":"Yes","is_echo":true}}
    ]}]})";
  auto r = post_signed(ig);
  REQUIRE(r.items.size() == 1);
  CHECK(r.items[0].channel == "instagram");
  CHECK(r.items[0].from->type == "instagram");
  CHECK(r.items[0].from->value == "IGSID-1");
  CHECK(r.items[0].text == "Is this in stock?");
  CHECK(r.items[0].thread_record[0] == "instagram:meta:17841400000000000:IGSID-1");
}

TEST_CASE("WhatsApp text message: phone identity, contact name, thread per chat") {
  // WhatsApp "messages" webhook reference, incoming text message example.
  const std::string body = R"({
  "object": "whatsapp_business_account",
  "entry": [
    {
      "id": "102290129340398",
      "changes": [
        {
          "value": {
            "messaging_product": "whatsapp",
            "metadata": {
              "display_phone_number": "15550783881",
              "phone_number_id": "106540352242922"
            },
            "contacts": [
              {
                "profile": {
                  "name": "Sheena Nelson"
                },
                "wa_id": "16505551234"
              }
            ],
            "messages": [
              {
                "from": "16505551234",
                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                "timestamp": "1749416383",
                "type": "text",
                "text": {
                  "body": "Does it come in another color?"
                }
              }
            ]
          },
          "field": "messages"
        }
      ]
    }
  ]
})";
  std::string seen_raw, seen_region;
  PhoneCanonicaliser fake = [&](std::string_view raw,
                                std::string_view region) -> std::optional<std::string> {
    seen_raw = raw;
    seen_region = region;
    return std::string(raw);
  };
  auto r = post_signed(body, fake);
  REQUIRE(r.status == 200);
  REQUIRE(r.items.size() == 1);
  const auto& in = r.items[0];
  CHECK(in.channel == "whatsapp");
  CHECK(in.kind == "direct_message");
  CHECK(in.external_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=");
  REQUIRE(in.from);
  CHECK(in.from->type == "whatsapp");
  CHECK(in.from->value == "+16505551234");
  CHECK(in.from->name == "Sheena Nelson");
  CHECK(seen_raw == "+16505551234");
  CHECK(seen_region == "US");
  CHECK(in.text == "Does it come in another color?");
  CHECK(in.occurred_at_ms == 1749416383000);
  CHECK(in.thread_record == std::vector<std::string>{"whatsapp:meta:106540352242922:16505551234"});
  // The receiving number, which a reply must be sent from.
  CHECK(in.flags == std::vector<std::string>{"phone_number_id:106540352242922"});

  // A canonicaliser that rejects the number: kept (raw) but flagged.
  auto rejected = post_signed(
      body, [](std::string_view, std::string_view) { return std::optional<std::string>{}; });
  REQUIRE(rejected.items.size() == 1);
  CHECK(rejected.items[0].from->value == "+16505551234");
  CHECK(rejected.items[0].flags ==
        std::vector<std::string>{"malformed", "phone_number_id:106540352242922"});
}

TEST_CASE("WhatsApp media and location become placeholder text plus metadata") {
  const std::string body = R"({"object":"whatsapp_business_account","entry":[{"id":"WABA",
    "changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
    "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
    "contacts":[{"profile":{"name":"Ann"},"wa_id":"447700900123"}],
    "messages":[
      {"from":"447700900123","id":"wamid.IMG","timestamp":"1749416400","type":"image",
       "image":{"caption":"the broken part","mime_type":"image/jpeg","sha256":"abc=",
                "id":"1003383421387256"}},
      {"from":"447700900123","id":"wamid.DOC","timestamp":"1749416401","type":"document",
       "document":{"filename":"invoice.pdf","mime_type":"application/pdf","sha256":"def=",
                   "id":"2003383421387256"}},
      {"from":"447700900123","id":"wamid.LOC","timestamp":"1749416402","type":"location",
       "location":{"latitude":51.5,"longitude":-0.12,"name":"Shop","address":"1 High St"}},
      {"from":"447700900123","id":"wamid.REACT","timestamp":"1749416403","type":"reaction",
       "reaction":{"message_id":"wamid.OURS","emoji":"\uD83D\uDC4D"}}
    ]}}]}]})";
  auto r = post_signed(body);
  REQUIRE(r.items.size() == 3);
  CHECK(r.items[0].text == "[image] the broken part");
  REQUIRE(r.items[0].attachments.size() == 1);
  CHECK(r.items[0].attachments[0].content_type == "image/jpeg");
  CHECK(r.items[0].attachments[0].filename == "1003383421387256");
  CHECK(r.items[0].from->name == "Ann");
  CHECK(r.items[1].text == "[document]");
  CHECK(r.items[1].attachments[0].filename == "invoice.pdf");
  CHECK(r.items[1].attachments[0].content_type == "application/pdf");
  CHECK(r.items[2].text.rfind("[location] Shop 1 High St (51.5", 0) == 0);
}

TEST_CASE("WhatsApp statuses are returned as send-state updates, not interactions") {
  // WhatsApp status messages webhook reference: sent, and failed with errors[].
  const std::string body = R"({"object":"whatsapp_business_account","entry":[{"id":"WABA",
    "changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
    "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
    "statuses":[
      {"id":"wamid.SENT1","status":"delivered","timestamp":"1750263773",
       "recipient_id":"16505551234","conversation":{"id":"c1","origin":{"type":"service"}},
       "pricing":{"billable":true,"pricing_model":"PMP","category":"service"}},
      {"id":"wamid.SENT2","status":"failed","timestamp":"1750263774",
       "recipient_id":"16505551234","errors":[{"code":131047,"title":"Re-engagement message",
       "message":"Re-engagement message","error_data":{"details":
       "Message failed to send because more than 24 hours have passed since the customer last replied to this number."},
       "href":"https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]}
    ]}}]}]})";
  auto r = post_signed(body);
  REQUIRE(r.status == 200);
  CHECK(r.items.empty());
  REQUIRE(r.statuses.size() == 2);
  CHECK(r.statuses[0].external_id == "wamid.SENT1");
  CHECK(r.statuses[0].status == "delivered");
  CHECK(r.statuses[0].occurred_at_ms == 1750263773000);
  CHECK(r.statuses[1].status == "failed");
  CHECK(r.statuses[1].error_title == "Re-engagement message");
  CHECK(r.statuses[1].error_message == "Re-engagement message");
}

TEST_CASE("Meta send requests and responses") {
  auto cfg = meta_cfg();
  auto m = meta_send_message(cfg.access_token, "1254459154682919", "Thanks!");
  CHECK(m.method == "POST");
  CHECK(m.target == "/me/messages");
  CHECK(
      m.body ==
      R"({"recipient":{"id":"1254459154682919"},"messaging_type":"RESPONSE","message":{"text":"Thanks!"}})");
  CHECK(m.headers[0].second == "Bearer page-token");

  auto w = whatsapp_send_message(cfg, "106540352242922", "+16505551234", "Hi", "wamid.X");
  CHECK(w.target == "/106540352242922/messages");
  CHECK(w.body.find(R"("to":"16505551234")") != std::string::npos);
  CHECK(w.body.find(R"("context":{"message_id":"wamid.X"})") != std::string::npos);
  // A business-scoped user id goes as `recipient`, as it is, and there is no `to`.
  auto u = whatsapp_send_message(cfg, "106540352242922", "US.13491208655302741918", "Hi", "",
                                 WhatsAppTo::user_id);
  CHECK(u.body.find(R"("recipient":"US.13491208655302741918")") != std::string::npos);
  CHECK(u.body.find(R"("to")") == std::string::npos);

  auto ok = parse_meta_send_response(
      200, R"({"messaging_product":"whatsapp","contacts":[{"input":"16505551234",
      "wa_id":"16505551234"}],"messages":[{"id":"wamid.NEW"}]})");
  CHECK(ok.ok);
  CHECK(ok.provider_message_id == "wamid.NEW");

  // Messenger outside the 24-hour window: final failure with the provider's message.
  auto window = parse_meta_send_response(
      400, R"({"error":{"message":"(#10) This message is sent outside of allowed window.",
      "type":"OAuthException","code":10,"error_subcode":2018278,"fbtrace_id":"A"}})");
  CHECK_FALSE(window.ok);
  CHECK_FALSE(window.retryable);
  CHECK(window.error_message == "(#10) This message is sent outside of allowed window.");

  auto throttled = parse_meta_send_response(400, R"({"error":{"message":"limit","code":613}})");
  CHECK(throttled.retryable);
  CHECK(throttled.throttled);
  CHECK(parse_meta_send_response(503, "").retryable);
  CHECK_FALSE(parse_meta_send_response(503, "").throttled);
  CHECK_FALSE(window.throttled);

  auto key = parse_meta_thread_key("whatsapp:meta:106540352242922:16505551234");
  REQUIRE(key);
  CHECK(key->business_id == "106540352242922");
  CHECK(key->user_id == "16505551234");
  CHECK_FALSE(parse_meta_thread_key("mastodon:a:b:c"));
}

TEST_CASE("WhatsApp message without from: the BSUID is the identity, none at all is malformed") {
  // Meta "Business-scoped user IDs": a user with a WhatsApp username may hide the phone number;
  // messages then carry from_user_id and contacts[].user_id (the BSUID) but no from / wa_id.
  const std::string bsuid = R"({"object":"whatsapp_business_account","entry":[{"id":"WABA",
    "changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
    "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
    "contacts":[{"profile":{"name":"Sheena Nelson","username":"@sheena"},
                 "user_id":"US.13491208655302741918"}],
    "messages":[{"from_user_id":"US.13491208655302741918","id":"wamid.BSUID1",
                 "timestamp":"1767322800","type":"text","text":{"body":"hi"}}]}}]}]})";
  auto r = post_signed(bsuid);
  REQUIRE(r.status == 200);
  REQUIRE(r.items.size() == 1);
  REQUIRE(r.items[0].from);
  CHECK(r.items[0].from->type == "whatsapp");
  CHECK(r.items[0].from->value == "US.13491208655302741918");
  CHECK(r.items[0].from->handle == "US.13491208655302741918");
  CHECK(r.items[0].from->name == "Sheena Nelson");
  CHECK(r.items[0].text == "hi");
  CHECK(r.items[0].flags == std::vector<std::string>{"phone_number_id:106540352242922"});
  CHECK(r.items[0].thread_record ==
        std::vector<std::string>{"whatsapp:meta:106540352242922:US.13491208655302741918"});
  CHECK(r.problems.empty());

  const std::string nobody = R"({"object":"whatsapp_business_account","entry":[{"id":"WABA",
    "changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
    "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
    "messages":[{"id":"wamid.NOBODY1","timestamp":"1767322800","type":"text",
                 "text":{"body":"who am I"}}]}}]}]})";
  auto n = post_signed(nobody);
  REQUIRE(n.status == 200);
  REQUIRE(n.items.size() == 1);
  CHECK_FALSE(n.items[0].from);
  CHECK(n.items[0].text == "who am I");
  CHECK(n.items[0].flags ==
        std::vector<std::string>{"malformed", "phone_number_id:106540352242922"});
  CHECK(n.items[0].thread_record.empty());  // not one conversation for every unknown sender
  REQUIRE(n.problems.size() == 1);
  CHECK(n.problems[0].channel == "whatsapp");
  CHECK(n.problems[0].message.find("wamid.NOBODY1") != std::string::npos);
}

TEST_CASE(
    "Messenger and Instagram messages without a mid or a sender are stored flagged malformed, "
    "not dropped") {
  // Meta does not send a 200-answered event again: dropping it loses the customer's message.
  const std::string nobody = R"({"object":"page","entry":[{"id":"PAGE_ID","time":1,"messaging":[
    {"recipient":{"id":"PAGE_ID"},"timestamp":1767322800000,
     "message":{"mid":"m_NOBODY","text":"who am I"}}]}]})";
  auto n = post_signed(nobody);
  REQUIRE(n.status == 200);
  REQUIRE(n.items.size() == 1);
  CHECK(n.items[0].channel == "messenger");
  CHECK(n.items[0].external_id == "m_NOBODY");
  CHECK_FALSE(n.items[0].from);
  CHECK(n.items[0].text == "who am I");
  CHECK(n.items[0].flags == std::vector<std::string>{"malformed"});
  CHECK(n.items[0].thread_record.empty());  // not one conversation for every unknown sender
  REQUIRE(n.problems.size() == 1);
  CHECK(n.problems[0].channel == "messenger");
  CHECK(n.problems[0].message.find("m_NOBODY") != std::string::npos);
  CHECK(n.problems[0].message.find("names no sender") != std::string::npos);

  const std::string nomid = R"({"object":"instagram","entry":[{"id":"17841400000000000",
    "time":1,"messaging":[{"sender":{"id":"IGSID-1"},"recipient":{"id":"17841400000000000"},
    "timestamp":1767322800000,"message":{"text":"no id on me"}}]}]})";
  auto m = post_signed(nomid);
  REQUIRE(m.status == 200);
  REQUIRE(m.items.size() == 1);
  CHECK(m.items[0].channel == "instagram");
  REQUIRE(m.items[0].from);
  CHECK(m.items[0].from->value == "IGSID-1");
  CHECK(m.items[0].flags == std::vector<std::string>{"malformed"});
  // A stand-in id from the event's bytes: Meta delivering the same event again is a duplicate,
  // another event is not.
  CHECK(m.items[0].external_id.rfind("nomid.", 0) == 0);
  CHECK(m.items[0].external_id.size() == 6 + 64);
  CHECK(post_signed(nomid).items[0].external_id == m.items[0].external_id);
  std::string other = nomid;
  other.replace(other.find("no id on me"), 11, "no id again");
  CHECK(post_signed(other).items[0].external_id != m.items[0].external_id);
  // The sender is known: the message joins the sender's conversation.
  CHECK(m.items[0].thread_record ==
        std::vector<std::string>{"instagram:meta:17841400000000000:IGSID-1"});
  REQUIRE(m.problems.size() == 1);
  CHECK(m.problems[0].channel == "instagram");
  CHECK(m.problems[0].message.find(m.items[0].external_id) != std::string::npos);
}

TEST_CASE(
    "Meta standby messages, edits and Instagram unsends are reported as ignored, not stored") {
  // Messenger Platform standby and message_edits webhook references; Instagram's is_deleted.
  const std::string page = R"({"object":"page","entry":[{"id":"682498302938465","time":1,
    "standby":[
      {"sender":{"id":"1254459154682919"},"recipient":{"id":"682498302938465"},
       "timestamp":1518479195308,"message":{"mid":"mid.standby","text":"hello?"}},
      {"sender":{"id":"682498302938465"},"recipient":{"id":"1254459154682919"},
       "timestamp":1518479195309,"message":{"mid":"mid.inbox","text":"Hi!","is_echo":true}},
      {"sender":{"id":"1254459154682919"},"recipient":{"id":"682498302938465"},
       "delivery":{"mids":["mid.inbox"],"watermark":1518479195310}}],
    "messaging":[
      {"sender":{"id":"1254459154682919"},"recipient":{"id":"682498302938465"},
       "timestamp":1518479195400,"message_edit":{"mid":"mid.1","text":"edited","num_edit":1}}]}]})";
  auto r = post_signed(page);
  CHECK(r.status == 200);
  CHECK(r.items.empty());
  REQUIRE(r.ignored.size() == 2);  // the echo and the delivery on standby are nobody's message
  CHECK(r.ignored[0].channel == "messenger");
  CHECK(r.ignored[0].kind == "standby");
  CHECK(r.ignored[1].kind == "message_edit");

  const std::string ig = R"({"object":"instagram","entry":[{"id":"17841400000000000","time":1,
    "messaging":[{"sender":{"id":"IGSID-1"},"recipient":{"id":"17841400000000000"},
    "timestamp":1569262485349,"message":{"mid":"aWdfZAG1","is_deleted":true}}]}]})";
  r = post_signed(ig);
  CHECK(r.items.empty());
  REQUIRE(r.ignored.size() == 1);
  CHECK(r.ignored[0].channel == "instagram");
  CHECK(r.ignored[0].kind == "unsend");
}

TEST_CASE(
    "Meta throttling codes, WhatsApp's pair rate limit among them, are retried as throttled") {
  // WhatsApp's 131056 comes as HTTP 400 ("wait and retry the operation"): alone, a final 400.
  auto pair = parse_meta_send_response(
      400,
      R"({"error":{"message":"(#131056) (Business Account, Consumer Account) pair rate limit hit",
      "type":"OAuthException","code":131056,"error_subcode":2494055,"fbtrace_id":"A"}})");
  CHECK_FALSE(pair.ok);
  CHECK(pair.retryable);
  CHECK(pair.throttled);
  CHECK(pair.error_message == "(#131056) (Business Account, Consumer Account) pair rate limit hit");
  for (int code : {4, 17, 32, 613, 80007, 130429, 131056}) {
    auto o = parse_meta_send_response(
        400, R"({"error":{"message":"limit","code":)" + std::to_string(code) + "}}");
    CHECK_MESSAGE(o.retryable, code);
    CHECK_MESSAGE(o.throttled, code);
  }
  // Transient, not throttled: the ordinary back-off.
  auto transient =
      parse_meta_send_response(400, R"({"error":{"message":"x","code":2,"is_transient":true}})");
  CHECK(transient.retryable);
  CHECK_FALSE(transient.throttled);
}

TEST_CASE("WhatsApp edits and revokes are reported as ignored, not stored as new messages") {
  // WhatsApp "Edit messages" and "Revoke messages" webhook references.
  auto wa = [](const std::string& message) {
    return R"({"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{
      "field":"messages","value":{"messaging_product":"whatsapp","metadata":{
      "display_phone_number":"15550783881","phone_number_id":"106540352242922"},
      "contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":"16505551234"}],
      "messages":[)" +
           message + "]}}]}]}";
  };
  auto edit = post_signed(wa(R"({"from":"16505551234","id":"wamid.EDIT","timestamp":"1749416383",
    "type":"edit","edit":{"original_message_id":"wamid.ORIG","message":{"type":"text",
    "text":{"body":"the corrected text"}}}})"));
  REQUIRE(edit.status == 200);
  CHECK(edit.items.empty());
  REQUIRE(edit.ignored.size() == 1);
  CHECK(edit.ignored[0].channel == "whatsapp");
  CHECK(edit.ignored[0].kind == "message_edit");

  auto revoke = post_signed(wa(R"({"from":"16505551234","id":"wamid.REVOKE",
    "timestamp":"1749416383","type":"revoke","revoke":{"original_message_id":"wamid.ORIG"}})"));
  REQUIRE(revoke.status == 200);
  CHECK(revoke.items.empty());
  REQUIRE(revoke.ignored.size() == 1);
  CHECK(revoke.ignored[0].channel == "whatsapp");
  CHECK(revoke.ignored[0].kind == "unsend");
}

TEST_CASE(
    "Instagram comments are comments from the commenter, ours are skipped, live and Page comments "
    "reported as ignored") {
  // Instagram webhook examples, comments payload; Page webhooks, feed field with item comment.
  const std::string ig = R"({"object":"instagram","entry":[{"id":"17841400000000000",
    "time":1767322800,"changes":[
      {"field":"comments","value":{"id":"17865799348089039","from":{"id":"IGSID-9",
        "username":"boblee"},"text":"Do you ship to Norway?","media":{"id":"18023345",
        "media_product_type":"FEED"}}},
      {"field":"comments","value":{"id":"17865799348089040","from":{"id":"17841400000000000",
        "username":"ourshop"},"text":"Yes we do!","parent_id":"17865799348089039",
        "media":{"id":"18023345","media_product_type":"FEED"}}},
      {"field":"comments","value":{"id":"17865799348089041","from":{"id":"IGSID-9",
        "username":"boblee"},"text":"And to Iceland?","parent_id":"17865799348089039",
        "media":{"id":"18023345","media_product_type":"FEED"}}},
      {"field":"live_comments","value":{"id":"17865799348089050","from":{"id":"IGSID-7",
        "username":"ann"},"text":"hi!","media":{"id":"18029999","media_product_type":"LIVE"}}},
      {"field":"mentions","value":{"media_id":"1","comment_id":"2"}}]}]})";
  auto r = post_signed(ig);
  REQUIRE(r.status == 200);
  REQUIRE(r.items.size() == 2);  // ours (from.id the account's) is skipped
  const auto& c = r.items[0];
  CHECK(c.channel == "instagram");
  CHECK(c.kind == "comment");
  CHECK(c.external_id == "17865799348089039");
  REQUIRE(c.from);
  CHECK(c.from->type == "instagram");
  CHECK(c.from->value == "IGSID-9");
  CHECK(c.from->handle == "boblee");
  REQUIRE(c.to.size() == 1);
  CHECK(c.to[0].value == "17841400000000000");  // the account: its Page's token answers
  CHECK(c.text == "Do you ship to Norway?");
  CHECK(c.occurred_at_ms == 1767322800000);
  CHECK(c.in_reply_to.empty());
  CHECK(c.flags == std::vector<std::string>{"ig_media:18023345"});
  CHECK(c.thread_record ==
        std::vector<std::string>{"instagram_comment:meta:17841400000000000:18023345:IGSID-9"});
  CHECK(c.thread_lookup == c.thread_record);
  // The commenter's next comment, under the first: the same conversation.
  CHECK(r.items[1].in_reply_to == "17865799348089039");
  CHECK(r.items[1].thread_lookup == c.thread_lookup);
  REQUIRE(r.ignored.size() == 1);
  CHECK(r.ignored[0].channel == "instagram");
  CHECK(r.ignored[0].kind == "comment");
  CHECK(r.ignored[0].why.find("live_comments") != std::string::npos);
  CHECK(r.problems.empty());

  const std::string page = R"({"object":"page","entry":[{"id":"PAGE_ID","time":1,"changes":[
    {"field":"feed","value":{"from":{"id":"USER_1","name":"Bob Lee"},"item":"comment",
      "comment_id":"POST_1_C1","post_id":"PAGE_ID_POST_1","parent_id":"PAGE_ID_POST_1",
      "verb":"add","message":"Is the shop open on Sunday?","created_time":1767322800}},
    {"field":"feed","value":{"from":{"id":"PAGE_ID","name":"Our Shop"},"item":"comment",
      "comment_id":"POST_1_C2","post_id":"PAGE_ID_POST_1","verb":"add","message":"Yes"}},
    {"field":"feed","value":{"item":"reaction","verb":"add","reaction_type":"like",
      "post_id":"PAGE_ID_POST_1","from":{"id":"USER_1"}}}]}]})";
  auto p = post_signed(page);
  REQUIRE(p.status == 200);
  CHECK(p.items.empty());
  REQUIRE(p.ignored.size() == 1);
  CHECK(p.ignored[0].channel == "messenger");
  CHECK(p.ignored[0].kind == "comment");
  CHECK(p.ignored[0].why.find("not ingested yet") != std::string::npos);

  // A comment reply is a form-encoded `message` to /{comment-id}/replies; its answer is an id.
  auto req = instagram_comment_reply("page-token", "17865799348089039", "Yes, 3 days & free!");
  CHECK(req.method == "POST");
  CHECK(req.target == "/17865799348089039/replies");
  CHECK(req.content_type == "application/x-www-form-urlencoded");
  CHECK(req.body == "message=Yes%2C%203%20days%20%26%20free%21");
  auto ok = parse_meta_send_response(200, R"({"id":"17873440459141021"})");
  CHECK(ok.ok);
  CHECK(ok.provider_message_id == "17873440459141021");
}
