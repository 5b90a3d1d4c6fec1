// Meta webhooks end to end (issue 6 acceptance 5) and the Send API replies.
#include <doctest/doctest.h>

#include <functional>
#include <thread>

#include "channels/social/hmac.hpp"
#include "core/stalls.hpp"
#include "tests/integration/agent_api.hpp"
#include "tests/social/e2e.hpp"
#include "tests/social/fakes/fake_meta.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;

namespace {

struct MetaDaemon : SocialDaemon {
  FakeMetaGraph graph;
  // `setup` changes the account (its Pages) before the daemon starts, `tune` its options.
  explicit MetaDaemon(const std::function<void(config::Meta&)>& setup = {},
                      const std::function<void(AppOptions&)>& tune = {}) {
    graph.start();
    if (tune) {
      tune(options);
    }
    cfg.channels.meta.push_back(
        config::Meta{"meta", "app-secret", "verify-me", "meta-token", graph.base_url()});
    if (setup) {
      setup(cfg.channels.meta.back());
    }
    start();
  }
  HttpResponse post(const std::string& body, const std::string& secret = "app-secret") {
    return http->request(
        "POST", "/webhooks/meta/meta", body,
        {{"Content-Type", "application/json"},
         {"X-Hub-Signature-256", "sha256=" + social::hmac_sha256_hex(secret, body)}});
  }
};

std::string messenger(const std::string& mid, const std::string& text, bool echo = false) {
  std::string sender = echo ? "PAGE_ID" : "PSID_1";
  std::string recipient = echo ? "PSID_1" : "PAGE_ID";
  return R"({"object":"page","entry":[{"id":"PAGE_ID","time":1767322800000,"messaging":[{"sender":{"id":")" +
         sender + R"("},"recipient":{"id":")" + recipient +
         R"("},"timestamp":1767322800000,"message":{"mid":")" + mid + R"(","text":")" + text +
         "\"" + (echo ? R"(,"is_echo":true,"app_id":1517776481860111)" : "") + "}}]}]}";
}

// A customer's message to one Page (`object` "page" for Messenger, "instagram" for Instagram):
// entry.id and recipient.id name the Page, sender.id the Page-scoped id of the customer.
std::string to_page(const std::string& object, const std::string& page, const std::string& user,
                    const std::string& mid, const std::string& text) {
  return R"({"object":")" + object + R"(","entry":[{"id":")" + page +
         R"(","time":1767322800000,"messaging":[{"sender":{"id":")" + user +
         R"("},"recipient":{"id":")" + page + R"("},"timestamp":1767322800000,"message":{"mid":")" +
         mid + R"(","text":")" + text + R"("}}]}]})";
}

std::string whatsapp(const std::string& wa_id, const std::string& wamid, const std::string& text) {
  return R"({"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Sheena Nelson"},"wa_id":")" +
         wa_id + R"("}],"messages":[{"from":")" + wa_id + R"(","id":")" + wamid +
         R"(","timestamp":"1767322800","text":{"body":")" + text + R"("},"type":"text"}]}}]}]})";
}

}  // namespace

TEST_CASE(
    "meta: verification, wrong signature 403 and nothing stored, echoes ignored, WhatsApp matched "
    "by phone") {
  MetaDaemon d;
  auto ok = d.http->request(
      "GET",
      "/webhooks/meta/meta?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444");
  CHECK(ok.status == 200);
  CHECK(ok.body == "1158201444");
  auto bad = d.http->request(
      "GET", "/webhooks/meta/meta?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1");
  CHECK(bad.status == 403);
  CHECK(d.http->request("GET", "/webhooks/meta/other?hub.mode=subscribe").status == 404);

  auto forged = d.post(messenger("m_1", "hello"), "wrong-secret");
  CHECK(forged.status == 403);
  CHECK(boost::json::parse(forged.body).at("error").at("code").is_string());
  auto unsigned_post = d.http->request("POST", "/webhooks/meta/meta", messenger("m_1", "hello"),
                                       {{"Content-Type", "application/json"}});
  CHECK(unsigned_post.status >= 400);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 0);

  CHECK(d.post(messenger("m_echo", "our own answer", true)).status == 200);
  CHECK(d.post(messenger("m_1", "hello")).status == 200);
  CHECK(d.post(messenger("m_1", "hello")).status == 200);  // Meta's retry: deduplicated
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);

  // A customer known by phone (through the ingest API) writes on WhatsApp.
  auto r = d.http->post_json(
      "/v1/interactions",
      R"({"source":"crm","external_id":"c1","from":{"phone":"+16505551234","name":"Sheena"},"text":"order"})",
      "test-token");
  REQUIRE(r.status == 202);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  std::string customer = str(d.queued()[1].at("customer").at("id"));
  CHECK(d.post(whatsapp("16505551234", "wamid.ABC1", "Does it come in blue?")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; }));
  auto wa = d.queued()[2];
  CHECK(str(wa.at("channel")) == "whatsapp");
  CHECK(str(wa.at("from").at("value")) == "+16505551234");
  CHECK(str(wa.at("customer").at("id")) == customer);
  CHECK(wa.at("customer").at("is_new").as_bool() == false);

  auto metrics = d.metrics();
  CHECK(metrics.find(R"(switchboard_channel_errors_total{channel="meta",account="meta"} 3)") !=
        std::string::npos);
  // Stored items count under the channel they have, as the interactions do.
  CHECK(metrics.find(R"(switchboard_interactions_total{channel="messenger",account="meta"} 1)") !=
        std::string::npos);
  CHECK(metrics.find(R"(switchboard_duplicates_total{channel="messenger",account="meta"} 1)") !=
        std::string::npos);
  CHECK(metrics.find(R"(switchboard_interactions_total{channel="whatsapp",account="meta"} 1)") !=
        std::string::npos);
  CHECK(metrics.find(R"(switchboard_interactions_total{channel="meta")") == std::string::npos);
  // Timed like every webhook: the three that carried messages, and the ingest API's one.
  CHECK(metrics.find("switchboard_ingest_seconds_count 4\n") != std::string::npos);
}

TEST_CASE(
    "meta: replies go through the Send API and WhatsApp messages, the 24-hour window error fails "
    "with the provider's message") {
  MetaDaemon d;
  REQUIRE(d.post(messenger("m_9", "help")).status == 200);
  REQUIRE(d.post(whatsapp("16505551234", "wamid.ABC2", "hi")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  auto q = d.queued();

  auto m = d.send("messenger", "meta", reply_to(q[0], "01JMOUT1", "On it."));
  REQUIRE(m.status == SendResult::Status::sent);
  auto w = d.send("whatsapp", "meta", reply_to(q[1], "01JMOUT2", "Hello!"));
  REQUIRE(w.status == SendResult::Status::sent);
  CHECK(w.provider_id.rfind("wamid.", 0) == 0);
  auto sent = d.graph.sent();
  REQUIRE(sent.size() == 2);
  CHECK(sent[0].path == "/me/messages");
  auto mb = boost::json::parse(sent[0].body);
  CHECK(str(mb.at("recipient").at("id")) == "PSID_1");
  CHECK(str(mb.at("messaging_type")) == "RESPONSE");
  CHECK(sent[1].path == "/106540352242922/messages");
  auto wb = boost::json::parse(sent[1].body);
  CHECK(str(wb.at("context").at("message_id")) == "wamid.ABC2");

  d.graph.outside_window_next();
  auto late = d.send("whatsapp", "meta", reply_to(q[1], "01JMOUT3", "Sorry for the wait"));
  CHECK(late.status == SendResult::Status::failed);
  CHECK(late.error.find("24 hours") != std::string::npos);

  // A Mexican mobile: WhatsApp's id keeps the "1" after 52 that E.164 has dropped since 2019
  // (wa_id 5215512345678 is +525512345678). The customer is matched by E.164, but the reply
  // goes to the id WhatsApp gave: the other form may never arrive.
  REQUIRE(d.post(whatsapp("5215512345678", "wamid.MX1", "hola")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; }));
  auto mx = d.queued()[2];
  CHECK(str(mx.at("from").at("value")) == "+525512345678");
  auto hola = d.send("whatsapp", "meta", reply_to(mx, "01JMOUT4", "Hola"));
  REQUIRE(hola.status == SendResult::Status::sent);
  auto to_mx = boost::json::parse(d.graph.sent().back().body);
  CHECK(str(to_mx.at("to")) == "5215512345678");
}

TEST_CASE(
    "meta: WhatsApp's pair rate limit (131056, HTTP 400) is retried as throttled, not failed") {
  MetaDaemon d;
  REQUIRE(d.post(whatsapp("16505551234", "wamid.P1", "are you there?")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto q = d.queued();
  d.graph.error_next(
      400,
      R"({"error":{"message":"(#131056) (Business Account, Consumer Account) pair rate limit hit","type":"OAuthException","code":131056,"error_subcode":2494055,"fbtrace_id":"A"}})");
  auto limited = d.send("whatsapp", "meta", reply_to(q[0], "01JMOUT5", "Yes!"));
  CHECK(limited.status == SendResult::Status::retry);
  CHECK(limited.throttled);
  CHECK(limited.error.find("pair rate limit hit") != std::string::npos);
  CHECK(d.graph.sent().empty());
  auto later = d.send("whatsapp", "meta", reply_to(q[0], "01JMOUT5", "Yes!"));
  CHECK(later.status == SendResult::Status::sent);
}

TEST_CASE(
    "meta: an Instagram comment is stored as a comment and answered by a public reply under it") {
  MetaDaemon d([](config::Meta& m) { m.pages = {{"17841400000000000", "ig-page-token"}}; });
  d.graph.accept_token("ig-page-token");
  const std::string comment =
      R"({"object":"instagram","entry":[{"id":"17841400000000000","time":1767322800,"changes":[{"field":"comments","value":{"id":"17865799348089039","from":{"id":"IGSID-9","username":"boblee"},"text":"Do you ship to Norway?","media":{"id":"18023345","media_product_type":"FEED"}}}]}]})";
  REQUIRE(d.post(comment).status == 200);
  REQUIRE(d.post(comment).status == 200);  // Meta's retry: deduplicated
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto q = d.queued();
  CHECK(str(q[0].at("kind")) == "comment");
  CHECK(str(q[0].at("channel")) == "instagram");
  CHECK(str(q[0].at("external_id")) == "17865799348089039");
  CHECK(str(q[0].at("from").at("value")) == "IGSID-9");
  auto r = d.send("instagram", "meta", reply_to(q[0], "01JMOUT6", "Yes, in 3 days."));
  REQUIRE(r.status == SendResult::Status::sent);
  CHECK(r.provider_id.rfind("1787344045914", 0) == 0);
  auto sent = d.graph.sent();
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].path == "/17865799348089039/replies");
  CHECK(sent[0].body == "message=Yes%2C%20in%203%20days.");
  CHECK(sent[0].token == "ig-page-token");
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE kind='comment'") == 1);
}

TEST_CASE("meta: a reload applies a rotated app secret and verify token at once") {
  MetaDaemon d;
  auto verify = [&](const std::string& token) {
    return d.http
        ->request("GET", "/webhooks/meta/meta?hub.mode=subscribe&hub.verify_token=" + token +
                             "&hub.challenge=7")
        .status;
  };
  REQUIRE(d.post(messenger("m_1", "before")).status == 200);
  REQUIRE(verify("verify-me") == 200);
  auto fresh = d.cfg;
  fresh.channels.meta.at(0).app_secret = "rotated-secret";
  fresh.channels.meta.at(0).verify_token = "verify-new";
  REQUIRE(d.app->reload(fresh).empty());
  CHECK(d.post(messenger("m_2", "old secret")).status == 403);
  CHECK(d.post(messenger("m_2", "after"), "rotated-secret").status == 200);
  CHECK(verify("verify-me") == 403);
  CHECK(verify("verify-new") == 200);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 2);
}

TEST_CASE("meta: a Messenger image keeps its link in the stored interaction") {
  MetaDaemon d;
  const std::string url =
      "https://scontent.xx.fbcdn.net/v/t1.15752-9/123_456_n.jpg?_nc_cat=1&oh=00_AfB&oe=6790";
  const std::string body =
      R"({"object":"page","entry":[{"id":"PAGE_ID","time":1767322800000,"messaging":[{"sender":{"id":"PSID_1"},"recipient":{"id":"PAGE_ID"},"timestamp":1767322800000,"message":{"mid":"m_img","attachments":[{"type":"image","payload":{"url":")" +
      url + R"("}}]}}]}]})";
  REQUIRE(d.post(body).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto a = d.queued()[0].at("attachments").as_array();
  REQUIRE(a.size() == 1);
  CHECK(str(a[0].at("url")) == url);
  CHECK(str(a[0].at("content_type")) == "image/*");
  CHECK(str(a[0].at("filename")) == "123_456_n.jpg");
  // The stored row, which the agents' API serves, has it too.
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE external_id='m_img' AND "
               "json_extract(payload, '$.attachments[0].url') = '" +
               url + "'") == 1);
}

TEST_CASE(
    "meta: a WhatsApp message without from is stored, under its BSUID or flagged malformed and "
    "counted, never dropped") {
  MetaDaemon d;
  auto message = [](const std::string& wamid, const std::string& sender_fields) {
    return R"({"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"messages":[{)" +
           sender_fields + R"("id":")" + wamid +
           R"(","timestamp":"1767322800","type":"text","text":{"body":"hello from )" + wamid +
           R"("}}]}}]}]})";
  };
  // A user with a WhatsApp username: the business-scoped user id instead of the phone number.
  CHECK(d.post(message("wamid.U1", R"("from_user_id":"US.13491208655302741918",)")).status == 200);
  CHECK(d.post(message("wamid.U2", R"("from_user_id":"US.13491208655302741918",)")).status == 200);
  // Nothing that names the sender at all.
  CHECK(d.post(message("wamid.N1", "")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; }));
  auto q = d.queued();
  CHECK(str(q[0].at("from").at("value")) == "US.13491208655302741918");
  CHECK(str(q[0].at("text")) == "hello from wamid.U1");
  // Matched later: the second message is the same customer, in the same conversation.
  CHECK(str(q[1].at("customer").at("id")) == str(q[0].at("customer").at("id")));
  CHECK(str(q[1].at("conversation_id")) == str(q[0].at("conversation_id")));
  CHECK(str(q[2].at("external_id")) == "wamid.N1");
  CHECK(str(q[2].at("text")) == "hello from wamid.N1");
  CHECK(q[2].at("flags").as_array().front() == "malformed");
  CHECK(d.metrics().find(
            R"(switchboard_channel_errors_total{channel="whatsapp",account="meta"} 1)") !=
        std::string::npos);
}

TEST_CASE(
    "meta: a Messenger or Instagram message without a mid or a sender is stored flagged "
    "malformed and counted, never dropped, and Meta's redelivery is a duplicate") {
  MetaDaemon d;
  const std::string nobody =
      R"({"object":"page","entry":[{"id":"PAGE_ID","time":1767322800000,"messaging":[{"recipient":{"id":"PAGE_ID"},"timestamp":1767322800000,"message":{"mid":"m_NOBODY","text":"who am I"}}]}]})";
  const std::string nomid =
      R"({"object":"instagram","entry":[{"id":"IG_ID","time":1767322800000,"messaging":[{"sender":{"id":"IGSID_1"},"recipient":{"id":"IG_ID"},"timestamp":1767322800000,"message":{"text":"no id on me"}}]}]})";
  CHECK(d.post(nobody).status == 200);
  CHECK(d.post(nomid).status == 200);
  CHECK(d.post(nomid).status == 200);  // delivered again: the stand-in id is the same
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  auto q = d.queued();
  CHECK(str(q[0].at("external_id")) == "m_NOBODY");
  CHECK(str(q[0].at("text")) == "who am I");
  CHECK(q[0].at("flags").as_array().front() == "malformed");
  CHECK(str(q[1].at("external_id")).rfind("nomid.", 0) == 0);
  CHECK(str(q[1].at("text")) == "no id on me");
  CHECK(str(q[1].at("from").at("value")) == "IGSID_1");
  CHECK(q[1].at("flags").as_array().front() == "malformed");
  CHECK(d.rows("SELECT count(*) FROM interactions") == 2);
  std::string metrics = d.metrics();
  CHECK(metrics.find(R"(switchboard_channel_errors_total{channel="messenger",account="meta"} 1)") !=
        std::string::npos);
  // Counted on each delivery: the second was Meta's, answered 200 as a duplicate.
  CHECK(metrics.find(R"(switchboard_channel_errors_total{channel="instagram",account="meta"} 2)") !=
        std::string::npos);
}

// Meta "Business-scoped user IDs": a reply to a user known by no phone number names the BSUID as
// `recipient`; `to` takes phone numbers only.
TEST_CASE("meta: a reply to a WhatsApp user known only by a BSUID goes to recipient, not to") {
  MetaDaemon d;
  const std::string body =
      R"({"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Ann"},"user_id":"US.13491208655302741918"}],"messages":[{"from_user_id":"US.13491208655302741918","id":"wamid.U9","timestamp":"1767322800","type":"text","text":{"body":"hi"}}]}}]}]})";
  REQUIRE(d.post(body).status == 200);
  REQUIRE(d.post(whatsapp("16505551234", "wamid.P9", "hello")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  auto q = d.queued();
  auto r = d.send("whatsapp", "meta", reply_to(q[0], "01JMOUTB1", "Hello Ann"));
  CHECK(r.error == "");
  REQUIRE(r.status == SendResult::Status::sent);
  auto phone = d.send("whatsapp", "meta", reply_to(q[1], "01JMOUTB2", "Hello"));
  REQUIRE(phone.status == SendResult::Status::sent);
  auto sent = d.graph.sent();
  REQUIRE(sent.size() == 2);
  CHECK(sent[0].path == "/106540352242922/messages");
  auto b = boost::json::parse(sent[0].body).as_object();
  CHECK(str(b.at("recipient")) == "US.13491208655302741918");
  CHECK_FALSE(b.contains("to"));
  CHECK(str(b.at("context").at("message_id")) == "wamid.U9");
  // A user with a number keeps `to`.
  auto p = boost::json::parse(sent[1].body).as_object();
  CHECK(str(p.at("to")) == "16505551234");
  CHECK_FALSE(p.contains("recipient"));
}

TEST_CASE("meta: WhatsApp statuses update the send state of our reply and show in its timeline") {
  MetaDaemon d;
  // What the agents' reply route leaves behind once the WhatsApp sender answered with its wamid.
  {
    storage::Db db(d.cfg.storage.path);
    db.exec(
        "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
        "next_attempt_at, provider_id, created_at, updated_at) VALUES "
        "('OUT1', 'IN1', 'whatsapp', 'meta', 'sent', 1, 0, 'wamid.SENT1', 1, 1), "
        "('OUT2', 'IN2', 'whatsapp', 'meta', 'sent', 1, 0, 'wamid.SENT2', 1, 1)");
  }
  const std::string body = R"({"object":"whatsapp_business_account","entry":[{"id":"WABA",
    "changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
    "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
    "statuses":[
      {"id":"wamid.SENT1","status":"delivered","timestamp":"1750263773","recipient_id":"16505551234"},
      {"id":"wamid.SENT2","status":"failed","timestamp":"1750263774","recipient_id":"16505551234",
       "errors":[{"code":131047,"title":"Re-engagement message","message":"Re-engagement message",
       "error_data":{"details":"Message failed to send because more than 24 hours have passed since the customer last replied to this number."}}]},
      {"id":"wamid.NOT_OURS","status":"read","timestamp":"1750263775","recipient_id":"16505551234"}
    ]}}]}]})";
  auto r = d.post(body);
  CHECK(r.status == 200);
  // Answered after the commit: the states are there already.
  CHECK(d.rows("SELECT count(*) FROM sends WHERE interaction_id='OUT1' AND state='sent'") == 1);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE interaction_id='OUT2' AND state='failed' "
               "AND last_error LIKE '%Re-engagement%'") == 1);
  CHECK(d.rows("SELECT count(*) FROM events WHERE interaction_id='OUT1' AND type='provider_status' "
               "AND detail LIKE '%delivered%'") == 1);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='provider_status'") == 2);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 0);

  // Meta delivers at least once: the same statuses again add nothing to the timeline.
  CHECK(d.post(body).status == 200);
  CHECK(d.rows("SELECT count(*) FROM events WHERE interaction_id='OUT1' AND type='provider_status' "
               "AND detail LIKE '%delivered%'") == 1);
  CHECK(d.rows("SELECT count(*) FROM events WHERE type='provider_status'") == 2);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE interaction_id='OUT2' AND state='failed'") == 1);
}

namespace {
// A WhatsApp message from 16505551234 that alice claimed and answered with `text`, and the
// wamid WhatsApp gave her reply.
struct WhatsAppAnswer {
  std::string id, customer, out, wamid;
};
WhatsAppAnswer answer_on_whatsapp(MetaDaemon& d, const std::string& wamid_in,
                                  const std::string& question, const std::string& text) {
  REQUIRE(d.post(whatsapp("16505551234", wamid_in, question)).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  WhatsAppAnswer a;
  a.id = str(d.queued()[0].at("id"));
  a.customer = str(d.queued()[0].at("customer").at("id"));
  auto claim = d.http->post_json("/v1/agent/claim", R"({"queue":"general"})", "alice-token");
  REQUIRE(claim.status == 200);
  auto reply =
      d.http->post_json("/v1/agent/interactions/" + a.id + "/reply",
                        boost::json::serialize(boost::json::object{{"text", text}}), "alice-token");
  REQUIRE(reply.status == 202);
  a.out = str(boost::json::parse(reply.body).at("id"));
  REQUIRE(eventually([&] {
    storage::Db db(d.cfg.storage.path, true);
    auto st = db.prepare("SELECT provider_id FROM sends WHERE state='sent' AND interaction_id=?1");
    st.bind(1, a.out);
    a.wamid = st.step() ? st.text(0) : "";
    return !a.wamid.empty();
  }));
  return a;
}

// A webhook with one status of the message `wamid`: `fields` are the status's other members.
std::string whatsapp_status(const std::string& wamid, const std::string& fields) {
  return R"({"object":"whatsapp_business_account","entry":[{"id":"WABA",
    "changes":[{"field":"messages","value":{"messaging_product":"whatsapp",
    "metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},
    "statuses":[{"id":")" +
         wamid + "\"," + fields + "}]}}]}]}";
}
}  // namespace

// The same through the agents' read API: the status is an event of the reply (the outbound
// interaction) on the customer's timeline, by the channel, with what WhatsApp said.
TEST_CASE(
    "meta: a WhatsApp status is a provider_status event by whatsapp on the reply's timeline") {
  MetaDaemon d;
  auto a = answer_on_whatsapp(d, "wamid.T1", "Is it in stock?", "Yes, in blue too.");
  const std::string customer = a.customer, out = a.out;
  const std::string status = whatsapp_status(
      a.wamid, R"("status":"delivered","timestamp":"1750263773","recipient_id":"16505551234")");
  REQUIRE(d.post(status).status == 200);

  auto tl = boost::json::parse(d.http
                                   ->request("GET", "/v1/customers/" + customer + "/interactions",
                                             "", {{"Authorization", "Bearer alice-token"}})
                                   .body)
                .as_object();
  const boost::json::object* outbound = nullptr;
  for (const auto& i : tl.at("interactions").as_array()) {
    if (str(i.at("id")) == out) {
      outbound = &i.as_object();
    }
  }
  REQUIRE(outbound != nullptr);
  auto& ev = outbound->at("events").as_array();
  REQUIRE(ev.size() == 1);
  CHECK(str(ev[0].at("type")) == "provider_status");
  CHECK(str(ev[0].at("actor")) == "whatsapp");
  CHECK(str(ev[0].at("detail").at("status")) == "delivered");
  CHECK(str(ev[0].at("at")) == "2025-06-18T16:22:53.000Z");  // WhatsApp's time, not ours
}

// Before: a `failed` status for a reply already acked only added provider_status to the reply:
// the item stayed `done`, in no queue, the customer unanswered and nobody told.
TEST_CASE("meta: a WhatsApp failed status for an acked reply puts its parent back to work once") {
  MetaDaemon d;
  auto a = answer_on_whatsapp(d, "wamid.F1", "Where is my parcel?", "It left today.");
  const std::string id = a.id, out = a.out;
  REQUIRE(d.http->post_json("/v1/agent/interactions/" + id + "/ack", "{}", "alice-token").status ==
          200);
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM interactions WHERE id='" + id + "' AND state='done'") == 1;
  }));
  const auto relay_stalls = stalls(Stall::relay);
  // The relay counts a row's age from its own start at most: let that be longer ago than a stall.
  std::this_thread::sleep_for(kStallThreshold + std::chrono::milliseconds(100));
  // A report made long before it came (Meta retries a status webhook for hours; this one's time
  // is June 2025).
  const std::string failed = whatsapp_status(
      a.wamid, R"("status":"failed","timestamp":"1750263774","recipient_id":"16505551234",
      "errors":[{"code":131047,"title":"Re-engagement message","message":"Re-engagement message"}])");
  REQUIRE(d.post(failed).status == 200);
  // Meta delivers at least once: the same report again requeues nothing.
  REQUIRE(d.post(failed).status == 200);
  CHECK(d.rows("SELECT count(*) FROM events WHERE interaction_id='" + id +
               "' AND type='send_failed' AND json_extract(detail, '$.back_to_work')=1 AND "
               "json_extract(detail, '$.outbound_id')='" +
               out + "'") == 1);
  CHECK(d.rows("SELECT queue_round FROM interactions WHERE id='" + id + "'") == 1);
  HttpResponse again;
  REQUIRE(eventually([&] {
    again = d.http->post_json("/v1/agent/claim", R"({"queue":"general"})", "alice-token");
    return again.status == 200;
  }));
  auto item = boost::json::parse(again.body).at("interaction").as_object();
  CHECK(str(item.at("id")) == id);
  CHECK(str(item.at("send_failed").at("outbound_id")) == out);
  CHECK(str(item.at("send_failed").at("error")).find("Re-engagement") != std::string::npos);
  CHECK(d.redis.xlen("sb:q:general:normal") == 1);
  // Its requeue is a row of now for the relay, not one of June 2025 (a stall nobody waited for).
  CHECK(stalls(Stall::relay) == relay_stalls);
}

TEST_CASE(
    "meta: a forged signature is logged with the account and the consequence, without the "
    "signature, once however often it comes") {
  LogCapture log("social");  // before the daemon, which logs from its own threads
  MetaDaemon d;
  const std::string body = messenger("m_1", "hello");
  const std::string forged_signature = social::hmac_sha256_hex("wrong-secret", body);
  for (int i = 0; i < 5; ++i) {
    CHECK(d.post(body, "wrong-secret").status == 403);
  }
  d.stop();
  auto lines = log.lines_with("rejected webhook");
  REQUIRE(lines.size() == 1);
  MESSAGE(lines[0]);
  CHECK(lines[0].find("warning [meta:meta] rejected webhook: ") == 0);
  CHECK(lines[0].find("; answered 403, nothing stored") != std::string::npos);
  CHECK(log.text().find(forged_signature) == std::string::npos);
}

TEST_CASE(
    "meta: a Messenger or Instagram reply goes with the token of the Page that received the "
    "message, and without one fails naming the Page and the config to add") {
  MetaDaemon d([](config::Meta& m) {
    m.access_token.clear();  // Pages only: no account-wide fallback
    m.pages = {{"1111", "page1-token"}, {"2222", "page2-token"}};
  });
  d.graph.accept_token("page1-token");
  d.graph.accept_token("page2-token");
  REQUIRE(d.post(to_page("page", "1111", "PSID_A", "m_p1", "help from page one")).status == 200);
  REQUIRE(d.post(to_page("instagram", "2222", "IGSID_B", "m_p2", "help from page two")).status ==
          200);
  REQUIRE(d.post(to_page("page", "3333", "PSID_C", "m_p3", "help from page three")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; }));
  auto q = d.queued();

  auto r1 = d.send("messenger", "meta", reply_to(q[0], "01JPAGE1", "Page one here."));
  CHECK(r1.status == SendResult::Status::sent);
  auto r2 = d.send("instagram", "meta", reply_to(q[1], "01JPAGE2", "Page two here."));
  CHECK(r2.status == SendResult::Status::sent);
  auto r3 = d.send("messenger", "meta", reply_to(q[2], "01JPAGE3", "Anyone?"));
  CHECK(r3.status == SendResult::Status::failed);
  MESSAGE(r3.error);
  CHECK(r3.error.find("no access token for the Page 3333") != std::string::npos);
  CHECK(r3.error.find(R"([[channels.meta.pages]] with id = "3333")") != std::string::npos);
  CHECK(r3.error.find(R"([[channels.meta]] "meta")") != std::string::npos);

  auto sent = d.graph.sent();
  REQUIRE(sent.size() == 2);  // nothing went out for the Page without a token
  CHECK(sent[0].token == "page1-token");
  CHECK(str(boost::json::parse(sent[0].body).at("recipient").at("id")) == "PSID_A");
  CHECK(sent[1].token == "page2-token");
  CHECK(str(boost::json::parse(sent[1].body).at("recipient").at("id")) == "IGSID_B");
}

TEST_CASE("meta: a reload's new Page and account tokens go with the next reply") {
  MetaDaemon d([](config::Meta& m) { m.pages = {{"1111", "page1-token"}}; });
  d.graph.accept_token("page1-token");
  d.graph.accept_token("page1-rotated");
  d.graph.accept_token("meta-rotated");
  REQUIRE(d.post(to_page("page", "1111", "PSID_A", "m_r1", "help from page one")).status == 200);
  REQUIRE(d.post(to_page("page", "3333", "PSID_C", "m_r3", "help from page three")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  auto q = d.queued();
  auto fresh = d.cfg;
  fresh.channels.meta.at(0).pages.at(0).access_token = "page1-rotated";
  fresh.channels.meta.at(0).access_token = "meta-rotated";
  REQUIRE(d.app->reload(fresh).empty());
  CHECK(d.send("messenger", "meta", reply_to(q[0], "01JROT1", "Page one.")).status ==
        SendResult::Status::sent);
  // A Page not listed: the account's token.
  CHECK(d.send("messenger", "meta", reply_to(q[1], "01JROT3", "Page three.")).status ==
        SendResult::Status::sent);
  auto sent = d.graph.sent();
  REQUIRE(sent.size() == 2);
  CHECK(sent[0].token == "page1-rotated");
  CHECK(sent[1].token == "meta-rotated");
}

TEST_CASE(
    "meta: standby messages, edits and unsends are not stored, but counted and logged once a "
    "minute per kind") {
  LogCapture log("social");  // before the daemon, which logs from its own threads
  MetaDaemon d;
  // Messenger Platform "standby Webhook Event Reference": the Page Inbox owns the thread.
  const std::string standby = R"({"object":"page","entry":[{"id":"PAGE_ID","time":1767322800000,
    "standby":[{"sender":{"id":"PSID_1"},"recipient":{"id":"PAGE_ID"},"timestamp":1767322800000,
      "message":{"mid":"m_standby1","text":"anyone there?"}},
      {"sender":{"id":"PSID_1"},"recipient":{"id":"PAGE_ID"},"timestamp":1767322800001,
      "message":{"mid":"m_standby2","text":"hello?"}},
      {"sender":{"id":"PSID_1"},"recipient":{"id":"PAGE_ID"},"read":{"watermark":1}}]}]})";
  REQUIRE(d.post(standby).status == 200);
  REQUIRE(d.post(standby).status == 200);  // Meta delivers the next ones the same way
  const std::string edit = R"({"object":"page","entry":[{"id":"PAGE_ID","time":1,"messaging":[
    {"sender":{"id":"PSID_1"},"recipient":{"id":"PAGE_ID"},"timestamp":1767322800000,
     "message_edit":{"mid":"m_1","text":"hello, edited","num_edit":1}}]}]})";
  REQUIRE(d.post(edit).status == 200);
  const std::string unsend = R"({"object":"instagram","entry":[{"id":"17841400000000000",
    "time":1,"messaging":[{"sender":{"id":"IGSID-1"},"recipient":{"id":"17841400000000000"},
    "timestamp":1569262485349,"message":{"mid":"aWdfZAG1","is_deleted":true}}]}]})";
  REQUIRE(d.post(unsend).status == 200);

  auto metrics = d.metrics();
  CHECK(
      metrics.find(R"(switchboard_social_events_ignored_total{account="meta",kind="standby"} 4)") !=
      std::string::npos);
  CHECK(metrics.find(
            R"(switchboard_social_events_ignored_total{account="meta",kind="message_edit"} 1)") !=
        std::string::npos);
  CHECK(
      metrics.find(R"(switchboard_social_events_ignored_total{account="meta",kind="unsend"} 1)") !=
      std::string::npos);
  d.stop();
  CHECK(d.rows("SELECT count(*) FROM interactions") == 0);
  auto lines = log.lines_with("standby channel");
  REQUIRE(lines.size() == 1);  // four events, one line: at most one a minute
  MESSAGE(lines[0]);
  CHECK(lines[0].find("warning [meta:meta] messenger: customer message on the standby channel") ==
        0);
  CHECK(log.lines_with("[meta:meta] messenger: customer edit of a message").size() == 1);
  CHECK(log.lines_with("[meta:meta] instagram: customer unsent").size() == 1);
}

TEST_CASE(
    "meta: a WhatsApp message to an account with Page tokens but no access_token is stored and "
    "the log says its replies will fail") {
  LogCapture log("social");  // before the daemon, which logs from its own threads
  MetaDaemon d([](config::Meta& m) {
    m.pages = {{"1111", "page1-token"}};
    m.access_token.clear();
  });
  REQUIRE(d.post(whatsapp("16315551181", "wamid.NOTOKEN1", "hi")).status == 200);
  REQUIRE(d.post(whatsapp("16315551181", "wamid.NOTOKEN2", "again")).status == 200);
  REQUIRE(d.post(to_page("page", "1111", "PSID_9", "m_page1", "a Page's customer")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; }));
  d.stop();
  auto lines = log.lines_with("a WhatsApp message arrived, but the account has no access_token");
  REQUIRE(lines.size() == 1);  // two messages, one line: at most one an hour
  MESSAGE(lines[0]);
  CHECK(lines[0].find("warning [meta:meta]") == 0);
  CHECK(lines[0].find("channels.meta.access_token_env") != std::string::npos);
}

TEST_CASE(
    "meta: the repeated no-access_token warning counts the WhatsApp messages left out, not the "
    "webhooks") {
  LogCapture log("social");  // before the daemon, which logs from its own threads
  MetaDaemon d([](config::Meta& m) { m.access_token.clear(); },
               [](AppOptions& o) { o.whatsapp_warning_every = std::chrono::seconds(3); });
  REQUIRE(d.post(whatsapp("16315551181", "wamid.LEFT1", "one")).status == 200);
  // Left out: one webhook carrying two messages, then one carrying one.
  std::string two = whatsapp("16315551181", "wamid.LEFT2", "two");
  const std::string end = "]}}]}]}";  // the end of the messages array, and of the body
  REQUIRE(two.ends_with(end));
  two.insert(
      two.size() - end.size(),
      R"(,{"from":"16315551181","id":"wamid.LEFT3","timestamp":"1767322800","text":{"body":"three"},"type":"text"})");
  REQUIRE(d.post(two).status == 200);
  REQUIRE(d.post(whatsapp("16315551181", "wamid.LEFT4", "four")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 4; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(3100));
  REQUIRE(d.post(whatsapp("16315551181", "wamid.LEFT5", "five")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 5; }));
  d.stop();
  auto lines = log.lines_with("a WhatsApp message arrived, but the account has no access_token");
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].find("more") == std::string::npos);
  MESSAGE(lines[1]);
  CHECK(lines[1].find("(3 more WhatsApp messages came since the last line; at most one line an "
                      "hour)") != std::string::npos);
}

TEST_CASE("meta: a WhatsApp message to an account with its access_token logs no such warning") {
  LogCapture log("social");
  MetaDaemon d([](config::Meta& m) { m.pages = {{"1111", "page1-token"}}; });
  REQUIRE(d.post(whatsapp("16315551181", "wamid.TOKEN1", "hi")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  d.stop();
  CHECK(log.lines_with("has no access_token").empty());
}

TEST_CASE(
    "meta: a 5xx to a reply is an unknown outcome: failed, not retried (Messenger and "
    "WhatsApp)") {
  MetaDaemon d;
  REQUIRE(d.post(messenger("m_5xx", "help")).status == 200);
  REQUIRE(d.post(whatsapp("16505551234", "wamid.5XX", "hi")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  auto q = d.queued();
  // A gateway's 502 after it passed the request on, and Graph's own 500 (code 2, "Service
  // temporarily unavailable", is_transient): neither says the message was not delivered.
  d.graph.answer_next_send(502, "<html><body>502 Bad Gateway</body></html>");
  auto m = d.send("messenger", "meta", reply_to(q[0], "01JM5XX1", "On it."));
  CHECK(m.status == SendResult::Status::failed);
  CHECK(m.unknown);
  CHECK_MESSAGE(m.error.rfind("outcome unknown: the request went out and Messenger answered "
                              "HTTP 502",
                              0) == 0,
                m.error);
  CHECK(m.error.find("check the conversation on Messenger") != std::string::npos);
  d.graph.answer_next_send(
      500,
      R"({"error":{"message":"(#2) Service temporarily unavailable","type":"OAuthException","is_transient":true,"code":2}})");
  auto w = d.send("whatsapp", "meta", reply_to(q[1], "01JM5XX2", "Hello!"));
  CHECK(w.status == SendResult::Status::failed);
  CHECK(w.unknown);
  CHECK_MESSAGE(w.error.find("WhatsApp answered HTTP 500 ((#2) Service temporarily unavailable)") !=
                    std::string::npos,
                w.error);
  CHECK(d.graph.sent().size() == 2);
}

TEST_CASE(
    "meta: a reply over the platform's text limit is refused with 400 (Messenger 2000 "
    "characters, Instagram 1000 bytes, WhatsApp 4096 characters)") {
  MetaDaemon d;
  REQUIRE(d.post(messenger("m_long", "help")).status == 200);
  REQUIRE(d.post(to_page("instagram", "PAGE_ID", "IGSID_1", "ig_long", "hi")).status == 200);
  REQUIRE(d.post(whatsapp("16505551234", "wamid.LONG", "hi")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; }));
  AgentClient alice(d.app->port(), "alice-token");
  std::map<std::string, std::string> ids;  // by channel
  for (int i = 0; i < 3; ++i) {
    auto in = alice.claim("general");
    ids[s(in.at("channel"))] = s(in.at("id"));
  }
  REQUIRE(ids.size() == 3);
  auto reply = [&](const std::string& channel, const std::string& text) {
    return alice.act(ids.at(channel), "reply",
                     boost::json::serialize(boost::json::object{{"text", text}}));
  };
  auto refused = [](const HttpResponse& r, const std::string& says) {
    CHECK(r.status == 400);
    CHECK_MESSAGE(r.body.find(says) != std::string::npos, r.body);
  };
  refused(reply("messenger", std::string(2001, 'a')),
          "is 2001 characters long; a Messenger message takes at most 2000 characters");
  // 501 "é": 501 characters, 1002 bytes.
  std::string accents;
  for (int i = 0; i < 501; ++i) {
    accents += "\xC3\xA9";
  }
  refused(reply("instagram", accents),
          "is 1002 bytes long; an Instagram message takes at most 1000 bytes");
  refused(reply("whatsapp", std::string(4097, 'a')),
          "is 4097 characters long; a WhatsApp message takes at most 4096 characters");
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE direction = 'outbound'") == 0);
  // At the limits: accepted (code points, not bytes, for Messenger and WhatsApp).
  std::string messenger_max;
  for (int i = 0; i < 2000; ++i) {
    messenger_max += "\xC3\xA9";
  }
  CHECK(reply("messenger", messenger_max).status == 202);
  CHECK(reply("instagram", std::string(1000, 'a')).status == 202);
  CHECK(reply("whatsapp", std::string(4096, 'a')).status == 202);
}

namespace {
std::string graph_error(int code, const std::string& message) {
  return R"({"error":{"message":"()" + message + R"(","type":"OAuthException","code":)" +
         std::to_string(code) + "}}";
}
}  // namespace

TEST_CASE(
    "meta: a rate limit of a Page, a WhatsApp number or the app pauses that scope's replies "
    "without a request, while the others go on") {
  using namespace std::chrono_literals;
  MetaDaemon d;
  REQUIRE(d.post(messenger("m_lim1", "help")).status == 200);
  REQUIRE(d.post(to_page("page", "PAGE_2", "PSID_9", "m_lim2", "hello")).status == 200);
  REQUIRE(d.post(whatsapp("16505551234", "wamid.LIM1", "hi")).status == 200);
  REQUIRE(d.post(whatsapp("16505559876", "wamid.LIM2", "hi")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 4; }));
  auto q = d.queued();
  int n = 0;
  auto reply = [&](int parent) {
    ++n;
    return reply_to(q[parent], "01JMLIM" + std::to_string(n), "Answer " + std::to_string(n));
  };
  auto held_for = [](const SendResult& r, std::chrono::milliseconds at_least,
                     std::chrono::milliseconds at_most) {
    CHECK(r.status == SendResult::Status::retry);
    CHECK(r.account_paused);
    CHECK(r.retry_after >= at_least);
    CHECK(r.retry_after <= at_most);
  };

  // The Page's limit (32): a minute's pause of that Page, no Retry-After.
  d.graph.error_next(400, graph_error(32, "#32) Page request limit reached"));
  auto met = d.send("messenger", "meta", reply(0));
  held_for(met, 59s, 60s);
  CHECK_MESSAGE(met.error.rfind("(#32) Page request limit reached (rate limit of the Page "
                                "PAGE_ID, code 32: its replies wait until ",
                                0) == 0,
                met.error);
  CHECK(d.graph.requests() == 1);
  // Another reply from that Page waits without asking Meta.
  auto held = d.send("messenger", "meta", reply(0));
  held_for(held, 58s, 60s);
  CHECK(held.error == met.error);
  CHECK(d.graph.requests() == 1);
  // Another Page's reply and WhatsApp's go on.
  CHECK(d.send("messenger", "meta", reply(1)).status == SendResult::Status::sent);
  CHECK(d.send("whatsapp", "meta", reply(2)).status == SendResult::Status::sent);
  CHECK(d.graph.requests() == 3);

  // The number's throughput (130429) pauses its replies to every customer, with Meta's
  // Retry-After when it names one.
  d.graph.error_next(400, graph_error(130429, "#130429) Rate limit hit"), {{"Retry-After", "300"}});
  held_for(d.send("whatsapp", "meta", reply(2)), 299s, 300s);
  held_for(d.send("whatsapp", "meta", reply(3)), 298s, 300s);
  CHECK(d.graph.requests() == 4);

  // The pair rate limit (131056) is one customer's: only that reply waits, and spends its
  // attempt (throttled), as before.
  d.graph.error_next(400, graph_error(131056,
                                      "#131056) (Business Account, Consumer Account) "
                                      "pair rate limit hit"));
  auto pair = d.send("messenger", "meta", reply(1));
  CHECK(pair.status == SendResult::Status::retry);
  CHECK(!pair.account_paused);
  CHECK(pair.throttled);
  CHECK(d.send("messenger", "meta", reply(1)).status == SendResult::Status::sent);
  CHECK(d.graph.requests() == 6);

  // The app's limit (4) holds every reply of the account.
  d.graph.error_next(400, graph_error(4, "#4) Application request limit reached"));
  held_for(d.send("messenger", "meta", reply(1)), 59s, 60s);
  auto app = d.send("messenger", "meta", reply(1));
  held_for(app, 58s, 60s);
  CHECK(app.error.find("(rate limit of the app, code 4: its replies wait until ") !=
        std::string::npos);
  CHECK(d.graph.requests() == 7);
  CHECK(d.metrics().find(
            R"(switchboard_social_send_errors_total{channel="meta",account="meta"} 4)") !=
        std::string::npos);
}

TEST_CASE(
    "meta: replies held by a Page's rate limit spend no attempts and go once it is over, the "
    "Page asked once meanwhile") {
  using namespace std::chrono_literals;
  LogCapture log("social");
  MetaDaemon d;
  REQUIRE(d.post(messenger("m_p1", "help")).status == 200);
  REQUIRE(d.post(to_page("page", "PAGE_ID", "PSID_2", "m_p2", "me too")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  AgentClient alice(d.app->port(), "alice-token");
  auto first = alice.claim("general");
  auto second = alice.claim("general");
  d.graph.error_next(400, graph_error(32, "#32) Page request limit reached"),
                     {{"Retry-After", "2"}});
  std::string one = alice.reply(s(first.at("id")), "First answer.");
  REQUIRE(eventually([&] {
    return d.rows(
               "SELECT count(*) FROM sends WHERE state='pending' AND attempts=0 AND "
               "account_paused=1 AND last_error LIKE '%rate limit of the Page PAGE_ID%'") == 1;
  }));
  std::string two = alice.reply(s(second.at("id")), "Second answer.");
  // Held without a request, its attempts unspent, until the pause ends; then both go.
  auto sent_one = alice.outbound_when(s(first.at("customer").at("id")), one, "sent", 1);
  auto sent_two = alice.outbound_when(s(second.at("customer").at("id")), two, "sent", 1);
  CHECK(d.graph.requests() == 3);
  CHECK(d.graph.sent().size() == 2);
  CHECK(log.lines_with("rate limit of the Page PAGE_ID reached (code 32").size() == 1);
  CHECK(eventually([&] { return !log.lines_with("the rate limit is over").empty(); }));
}

// Meta's app limit (code 4) that never lifts: the reply no longer waits forever (holding the
// later replies of its conversation) but fails once it is 24 hours old, past Meta's messaging
// window, saying why.
TEST_CASE("meta: a reply paused past Meta's 24-hour messaging window fails, saying why") {
  MetaDaemon d;
  REQUIRE(d.post(messenger("m_old1", "help")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  AgentClient alice(d.app->port(), "alice-token");
  auto item = alice.claim("general");
  d.graph.error_next(400, graph_error(4, "#4) Application request limit reached"),
                     {{"Retry-After", "2"}});
  std::string id = alice.reply(s(item.at("id")), "An answer.");
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE state='pending' AND account_paused=1") == 1;
  }));
  CHECK(d.graph.sent().empty());
  {
    // The reply was written 25 hours ago; Meta still answers code 4 when asked.
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec("UPDATE sends SET created_at = created_at - 25 * 3600 * 1000");
  }
  d.graph.error_next(400, graph_error(4, "#4) Application request limit reached"),
                     {{"Retry-After", "2"}});
  REQUIRE(eventually([&] { return d.rows("SELECT count(*) FROM sends WHERE state='failed'") == 1; },
                     std::chrono::seconds(10)));
  storage::Db db(d.dir.file("switchboard.db"), true);
  auto error = db.prepare("SELECT last_error FROM sends");
  REQUIRE(error.step());
  CHECK_MESSAGE(error.text(0).find("past Meta's messaging window") != std::string::npos,
                error.text(0));
  CHECK(d.graph.sent().empty());
}
