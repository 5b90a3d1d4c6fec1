// The generic PBX route, including the README's openssl example as a fixed vector:
//   body='{"event":"missed","call_id":"pbx-42","from":"(415) 555-0100","to":"+14155550199",
//          "direction":"inbound","occurred_at":"2026-01-02T03:04:05Z"}'   (one line)
//   printf '%s.%s' 1767323045 "$body" | openssl dgst -sha256 -hmac dev-pbx-secret
//   SHA2-256(stdin)= f632e16b89bf7c7c6837dd1384165650f26a3076347ee6da0a5091529ae367da
#include <doctest/doctest.h>

#include "channels/voice/pbx.hpp"
#include "channels/voice/signatures.hpp"
#include "helpers.hpp"

using namespace sb::voice;
using sb::voice::test::kCanon;
using sb::voice::test::Request;

// Named per file: the test programs are unity builds (helpers such as kAnn or config() would
// clash across files in an anonymous namespace).
namespace pbx_test {

namespace {

const std::string kSecret = "dev-pbx-secret";
const std::string kBody =
    R"({"event":"missed","call_id":"pbx-42","from":"(415) 555-0100","to":"+14155550199",)"
    R"("direction":"inbound","occurred_at":"2026-01-02T03:04:05Z"})";
const std::string kOpensslHex = "f632e16b89bf7c7c6837dd1384165650f26a3076347ee6da0a5091529ae367da";

sb::config::CallWebhook config() {
  sb::config::CallWebhook c;
  c.name = "pbx";
  c.secret = kSecret;
  return c;
}

Request post(std::string body, std::string signature_header) {
  Request r;
  r.target = "/webhooks/calls/pbx";
  r.content_type = "application/json";
  r.body = std::move(body);
  if (!signature_header.empty()) {
    r.with("X-Switchboard-Signature", std::move(signature_header));
  }
  return r;
}

Request signed_post(std::string body, std::int64_t t = 1767323045) {
  std::string header = pbx_signature_header(kSecret, t, body);
  return post(std::move(body), std::move(header));
}

WebhookResult run(const Request& r) {
  return handle_pbx(config(), r.view(), "US", kCanon);
}

}  // namespace

TEST_CASE("pbx route: the README example, signed by openssl") {
  CHECK(pbx_signature_header(kSecret, 1767323045, kBody) == "t=1767323045,v1=" + kOpensslHex);
  Request r = post(kBody, "t=1767323045,v1=" + kOpensslHex);
  r.now = 1767323045 + 5;
  auto res = run(r);
  REQUIRE(res.status == 200);
  REQUIRE(res.event);
  const auto& in = res.event->call;
  CHECK(in.channel == "voice");
  CHECK(in.kind == "call");
  CHECK(in.account == "pbx");
  CHECK(in.external_id == "pbx-42");
  CHECK(in.direction == "inbound");
  REQUIRE(in.from);
  CHECK(in.from->value == "+14155550100");  // national format, default region US
  CHECK(in.occurred_at_ms == 1767323045000);
  CHECK(res.event->order_key == 1767323045000);
  CHECK(in.call->status == "no-answer");
  CHECK(in.call->duration_s == -1);
  CHECK(res.response_body == R"({"status":"ok"})");
}

TEST_CASE("pbx route: signature header forms") {
  SUBCASE("several v1 entries (secret rotation), spaces, upper-case hex") {
    std::string upper = kOpensslHex;
    for (char& c : upper) {
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    CHECK(run(post(kBody, "t=1767323045, v1=" + std::string(64, '0') + ", v1=" + upper)).status ==
          200);
  }
  SUBCASE("missing: 401") {
    auto res = run(post(kBody, ""));
    CHECK(res.status == 401);
    CHECK(res.error_code == "missing_signature");
    CHECK_FALSE(res.event);
  }
  SUBCASE("another secret: 403") {
    auto res = run(post(kBody, pbx_signature_header("other", 1767323045, kBody)));
    CHECK(res.status == 403);
    CHECK(res.error_code == "bad_signature");
    CHECK_FALSE(res.event);
  }
  SUBCASE("t changed after signing: 403") {
    CHECK(run(post(kBody, "t=1767323046,v1=" + kOpensslHex)).status == 403);
  }
  SUBCASE("malformed: 403") {
    CHECK(run(post(kBody, "v1=" + kOpensslHex)).status == 403);
    CHECK(run(post(kBody, "t=1767323045")).status == 403);
    CHECK(run(post(kBody, "t=soon,v1=" + kOpensslHex)).status == 403);
  }
  SUBCASE("stale: 403") {
    auto res = run(signed_post(kBody, 1767323045 - 301));
    CHECK(res.status == 403);
    CHECK(res.error_code == "stale_timestamp");
    CHECK_FALSE(res.event);
    CHECK(run(signed_post(kBody, 1767323045 + 301)).error_code == "stale_timestamp");
    CHECK(run(signed_post(kBody, 1767323045 - 300)).status == 200);
  }
}

TEST_CASE("pbx route: event mapping") {
  for (auto [event, status] :
       std::initializer_list<std::pair<std::string, std::string>>{{"ringing", "ringing"},
                                                                  {"answered", "in-progress"},
                                                                  {"completed", "completed"},
                                                                  {"missed", "no-answer"},
                                                                  {"voicemail", "voicemail"}}) {
    CAPTURE(event);
    auto res = run(signed_post(R"({"event":")" + event + R"(","call_id":"c1"})"));
    REQUIRE(res.event);
    CHECK(res.event->call.call->status == status);
  }
}

TEST_CASE("pbx route: optional fields") {
  auto res = run(signed_post(
      R"({"event":"completed","call_id":"c1","from":"+14155550199","to":"+14155550100",)"
      R"("direction":"outbound","duration_s":42,"recording_url":"https://pbx.example/r/1.wav"})"));
  REQUIRE(res.event);
  const auto& in = res.event->call;
  CHECK(in.direction == "outbound");
  CHECK(in.from->value == "+14155550100");  // the customer of an outbound call is `to`
  CHECK(in.call->duration_s == 42);
  CHECK(in.call->recording_url == "https://pbx.example/r/1.wav");
  CHECK(in.occurred_at_ms == 0);     // received_at will be used
  CHECK(res.event->order_key == 0);  // no occurred_at: no order (not the signature time)
  res = run(signed_post(R"({"event":"ringing","call_id":"c2","from":"anonymous"})"));
  REQUIRE(res.event);
  CHECK_FALSE(res.event->call.from);
  CHECK(res.event->call.direction == "inbound");
}

TEST_CASE("pbx route: 400 names the field, 415 for other types") {
  struct Row {
    std::string body, field;
  };
  for (const Row& row : std::initializer_list<Row>{
           {R"({"call_id":"c1"})", "event"},
           {R"({"event":"hung-up","call_id":"c1"})", "event"},
           {R"({"event":"missed"})", "call_id"},
           {R"({"event":"missed","call_id":""})", "call_id"},
           {R"({"event":"missed","call_id":7})", "call_id"},
           {R"({"event":"missed","call_id":"c1","direction":"sideways"})", "direction"},
           {R"({"event":"missed","call_id":"c1","occurred_at":"noon"})", "occurred_at"},
           {R"({"event":"missed","call_id":"c1","duration_s":"12"})", "duration_s"},
           {R"({"event":"missed","call_id":"c1","duration_s":-1})", "duration_s"},
           {R"({"event":"missed","call_id":"c1","duration_s":1.5})", "duration_s"},
           {R"({"event":"missed","call_id":"c1","from":5})", "from"},
           {R"({"event":"missed","call_id":"c1","recording_url":[]})", "recording_url"}}) {
    CAPTURE(row.body);
    auto res = run(signed_post(row.body));
    CHECK(res.status == 400);
    CHECK(res.error_message.find(row.field) != std::string::npos);
    CHECK_FALSE(res.event);
  }
  auto res = run(signed_post("[1,2]"));
  CHECK(res.status == 400);
  CHECK(res.error_code == "invalid_json");
  auto r = signed_post(kBody);
  r.content_type = "text/plain";
  CHECK(run(r).status == 415);
}

}  // namespace pbx_test
