// The Telnyx route: Ed25519-signed Call Control events. The tests hold a key pair of their own
// and sign like Telnyx does: base64(Ed25519("{timestamp}|{raw body}")).
#include <doctest/doctest.h>

#include "channels/voice/signatures.hpp"
#include "channels/voice/telnyx.hpp"
#include "helpers.hpp"

using namespace sb::voice;
using sb::voice::test::kCanon;
using sb::voice::test::KeyPair;
using sb::voice::test::Request;

// Named per file: the test programs are unity builds (helpers such as kAnn or config() would
namespace telnyx_test {

namespace {

const KeyPair& telnyx_key() {
  static const KeyPair k;
  return k;
}

sb::config::Telnyx config() {
  sb::config::Telnyx c;
  c.name = "voice-eu";
  c.public_key = telnyx_key().public_b64;
  return c;
}

Request signed_post(std::string body, std::int64_t signed_at = 1767323045,
                    const KeyPair& key = telnyx_key()) {
  Request r;
  r.target = "/webhooks/telnyx/voice-eu";
  r.content_type = "application/json";
  r.body = std::move(body);
  std::string ts = std::to_string(signed_at);
  r.with("telnyx-timestamp", ts);
  r.with("telnyx-signature-ed25519", key.sign(ts + "|" + r.body));
  return r;
}

// Shaped like the call.hangup example of the Telnyx API reference.
std::string event(std::string type, std::string payload_extra = "",
                  std::string occurred_at = "2018-02-02T22:25:27.521992Z") {
  return R"({"data":{"record_type":"event","event_type":")" + type +
         R"(","id":"0ccc7b54",)"
         R"("occurred_at":")" +
         occurred_at +
         R"(","payload":{)"
         R"("call_control_id":"v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg",)"
         R"("connection_id":"7267xxxxxxxxxxxxxx",)"
         R"("call_leg_id":"428c31b6-7af4-4bcb-b7f5-5013ef9657c1",)"
         R"("call_session_id":"428c31b6-7af4-4bcb-b7f5-5013ef9657c2",)"
         R"("client_state":null,"from":"+35319605860","to":"+35319605861")" +
         (payload_extra.empty() ? "" : "," + payload_extra) + "}}}";
}

WebhookResult run(const Request& r, const sb::config::Telnyx& c = config()) {
  return handle_telnyx(c, r.view(), "IE", kCanon);
}

}  // namespace

TEST_CASE("telnyx route: call.hangup becomes a final call event") {
  auto res = run(signed_post(
      event("call.hangup", R"("start_time":"2018-02-02T22:20:27.521992Z","state":"hangup",)"
                           R"("hangup_cause":"normal_clearing","hangup_source":"caller")")));
  REQUIRE(res.status == 200);
  REQUIRE(res.event);
  const auto& in = res.event->call;
  CHECK(in.channel == "voice");
  CHECK(in.kind == "call");
  CHECK(in.account == "voice-eu");
  CHECK(in.external_id == "428c31b6-7af4-4bcb-b7f5-5013ef9657c1");  // call_leg_id
  CHECK(in.occurred_at_ms == 1517610327521);
  CHECK(res.event->order_key == 1517610327521);
  REQUIRE(in.from);
  CHECK(in.from->value == "+35319605860");
  CHECK(in.call->status == "completed");
  CHECK(in.call->duration_s == 300);
  CHECK(in.call->direction == "");  // call.hangup does not say; the fold keeps the stored one
  CHECK(res.response_content_type == "application/json");
}

TEST_CASE("telnyx route: hangup_cause mapping") {
  for (auto [cause, status] :
       std::initializer_list<std::pair<std::string, std::string>>{{"normal_clearing", "completed"},
                                                                  {"time_limit", "completed"},
                                                                  {"user_busy", "busy"},
                                                                  {"call_rejected", "busy"},
                                                                  {"timeout", "no-answer"},
                                                                  {"no_answer", "no-answer"},
                                                                  {"originator_cancel", "canceled"},
                                                                  {"not_found", "failed"},
                                                                  {"unspecified", "unknown"},
                                                                  {"something_new", "unknown"}}) {
    CAPTURE(cause);
    CHECK(telnyx_hangup_status(cause) == status);
    auto res = run(signed_post(event("call.hangup", R"("hangup_cause":")" + cause + "\"")));
    REQUIRE(res.event);
    CHECK(res.event->call.call->status == status);
    if (status != "completed" && status != "unknown") {
      CHECK(res.event->call.call->duration_s == 0);  // ended unanswered
    }
  }
}

TEST_CASE("telnyx route: other events") {
  SUBCASE("call.initiated, incoming") {
    auto res =
        run(signed_post(event("call.initiated", R"("direction":"incoming","state":"parked")")));
    REQUIRE(res.event);
    CHECK(res.event->call.call->status == "initiated");
    CHECK(res.event->call.call->direction == "inbound");
    CHECK(res.event->call.direction == "inbound");
    CHECK(res.event->call.from->value == "+35319605860");
  }
  SUBCASE("call.initiated, outgoing: the customer is `to`") {
    auto res = run(signed_post(event("call.initiated", R"("direction":"outgoing")")));
    REQUIRE(res.event);
    CHECK(res.event->call.direction == "outbound");
    CHECK(res.event->call.from->value == "+35319605861");
  }
  SUBCASE("call.answered") {
    auto res = run(signed_post(event("call.answered")));
    REQUIRE(res.event);
    CHECK(res.event->call.call->status == "in-progress");
  }
  SUBCASE("call.recording.saved: the permanent URL, no status change") {
    auto res = run(signed_post(event(
        "call.recording.saved",
        R"("recording_urls":{"mp3":"https://tmp.example/r.mp3","wav":"https://tmp.example/r.wav"},)"
        R"("public_recording_urls":{"mp3":null,"wav":"https://pub.example/r.wav"})")));
    REQUIRE(res.event);
    CHECK(res.event->call.call->status == "");
    CHECK(res.event->call.call->recording_url == "https://pub.example/r.wav");
    CHECK(res.event->call.call->recording_id.empty());  // none sent
    res = run(signed_post(
        event("call.recording.saved", R"("recording_urls":{"mp3":"https://tmp.example/r.mp3"})")));
    REQUIRE(res.event);
    CHECK(res.event->call.call->recording_url == "https://tmp.example/r.mp3");
    // The presigned recording_urls expire in 10 minutes: the id fetches fresh ones.
    res = run(signed_post(event("call.recording.saved",
                                R"("recording_id":"10cd86ac-fef8-4765-b203-0f7511f9fc75",)"
                                R"("recording_urls":{"mp3":"https://tmp.example/r.mp3"})")));
    REQUIRE(res.event);
    CHECK(res.event->call.call->recording_id == "10cd86ac-fef8-4765-b203-0f7511f9fc75");
  }
  SUBCASE("answering machine detection: the result, no status change") {
    auto res = run(signed_post(event("call.machine.detection.ended", R"("result":"machine")")));
    REQUIRE(res.event);
    CHECK(res.event->call.external_id == "428c31b6-7af4-4bcb-b7f5-5013ef9657c1");
    CHECK(res.event->call.call->status == "");
    CHECK(res.event->call.call->machine_detection == "machine");
    res = run(
        signed_post(event("call.machine.premium.detection.ended", R"("result":"human_business")")));
    REQUIRE(res.event);
    CHECK(res.event->call.call->machine_detection == "human_business");
  }
  SUBCASE("events a call record does not need: 200, nothing stored") {
    auto res = run(signed_post(event("call.playback.ended")));
    CHECK(res.status == 200);
    CHECK_FALSE(res.event);
    res = run(signed_post(event("call.machine.greeting.ended", R"("result":"beep_detected")")));
    CHECK(res.status == 200);
    CHECK_FALSE(res.event);
  }
  SUBCASE("call_control_id when there is no call_leg_id") {
    auto res = run(signed_post(
        R"({"data":{"event_type":"call.answered","occurred_at":"2018-02-02T22:25:27Z",)"
        R"("payload":{"call_control_id":"v3:abc","from":"anonymous","to":"+35319605861"}}})"));
    REQUIRE(res.event);
    CHECK(res.event->call.external_id == "v3:abc");
    CHECK_FALSE(res.event->call.from);  // withheld
  }
}

TEST_CASE("telnyx route: signatures") {
  std::string body = event("call.hangup", R"("hangup_cause":"timeout")");
  SUBCASE("missing headers: 401") {
    auto r = signed_post(body);
    r.headers.erase("telnyx-signature-ed25519");
    auto res = run(r);
    CHECK(res.status == 401);
    CHECK(res.error_code == "missing_signature");
    CHECK_FALSE(res.event);
    r = signed_post(body);
    r.headers.erase("telnyx-timestamp");
    CHECK(run(r).status == 401);
  }
  SUBCASE("signed by another key: 403") {
    KeyPair other;
    auto res = run(signed_post(body, 1767323045, other));
    CHECK(res.status == 403);
    CHECK(res.error_code == "bad_signature");
    CHECK_FALSE(res.event);
  }
  SUBCASE("body changed after signing: 403") {
    auto r = signed_post(body);
    r.body = event("call.hangup", R"("hangup_cause":"normal_clearing")");
    CHECK(run(r).status == 403);
  }
  SUBCASE("timestamp header changed after signing: 403") {
    auto r = signed_post(body);
    r.with("telnyx-timestamp", "1767323046");
    CHECK(run(r).error_code == "bad_signature");
  }
  SUBCASE("garbage signature: 403") {
    auto r = signed_post(body);
    r.with("telnyx-signature-ed25519", "not base64!");
    CHECK(run(r).status == 403);
  }
  SUBCASE("stale: more than 300 s old or ahead") {
    auto res = run(signed_post(body, 1767323045 - 301));
    CHECK(res.status == 403);
    CHECK(res.error_code == "stale_timestamp");
    CHECK_FALSE(res.event);
    CHECK(run(signed_post(body, 1767323045 + 301)).error_code == "stale_timestamp");
    CHECK(run(signed_post(body, 1767323045 - 300)).status == 200);
    CHECK(run(signed_post(body, 1767323045 + 300)).status == 200);
  }
  SUBCASE("a broken configured key: 500, not a client error") {
    auto c = config();
    c.public_key = "AAAA";
    CHECK(run(signed_post(body), c).status == 500);
  }
}

TEST_CASE("telnyx route: 415 and 400") {
  auto r = signed_post(event("call.answered"));
  r.content_type = "application/x-www-form-urlencoded";
  CHECK(run(r).status == 415);
  r.content_type = "Application/JSON; charset=utf-8";
  CHECK(run(r).status == 200);

  auto res = run(signed_post("{not json"));
  CHECK(res.status == 400);
  CHECK(res.error_code == "invalid_json");
  CHECK(res.error_message == "the body is not valid JSON: syntax error at byte offset 1");
  res = run(signed_post("{\"data\":{\"event_type\":\"call.answered\xc0\"}}"));
  CHECK(res.status == 400);
  CHECK(res.error_message == "the body is not valid JSON: invalid UTF-8 at byte offset 36");
  CHECK_FALSE(res.event);
  res = run(signed_post(R"({"event_type":"call.answered"})"));
  CHECK(res.status == 400);
  CHECK(res.error_message.find("data") != std::string::npos);
  res = run(signed_post(R"({"data":{"event_type":"call.answered","payload":{"from":"+1"}}})"));
  CHECK(res.status == 400);
  CHECK(res.error_message.find("call_leg_id") != std::string::npos);
  res = run(signed_post(event("call.answered", "", "last tuesday")));
  CHECK(res.status == 400);
  CHECK(res.error_message.find("occurred_at") != std::string::npos);
  CHECK_FALSE(res.event);
}

}  // namespace telnyx_test
