// The Twilio route end to end, without sockets: a form post as Twilio sends it.
#include <doctest/doctest.h>

#include "channels/voice/signatures.hpp"
#include "channels/voice/twilio.hpp"
#include "helpers.hpp"
#include "routing/identity.hpp"

using namespace sb;
using namespace sb::voice;
using sb::voice::test::kCanon;
using sb::voice::test::Request;

// Named per file: the test programs are unity builds (helpers such as kAnn or config() would
namespace twilio_test {

namespace {

sb::config::Twilio config(std::string public_url = "https://mycompany.com") {
  sb::config::Twilio c;
  c.name = "voice";
  c.auth_token = "12345";
  c.public_url = std::move(public_url);
  return c;
}

std::string encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else if (c == ' ') {
      out.push_back('+');
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// A form post signed the way Twilio signs it, for https://mycompany.com + target.
Request signed_post(const FormParams& params, std::string target = "/webhooks/twilio/voice") {
  Request r;
  r.target = std::move(target);
  r.content_type = "application/x-www-form-urlencoded; charset=UTF-8";
  for (const auto& [k, v] : params) {
    r.body += (r.body.empty() ? "" : "&") + encode(k) + "=" + encode(v);
  }
  r.with("X-Twilio-Signature",
         twilio_signature("12345", "https://mycompany.com" + r.target, params));
  return r;
}

FormParams status_callback(std::string status) {
  return {{"CallSid", "CA0001"},
          {"AccountSid", "AC1"},
          {"From", "+14155550100"},
          {"To", "+14155550199"},
          {"Direction", "inbound"},
          {"CallStatus", std::move(status)},
          {"SequenceNumber", "2"},
          {"Timestamp", "Tue, 11 Feb 2025 21:26:28 +0000"},
          {"CallbackSource", "call-progress-events"}};
}

WebhookResult run(const Request& r, const sb::config::Twilio& c = config()) {
  return handle_twilio(c, r.view(), "US", kCanon);
}

}  // namespace

TEST_CASE("twilio route: the published vector, posted as a form") {
  // Body in the wire order Twilio uses; signature from the helper libraries' tests.
  Request r;
  r.target = "/myapp.php?foo=1&bar=2";
  r.content_type = "application/x-www-form-urlencoded";
  r.body =
      "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309"
      "&To=%2B18005551212";
  r.with("X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
  for (std::string url :
       {"https://mycompany.com", "https://mycompany.com/", "https://mycompany.com:443"}) {
    CAPTURE(url);
    auto res = run(r, config(url));
    REQUIRE(res.status == 200);
    REQUIRE(res.event.has_value());
    CHECK(res.event->call.external_id == "CA1234567890ABCDE");
    CHECK(res.event->call.from->value == "+14158675309");
    CHECK(res.response_content_type == "text/xml");
    CHECK(res.response_body == R"(<?xml version="1.0" encoding="UTF-8"?><Response/>)");
  }
  SUBCASE("the :443 variant signature too") {
    r.with("X-Twilio-Signature", "kvajT1Ptam85bY51eRf/AJRuM3w=");
    CHECK(run(r).status == 200);
  }
}

TEST_CASE("twilio route: a status callback becomes a call event") {
  auto res = run(signed_post(status_callback("completed")));
  REQUIRE(res.status == 200);
  REQUIRE(res.event);
  const auto& in = res.event->call;
  CHECK(in.channel == "voice");
  CHECK(in.kind == "call");
  CHECK(in.account == "voice");
  CHECK(in.direction == "inbound");
  CHECK(in.external_id == "CA0001");
  REQUIRE(in.from);
  CHECK(in.from->type == "phone");
  CHECK(in.from->value == "+14155550100");
  REQUIRE(in.to.size() == 1);
  CHECK(in.to[0].value == "+14155550199");
  CHECK(in.occurred_at_ms == 1739309188000);
  CHECK(res.event->order_key == 2);  // SequenceNumber wins over Timestamp
  REQUIRE(in.call);
  CHECK(in.call->status == "completed");
  CHECK(in.call->direction == "inbound");
  CHECK(in.call->duration_s == -1);
}

TEST_CASE("twilio route: fields") {
  SUBCASE("duration and recording") {
    auto p = status_callback("completed");
    p.push_back({"CallDuration", "42"});
    p.push_back({"RecordingUrl", "https://api.twilio.com/rec/RE1"});
    auto res = run(signed_post(p));
    REQUIRE(res.event);
    CHECK(res.event->call.call->duration_s == 42);
    CHECK(res.event->call.call->recording_url == "https://api.twilio.com/rec/RE1");
  }
  SUBCASE("order_key falls back to Timestamp, then 0") {
    FormParams p = {{"CallSid", "CA1"},
                    {"CallStatus", "ringing"},
                    {"Timestamp", "Tue, 11 Feb 2025 16:26:28 -0500"}};
    auto res = run(signed_post(p));
    REQUIRE(res.event);
    CHECK(res.event->order_key == 1739309188000);
    res = run(signed_post({{"CallSid", "CA1"}, {"CallStatus", "ringing"}}));
    REQUIRE(res.event);
    CHECK(res.event->order_key == 0);
    CHECK(res.event->call.occurred_at_ms == 0);
  }
  SUBCASE("a recording status callback carries no status change") {
    auto res = run(signed_post({{"CallSid", "CA1"},
                                {"RecordingSid", "RE1"},
                                {"RecordingStatus", "completed"},
                                {"RecordingUrl", "https://api.twilio.com/rec/RE1"}}));
    REQUIRE(res.event);
    CHECK(res.event->call.call->status == "");
    CHECK(res.event->call.call->recording_url == "https://api.twilio.com/rec/RE1");
  }
  SUBCASE("outbound calls: the customer is To") {
    auto p = status_callback("no-answer");
    p[4].second = "outbound-api";
    auto res = run(signed_post(p));
    REQUIRE(res.event);
    CHECK(res.event->call.direction == "outbound");
    CHECK(res.event->call.from->value == "+14155550199");
    CHECK(res.event->call.to[0].value == "+14155550100");
  }
  SUBCASE("national numbers use the default region") {
    auto p = status_callback("ringing");
    p[2].second = "(415) 555-0100";
    auto res = run(signed_post(p));
    REQUIRE(res.event);
    CHECK(res.event->call.from->value == "+14155550100");
  }
}

// A <Dial><Number> child leg: its own CallSid, ParentCallSid, Direction=outbound-dial, the
// caller's number in From (the default caller ID) and the agent's phone in To.
FormParams dial_leg(std::string status) {
  auto p = status_callback(std::move(status));
  p[0].second = "CA-leg";
  p[3].second = "+14155550166";
  p[4].second = "outbound-dial";
  p.push_back({"ParentCallSid", "CA0001"});
  return p;
}

TEST_CASE("twilio route: a <Dial> child leg's event is an event of its parent call") {
  SUBCASE("answered: the leg moves the call forward and says who answered") {
    auto res = run(signed_post(dial_leg("in-progress")));
    REQUIRE(res.event);
    CHECK(res.event->child_leg);
    const auto& in = res.event->call;
    CHECK(in.external_id == "CA0001");
    CHECK_FALSE(in.from);  // neither the caller ID it showed nor the agent is the customer
    CHECK(in.to.empty());
    CHECK(res.event->order_key == 0);
    REQUIRE(in.call);
    CHECK(in.call->status == "in-progress");
    CHECK(in.call->direction == "");
    CHECK(in.call->answered_by == "+14155550166");
    CHECK(in.call->answered_at_ms == 1739309188000);
    REQUIRE(in.call->legs.size() == 1);
    CHECK(in.call->legs[0].id == "CA-leg");
    CHECK(in.call->legs[0].to == "+14155550166");
    CHECK(in.call->legs[0].status == "in-progress");
  }
  SUBCASE("a final status is the leg's alone") {
    for (std::string status : {"completed", "no-answer", "busy", "canceled", "failed"}) {
      CAPTURE(status);
      auto p = dial_leg(status);
      p.push_back({"CallDuration", status == "completed" ? "8" : "0"});
      auto res = run(signed_post(p));
      REQUIRE(res.event);
      CHECK(res.event->call.call->status == "");
      CHECK(res.event->call.call->legs.at(0).status == status);
      CHECK(res.event->call.call->answered_by == (status == "completed" ? "+14155550166" : ""));
      if (status == "completed") {
        CHECK(res.event->call.call->answered_at_ms == 1739309180000);  // Timestamp - 8 s
        CHECK(res.event->call.call->legs.at(0).duration_s == 8);
      }
    }
  }
  SUBCASE("a SIP agent is kept as sent") {
    auto p = dial_leg("in-progress");
    p[3].second = "sip:alice@support.sip.twilio.com";
    auto res = run(signed_post(p));
    REQUIRE(res.event);
    CHECK(res.event->call.call->answered_by == "sip:alice@support.sip.twilio.com");
  }
  SUBCASE("a ParentCallSid without outbound-dial stays a call of its own") {
    auto p = status_callback("completed");
    p.push_back({"ParentCallSid", "CA9999"});
    auto res = run(signed_post(p));
    REQUIRE(res.event);
    CHECK_FALSE(res.event->child_leg);
    CHECK(res.event->call.external_id == "CA0001");
    CHECK(res.event->call.call->status == "completed");
  }
}

// <Dial action>: a request about the parent call that also tells how the dialled leg ended.
TEST_CASE("twilio route: the Dial action callback lists the dialled leg on the parent") {
  SUBCASE("DialCallSid, DialCallStatus and DialCallDuration make a leg without a number") {
    auto p = status_callback("in-progress");
    p.push_back({"DialCallSid", "CA-leg"});
    p.push_back({"DialCallStatus", "completed"});
    p.push_back({"DialCallDuration", "12"});
    auto res = run(signed_post(p));
    REQUIRE(res.event);
    CHECK_FALSE(res.event->child_leg);  // the parent's own event: its status counts
    CHECK(res.event->call.external_id == "CA0001");
    CHECK(res.event->call.call->status == "in-progress");
    REQUIRE(res.event->call.call->legs.size() == 1);
    CHECK(res.event->call.call->legs[0].id == "CA-leg");
    CHECK(res.event->call.call->legs[0].to == "");
    CHECK(res.event->call.call->legs[0].status == "completed");
    CHECK(res.event->call.call->legs[0].duration_s == 12);
    CHECK(res.event->call.call->answered_by == "");  // the action does not say who
  }
  SUBCASE("answered (a conference word) is in-progress, unknown words no status") {
    for (auto [word, status] : {std::pair{"answered", "in-progress"}, std::pair{"what", ""}}) {
      auto p = status_callback("in-progress");
      p.push_back({"DialCallSid", "CA-leg"});
      p.push_back({"DialCallStatus", word});
      auto res = run(signed_post(p));
      REQUIRE(res.event);
      CHECK(res.event->call.call->legs.at(0).status == status);
    }
  }
  SUBCASE("a conference dial carries no DialCallSid: no leg") {
    auto p = status_callback("in-progress");
    p.push_back({"DialCallStatus", "answered"});
    auto res = run(signed_post(p));
    REQUIRE(res.event);
    CHECK(res.event->call.call->legs.empty());
  }
}

TEST_CASE("twilio route: withheld callers yield the call without a caller") {
  for (std::string from : {"+266696687", "266696687", "anonymous", "Anonymous", "RESTRICTED",
                           "unknown", "private", "", "sip:anonymous@anonymous.invalid"}) {
    CAPTURE(from);
    auto p = status_callback("ringing");
    p[2].second = from;
    auto res = run(signed_post(p));
    REQUIRE(res.status == 200);
    REQUIRE(res.event);
    CHECK_FALSE(res.event->call.from.has_value());
    CHECK(res.event->call.external_id == "CA0001");
  }
}

TEST_CASE("twilio route: CallStatus, AnsweredBy and Direction mapping") {
  struct Row {
    std::string call_status, answered_by, expected;
  };
  for (const Row& row :
       std::initializer_list<Row>{{"queued", "", "queued"},
                                  {"initiated", "", "initiated"},
                                  {"ringing", "", "ringing"},
                                  {"in-progress", "", "in-progress"},
                                  {"completed", "", "completed"},
                                  {"busy", "", "busy"},
                                  {"no-answer", "", "no-answer"},
                                  {"failed", "", "failed"},
                                  {"canceled", "", "canceled"},
                                  {"completed", "human", "completed"},
                                  {"completed", "machine_start", "voicemail"},
                                  {"completed", "machine_end_beep", "voicemail"},
                                  {"completed", "machine_end_silence", "voicemail"},
                                  {"completed", "machine_end_other", "voicemail"},
                                  {"in-progress", "machine_start", "in-progress"},
                                  {"some-new-status", "", ""}}) {
    CAPTURE(row.call_status);
    CAPTURE(row.answered_by);
    auto p = status_callback(row.call_status);
    if (!row.answered_by.empty()) {
      p.push_back({"AnsweredBy", row.answered_by});
    }
    auto res = run(signed_post(p));
    REQUIRE(res.event);
    CHECK(res.event->call.call->status == row.expected);
  }
  for (auto [twilio, ours] : std::initializer_list<std::pair<std::string, std::string>>{
           {"inbound", "inbound"},
           {"outbound-api", "outbound"},
           {"outbound-dial", "outbound"},
           {"trunking-originating", "inbound"},
           {"trunking-terminating", "outbound"},
           {"", ""}}) {
    CAPTURE(twilio);
    auto p = status_callback("ringing");
    p[4].second = twilio;
    auto res = run(signed_post(p));
    REQUIRE(res.event);
    CHECK(res.event->call.call->direction == ours);
  }
}

// Answering Machine Detection (https://www.twilio.com/docs/voice/answering-machine-detection):
// AnsweredBy on any request gives the call its machine_detection, with the request's time.
TEST_CASE("twilio route: AnsweredBy on any request is the call's machine_detection") {
  SUBCASE("the AsyncAmdStatusCallback: no CallStatus, no Timestamp") {
    auto res = run(signed_post({{"CallSid", "CA0001"},
                                {"AccountSid", "AC1"},
                                {"AnsweredBy", "machine_start"},
                                {"MachineDetectionDuration", "2140"}}));
    REQUIRE(res.status == 200);
    REQUIRE(res.event);
    REQUIRE(res.event->call.call);
    CHECK(res.event->call.call->status.empty());  // no status change
    CHECK(res.event->call.call->machine_detection == "machine_start");
    CHECK(res.event->call.call->machine_detection_at_ms == 0);
  }
  SUBCASE("the answer-time request of synchronous AMD, and a status callback") {
    for (std::string status : {"in-progress", "completed"}) {
      CAPTURE(status);
      auto p = status_callback(status);
      p.push_back({"AnsweredBy", "human"});
      auto res = run(signed_post(p));
      REQUIRE(res.event);
      CHECK(res.event->call.call->machine_detection == "human");
      CHECK(res.event->call.call->machine_detection_at_ms == 1739309188000);  // its Timestamp
    }
  }
  SUBCASE("none without AnsweredBy") {
    auto res = run(signed_post(status_callback("completed")));
    REQUIRE(res.event);
    CHECK(res.event->call.call->machine_detection.empty());
  }
}

TEST_CASE("twilio route: rejections store nothing") {
  SUBCASE("missing signature: 401") {
    auto r = signed_post(status_callback("completed"));
    r.headers.clear();
    auto res = run(r);
    CHECK(res.status == 401);
    CHECK(res.error_code == "missing_signature");
    CHECK_FALSE(res.event);
  }
  SUBCASE("forged signature: 403") {
    auto r = signed_post(status_callback("completed"));
    r.body += "&CallDuration=9999";  // changed after signing
    auto res = run(r);
    CHECK(res.status == 403);
    CHECK(res.error_code == "bad_signature");
    CHECK_FALSE(res.event);
  }
  SUBCASE("signed for another URL: 403") {
    auto r = signed_post(status_callback("completed"));
    r.target = "/webhooks/twilio/other";
    CHECK(run(r).status == 403);
  }
  SUBCASE("another auth token: 403") {
    auto c = config();
    c.auth_token = "other";
    CHECK(run(signed_post(status_callback("completed")), c).status == 403);
  }
  SUBCASE("wrong content type: 415") {
    auto r = signed_post(status_callback("completed"));
    r.content_type = "text/plain";
    auto res = run(r);
    CHECK(res.status == 415);
    CHECK(res.error_code == "unsupported_media_type");
    CHECK_FALSE(res.event);
  }
  SUBCASE("not POST: 405") {
    auto r = signed_post(status_callback("completed"));
    r.method = "GET";
    CHECK(run(r).status == 405);
  }
  SUBCASE("a form of 300,000 parameters: 400 before any decoding or signature work") {
    Request r;
    r.target = "/webhooks/twilio/voice";
    r.content_type = "application/x-www-form-urlencoded";
    r.body.reserve(900000);
    for (int i = 0; i < 300000; ++i) {
      r.body += "ab&";
    }
    r.with("X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    auto res = run(r);
    CHECK(res.status == 400);
    CHECK(res.error_code == "too_many_parameters");
    CHECK_FALSE(res.event);
    auto ok = status_callback("completed");
    for (int i = 0; ok.size() < 1000; ++i) {  // at the cap: still served
      ok.push_back({"X" + std::to_string(i), "v"});
    }
    CHECK(run(signed_post(ok)).status == 200);
    ok.push_back({"Y", "v"});  // one more: refused
    CHECK(run(signed_post(ok)).error_code == "too_many_parameters");
  }
  SUBCASE("signed but no CallSid: 400 naming the field") {
    auto res = run(signed_post({{"CallStatus", "completed"}}));
    CHECK(res.status == 400);
    CHECK(res.error_message.find("CallSid") != std::string::npos);
    CHECK_FALSE(res.event);
  }
  SUBCASE("signed but a bad CallDuration: 400 naming the field") {
    auto p = status_callback("completed");
    p.push_back({"CallDuration", "forty"});
    auto res = run(signed_post(p));
    CHECK(res.status == 400);
    CHECK(res.error_message.find("CallDuration") != std::string::npos);
  }
  SUBCASE("signed but a bad Timestamp: 400 naming the field") {
    auto p = status_callback("completed");
    p[7].second = "yesterday";
    auto res = run(signed_post(p));
    CHECK(res.status == 400);
    CHECK(res.error_message.find("Timestamp") != std::string::npos);
  }
}

TEST_CASE("twilio route: JSON body with bodySHA256") {
  std::string body =
      R"({"CallSid":"CA9","CallStatus":"busy","From":"+14155550100","SequenceNumber":3})";
  Request r;
  r.target = "/webhooks/twilio/voice?bodySHA256=" + sha256_hex(body);
  r.content_type = "application/json";
  r.body = body;
  r.with("X-Twilio-Signature", twilio_signature("12345", "https://mycompany.com" + r.target, {}));
  auto res = run(r);
  REQUIRE(res.status == 200);
  REQUIRE(res.event);
  CHECK(res.event->call.external_id == "CA9");
  CHECK(res.event->call.call->status == "busy");
  CHECK(res.event->order_key == 3);
  r.body = R"({"CallSid":"CA9","CallStatus":"completed","From":"+14155550100"})";
  CHECK(run(r).status == 403);

  // Signed, but cut short: the answer says where it ends, not "not a JSON object".
  std::string cut = body.substr(0, 25);
  r.target = "/webhooks/twilio/voice?bodySHA256=" + sha256_hex(cut);
  r.body = cut;
  r.headers.clear();
  r.with("X-Twilio-Signature", twilio_signature("12345", "https://mycompany.com" + r.target, {}));
  auto bad = run(r);
  CHECK(bad.status == 400);
  CHECK(bad.error_code == "invalid_json");
  CHECK(bad.error_message == "the body is not valid JSON: incomplete JSON at byte offset 25");
  CHECK_FALSE(bad.event);
}

TEST_CASE("RFC 2822 dates") {
  CHECK(parse_rfc2822("Tue, 11 Feb 2025 21:26:28 +0000") == 1739309188000);
  CHECK(parse_rfc2822("11 Feb 2025 21:26:28 GMT") == 1739309188000);
  CHECK(parse_rfc2822("Tue, 11 Feb 2025 16:26:28 -0500") == 1739309188000);
  CHECK(parse_rfc2822("Tue, 11 Feb 2025 13:26:28 PST") == 1739309188000);
  CHECK(parse_rfc2822("Tue, 11 Feb 2025 21:26 +0000") == 1739309160000);
  CHECK_FALSE(parse_rfc2822("Tue, 11 Foo 2025 21:26:28 +0000"));
  CHECK_FALSE(parse_rfc2822("2025-02-11T21:26:28Z"));
  CHECK_FALSE(parse_rfc2822(""));
}

TEST_CASE("twilio route: keypad digits that are a real national number are a caller") {
  // 266696687 is Twilio's keypad "ANONYMOUS" only where it is no possible number: in Portugal
  // it is a landline of Évora.
  auto p = status_callback("ringing");
  p[2].second = "266696687";
  PhoneCanonicalizer libphonenumber = [](std::string_view raw, std::string_view region) {
    return sb::canonical_phone(raw, region);
  };
  auto res = handle_twilio(config(), signed_post(p).view(), "PT", libphonenumber);
  REQUIRE(res.status == 200);
  REQUIRE(res.event);
  REQUIRE(res.event->call.from.has_value());
  CHECK(res.event->call.from->value == "+351266696687");
}

}  // namespace twilio_test
