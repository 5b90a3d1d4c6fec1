// Telephony end to end: signed webhooks into a whole daemon with a real redis-server.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <cctype>
#include <cstdio>
#include <thread>

#include "channels/voice/signatures.hpp"
#include "core/form.hpp"
#include "core/time.hpp"
#include "daemon/app.hpp"
#include "storage/sqlite.hpp"
#include "tests/support/harness.hpp"
#include "tests/support/log_capture.hpp"
#include "voice_daemon.hpp"

using namespace sb;
using namespace sb::test;
using sb::voice::test::post_twilio;
using sb::voice::test::VoiceDaemon;
namespace json = boost::json;

namespace {

std::string pbx_event(const std::string& event, const std::string& at, int duration = 0,
                      const std::string& from = "+14155550100") {
  return R"({"event":")" + event + R"(","call_id":"call-1","from":")" + from +
         R"(","to":"+14155550199","direction":"inbound","occurred_at":")" + at +
         R"(","duration_s":)" + std::to_string(duration) + "}";
}

}  // namespace

TEST_CASE(
    "voice: ringing, answered, completed in reverse order and twice each: one call, queued once") {
  VoiceDaemon d;
  std::vector<std::string> events = {pbx_event("completed", "2026-01-02T03:05:00Z", 42),
                                     pbx_event("answered", "2026-01-02T03:04:18Z"),
                                     pbx_event("ringing", "2026-01-02T03:04:05Z")};
  for (int round = 0; round < 2; ++round) {
    for (const auto& e : events) {
      CHECK(d.pbx(e).status == 200);
    }
  }
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(d.redis.xlen("sb:q:general:normal") == 1);
  auto payload = json::parse(d.redis.xrange("sb:q:general:normal").at(0)["payload"]).as_object();
  CHECK(payload.at("kind").as_string() == "call");
  CHECK(payload.at("channel").as_string() == "voice");
  CHECK(payload.at("call").at("status").as_string() == "completed");
  CHECK(payload.at("call").at("duration_s").as_int64() == 42);
  CHECK(payload.at("from").at("value").as_string() == "+14155550100");
  CHECK(payload.at("queue").as_string() == "general");
  CHECK(payload.at("priority").as_string() == "normal");
}

TEST_CASE("voice: a no-answer call from a known customer's national number is matched and routed") {
  VoiceDaemon d;
  auto r = d.http->post_json(
      "/v1/interactions",
      R"({"source":"crm","external_id":"c1","from":{"phone":"+14155550123","name":"Ann"},"text":"hi"})",
      "test-token");
  REQUIRE(r.status == 202);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  std::string customer = d.redis.xrange("sb:q:general:normal").at(0)["customer_id"];

  CHECK(d.pbx(pbx_event("ringing", "2026-01-02T03:04:05Z", 0, "(415) 555-0123")).status == 200);
  CHECK(d.redis.xlen("sb:q:callbacks:high") <= 0);  // not queued before it ends
  CHECK(d.pbx(pbx_event("missed", "2026-01-02T03:04:35Z", 0, "(415) 555-0123")).status == 200);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:callbacks:high") == 1; }));
  auto e = d.redis.xrange("sb:q:callbacks:high").at(0);
  CHECK(e["customer_id"] == customer);
  auto payload = json::parse(e["payload"]).as_object();
  CHECK(payload.at("call").at("status").as_string() == "no-answer");
  CHECK(payload.at("customer").at("is_new").as_bool() == false);
  CHECK(payload.at("queue").as_string() == "callbacks");  // the payload says where it went
  CHECK(payload.at("priority").as_string() == "high");
}

TEST_CASE("voice: forged, missing and stale signatures are refused, stored nowhere, and counted") {
  VoiceDaemon d;
  auto body = pbx_event("ringing", "2026-01-02T03:04:05Z");
  auto forged = d.pbx(body, now_ms() / 1000, "wrong-secret");
  CHECK(forged.status == 403);
  CHECK(json::parse(forged.body).at("error").at("code").as_string() == "bad_signature");
  auto stale = d.pbx(body, now_ms() / 1000 - 301);
  CHECK(stale.status == 403);
  CHECK(json::parse(stale.body).at("error").at("code").as_string() == "stale_timestamp");
  auto missing =
      d.http->request("POST", "/webhooks/calls/pbx", body, {{"Content-Type", "application/json"}});
  CHECK(missing.status == 401);
  auto twilio = d.http->request("POST", "/webhooks/twilio/voice", "CallSid=CA1&CallStatus=ringing",
                                {{"Content-Type", "application/x-www-form-urlencoded"},
                                 {"X-Twilio-Signature", "bm90IGEgc2lnbmF0dXJl"}});
  CHECK(twilio.status == 403);
  auto wrong_type =
      d.http->request("POST", "/webhooks/calls/pbx", body, {{"Content-Type", "text/plain"}});
  CHECK(wrong_type.status == 415);
  CHECK(d.http->request("POST", "/webhooks/calls/nope", body, {}).status == 404);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 0);
  auto metrics = d.http->request("GET", "/metrics").body;
  CHECK(metrics.find(R"(switchboard_channel_errors_total{channel="voice",account="pbx"} 4)") !=
        std::string::npos);
  CHECK(metrics.find(R"(switchboard_channel_errors_total{channel="voice",account="voice"} 1)") !=
        std::string::npos);
}

TEST_CASE("voice: a reload applies rotated webhook secrets at once") {
  LogCapture log("daemon");
  VoiceDaemon d;
  auto body = pbx_event("ringing", "2026-01-02T03:04:05Z");
  std::vector<std::pair<std::string, std::string>> ringing = {{"CallSid", "CA7"},
                                                              {"CallStatus", "ringing"}};
  REQUIRE(d.pbx(body).status == 200);
  REQUIRE(post_twilio(d, ringing).status == 200);

  auto fresh = d.cfg;
  fresh.channels.call_webhook.at(0).secret = "rotated-pbx-secret";
  fresh.channels.twilio.at(0).auth_token = "67890";
  REQUIRE(d.app->reload(fresh).empty());
  // From the next request on: the old secrets are refused, the new ones accepted.
  CHECK(d.pbx(body).status == 403);
  CHECK(d.pbx(body, now_ms() / 1000, "rotated-pbx-secret").status == 200);
  CHECK(post_twilio(d, ringing).status == 403);
  CHECK(post_twilio(d, ringing, "67890").status == 200);
  CHECK(log.lines_with("reload: channels.call_webhook pbx: secret applied from its next use")
            .size() == 1);
  CHECK(log.lines_with("reload: channels.twilio voice: auth_token applied from its next use")
            .size() == 1);
  CHECK(log.lines_with("not applied until a restart").empty());
  CHECK(log.text().find("rotated-pbx-secret") == std::string::npos);

  // A secret that changes with the account's URL is half of a change a restart applies: the
  // secret in force stays, and the warning names the account.
  auto moved = fresh;
  moved.channels.twilio.at(0).auth_token = "abcde";
  moved.channels.twilio.at(0).public_url = "https://hooks2.example.com";
  REQUIRE(d.app->reload(moved).empty());
  CHECK(post_twilio(d, ringing, "67890").status == 200);
  CHECK(post_twilio(d, ringing, "abcde").status == 403);
  CHECK(log.lines_with("reload: channels.twilio voice (changed): not applied until a restart")
            .size() == 1);
}

TEST_CASE("voice: a signed Twilio status callback is stored, a withheld caller makes no customer") {
  VoiceDaemon d;
  std::vector<std::pair<std::string, std::string>> params = {
      {"CallSid", "CA42"},    {"CallStatus", "no-answer"}, {"From", "anonymous"},
      {"To", "+14155550199"}, {"Direction", "inbound"},    {"SequenceNumber", "2"}};
  std::string body;
  for (auto& [k, v] : params) {
    std::string value = v;  // form encoding: a literal '+' must be sent as %2B
    for (auto pos = value.find('+'); pos != std::string::npos; pos = value.find('+', pos)) {
      value.replace(pos, 1, "%2B");
    }
    body += (body.empty() ? "" : "&") + k + "=" + value;
  }
  std::string sig =
      voice::twilio_signature("12345", "https://hooks.example.com/webhooks/twilio/voice", params);
  auto r = d.http->request(
      "POST", "/webhooks/twilio/voice", body,
      {{"Content-Type", "application/x-www-form-urlencoded"}, {"X-Twilio-Signature", sig}});
  CAPTURE(r.body);
  CHECK(r.status == 200);
  CHECK(r.headers["content-type"].find("text/xml") != std::string::npos);
  CHECK(r.body.find("<Response/>") != std::string::npos);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:callbacks:high") == 1; }));
  auto payload = json::parse(d.redis.xrange("sb:q:callbacks:high").at(0)["payload"]).as_object();
  CHECK(payload.at("customer").is_null());
  CHECK(payload.at("from").is_null());
  CHECK(d.rows("SELECT count(*) FROM customers") == 0);
}

// Twilio posts the RecordingStatusCallback and the StatusCallback independently; the recording
// one (no CallStatus) can be the first request about a call to arrive.
TEST_CASE("voice: a call whose first event carries no status still takes its later events") {
  VoiceDaemon d;
  auto rec = post_twilio(d, {{"CallSid", "CA77"},
                             {"RecordingSid", "RE1"},
                             {"RecordingStatus", "completed"},
                             {"RecordingUrl", "https://api.twilio.com/rec/RE1"}});
  CAPTURE(rec.body);
  REQUIRE(rec.status == 200);
  auto fin = post_twilio(d, {{"CallSid", "CA77"},
                             {"CallStatus", "completed"},
                             {"CallDuration", "31"},
                             {"From", "+14155550100"},
                             {"To", "+14155550199"},
                             {"Direction", "inbound"},
                             {"SequenceNumber", "3"}});
  CAPTURE(fin.body);
  CHECK(fin.status == 200);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
  REQUIRE(eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto payload = json::parse(d.redis.xrange("sb:q:general:normal").at(0)["payload"]).as_object();
  CHECK(payload.at("call").at("status").as_string() == "completed");
  CHECK(payload.at("call").at("duration_s").as_int64() == 31);
  CHECK(payload.at("call").at("recording_url").as_string() == "https://api.twilio.com/rec/RE1");
  CHECK(payload.at("from").at("value").as_string() == "+14155550100");  // named by the 2nd
  CHECK(payload.at("customer").at("is_new").as_bool() == true);
}
