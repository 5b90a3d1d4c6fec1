// What reaches an agent of a call that changes after it is queued. A call is queued once, when it
// ends, and the stream entry keeps the payload of that moment; a recording, a later final status
// or a machine-detection result that comes after it updates the stored call, and an agent's claim
// answers that. Signed webhooks into a whole daemon with a real redis-server and SQLite.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <string>

#include "voice_daemon.hpp"

using sb::voice::test::post_twilio;
using sb::voice::test::VoiceDaemon;
namespace json = boost::json;

// Named per file: the test programs are unity builds.
namespace late_events_test {

namespace {

constexpr const char* kAnn = "+14155550123";   // the customer
constexpr const char* kLine = "+13125550100";  // our Twilio number

void twilio(VoiceDaemon& d, const std::vector<std::pair<std::string, std::string>>& p) {
  auto r = post_twilio(d, p);
  CAPTURE(r.body);
  REQUIRE(r.status == 200);
}

std::string pbx_event(const std::string& event, const std::string& at,
                      const std::string& extra = "") {
  return R"({"event":")" + event + R"(","call_id":"pbx-late","from":"+14155550100",)" +
         R"("to":"+14155550199","direction":"inbound","occurred_at":")" + at + "\"" + extra + "}";
}

json::object entry_payload(VoiceDaemon& d, const std::string& stream) {
  return json::parse(d.redis.xrange(stream).at(0)["payload"]).as_object();
}

}  // namespace

// Twilio posts the RecordingStatusCallback when the recording is ready, normally after the
// call's final StatusCallback, when the call is queued already.
TEST_CASE("voice late: a Twilio recording that comes after the call is queued reaches the claim") {
  VoiceDaemon d;
  twilio(d, {{"CallSid", "CA-rec"},
             {"CallStatus", "completed"},
             {"CallDuration", "31"},
             {"Direction", "inbound"},
             {"From", kAnn},
             {"To", kLine},
             {"SequenceNumber", "3"}});
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  twilio(d, {{"AccountSid", "AC123"},
             {"CallSid", "CA-rec"},
             {"RecordingSid", "RE1"},
             {"RecordingStatus", "completed"},
             {"RecordingDuration", "30"},
             {"RecordingUrl", "https://api.twilio.com/rec/RE1"}});

  // The stream entry is the copy made when the call was queued (README: plain Redis readers).
  CHECK_FALSE(
      entry_payload(d, "sb:q:general:normal").at("call").as_object().contains("recording_url"));
  auto claimed = d.claim("general");
  CHECK(claimed.at("id").as_string() == d.text("SELECT id FROM interactions"));
  CHECK(claimed.at("call").at("recording_url").as_string() == "https://api.twilio.com/rec/RE1");
  CHECK(claimed.at("call").at("status").as_string() == "completed");
  CHECK(claimed.at("call").at("duration_s").as_int64() == 31);
  CHECK(claimed.at("from").at("value").as_string() == kAnn);
  CHECK(claimed.at("queue").as_string() == "general");
  CHECK(claimed.at("priority").as_string() == "normal");
}

// A PBX tells of a missed call first, and of the voicemail the caller then left, with its
// recording, a moment later: the call was queued as missed (no-answer) and stays in that queue,
// but the agent sees the voicemail and can play it.
TEST_CASE("voice late: a PBX voicemail after its missed event reaches the claim, recording too") {
  VoiceDaemon d;
  REQUIRE(d.pbx(pbx_event("missed", "2026-01-02T03:04:35Z")).status == 200);
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:callbacks:high") == 1; }));
  REQUIRE(d.pbx(pbx_event("voicemail", "2026-01-02T03:05:20Z",
                          R"(,"recording_url":"https://pbx.example.com/vm/1.wav")"))
              .status == 200);
  CHECK(d.text("SELECT json_extract(payload, '$.call.status') FROM interactions") == "voicemail");
  CHECK(entry_payload(d, "sb:q:callbacks:high").at("call").at("status").as_string() == "no-answer");

  auto claimed = d.claim("callbacks");
  CHECK(claimed.at("call").at("status").as_string() == "voicemail");
  CHECK(claimed.at("call").at("recording_url").as_string() == "https://pbx.example.com/vm/1.wav");
  CHECK(claimed.at("queue").as_string() == "callbacks");
  CHECK(claimed.at("priority").as_string() == "high");
}

// Other kinds keep the payload the relay put in the stream entry (their rows do not change once
// queued): what the claim answers is that entry's.
TEST_CASE("voice late: a claim of anything but a call answers the stream entry's payload") {
  VoiceDaemon d;
  auto r =
      d.http->post_json("/v1/interactions",
                        R"({"source":"crm","external_id":"m1","from":{"phone":"+14155550123"},)"
                        R"("text":"hello"})",
                        "test-token");
  REQUIRE(r.status == 202);
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto entry = entry_payload(d, "sb:q:general:normal");
  CHECK(d.claim("general") == entry);
}

// Twilio's asynchronous AMD posts its result to AsyncAmdStatusCallback: CallSid, AccountSid,
// AnsweredBy and MachineDetectionDuration, no CallStatus. The call's completed StatusCallback
// comes separately, without AnsweredBy.
TEST_CASE("voice late: Twilio's async AMD result, then completed: stored and queued as voicemail") {
  VoiceDaemon d;
  auto call = [](const std::string& status, const std::string& seq) {
    return std::vector<std::pair<std::string, std::string>>{
        {"CallSid", "CA-amd"}, {"CallStatus", status}, {"Direction", "outbound-api"},
        {"From", kLine},       {"To", kAnn},           {"SequenceNumber", seq}};
  };
  twilio(d, call("in-progress", "1"));
  twilio(d, {{"AccountSid", "AC123"},
             {"CallSid", "CA-amd"},
             {"AnsweredBy", "machine_start"},
             {"MachineDetectionDuration", "2140"}});
  CHECK(d.text("SELECT state FROM interactions") == "pending_call");
  auto completed = call("completed", "2");
  completed.emplace_back("CallDuration", "25");
  twilio(d, completed);

  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:callbacks:high") == 1; }));
  CHECK(d.redis.xlen("sb:q:general:normal") <= 0);
  auto queued = entry_payload(d, "sb:q:callbacks:high");
  CHECK(queued.at("call").at("status").as_string() == "voicemail");
  CHECK(queued.at("call").at("machine_detection").as_string() == "machine_start");
  CHECK(queued.at("from").at("value").as_string() == kAnn);  // the callee of an outbound call
  CHECK(d.text("SELECT json_extract(payload, '$.call.status') FROM interactions") == "voicemail");
}

// With synchronous AMD the result rides on the request Twilio makes when the call is answered
// (CallStatus in-progress); a person's answer leaves the call completed.
TEST_CASE("voice late: Twilio's synchronous AMD result on the in-progress request") {
  for (std::string answered_by : {"machine_end_beep", "human"}) {
    CAPTURE(answered_by);
    VoiceDaemon d;
    twilio(d, {{"CallSid", "CA-sync"},
               {"CallStatus", "in-progress"},
               {"AnsweredBy", answered_by},
               {"Direction", "outbound-api"},
               {"From", kLine},
               {"To", kAnn}});
    twilio(d, {{"CallSid", "CA-sync"},
               {"CallStatus", "completed"},
               {"CallDuration", "40"},
               {"Direction", "outbound-api"},
               {"From", kLine},
               {"To", kAnn},
               {"SequenceNumber", "3"}});
    bool machine = answered_by != "human";
    std::string stream = machine ? "sb:q:callbacks:high" : "sb:q:general:normal";
    REQUIRE(sb::test::eventually([&] { return d.redis.xlen(stream) == 1; }));
    CHECK(entry_payload(d, stream).at("call").at("status").as_string() ==
          (machine ? "voicemail" : "completed"));
    CHECK(entry_payload(d, stream).at("call").at("machine_detection").as_string() == answered_by);
  }
}

}  // namespace late_events_test
