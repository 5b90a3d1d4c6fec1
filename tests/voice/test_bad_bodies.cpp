// Signed call webhooks whose bodies cannot be stored: JSON cut short or not UTF-8 (the PBX
// route), and Twilio form values whose percent-escapes decode to bytes that are not UTF-8. Each
// is refused with 400 saying what is wrong and where; nothing is stored, and the call's later
// events are taken as usual.
#include <doctest/doctest.h>

#include <boost/json.hpp>

#include "tests/support/harness.hpp"
#include "voice_daemon.hpp"

using namespace sb;
using namespace sb::test;
using sb::voice::test::post_twilio;
using sb::voice::test::VoiceDaemon;

// Named per file: the test programs are unity builds.
namespace bad_bodies_test {

std::string error_field(const HttpResponse& r, const char* field) {
  boost::json::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  if (ec || !v.is_object() || !v.as_object().contains("error")) {
    return "<not a JSON error: " + r.body + ">";
  }
  return std::string(v.at("error").at(field).as_string());
}

const std::string kMissed =
    R"({"event":"missed","call_id":"pbx-9","from":"+14155550100","to":"+14155550199",)"
    R"("direction":"inbound","occurred_at":"2026-01-02T03:04:05Z"})";

}  // namespace bad_bodies_test

using namespace bad_bodies_test;

TEST_CASE("voice: a signed PBX body cut short or not UTF-8 is 400 saying where, nothing stored") {
  VoiceDaemon d;
  auto cut = d.pbx(kMissed.substr(0, 40));
  CHECK(cut.status == 400);
  CHECK(error_field(cut, "code") == "invalid_json");
  CHECK(error_field(cut, "message") ==
        "the body is not valid JSON: incomplete JSON at byte offset 40");

  std::string latin1 = kMissed;
  latin1.replace(latin1.find("+14155550100"), 1, "\xe9");  // an ISO 8859-1 byte, not UTF-8
  auto bad = d.pbx(latin1);
  CHECK(bad.status == 400);
  CHECK(error_field(bad, "code") == "invalid_json");
  CHECK(error_field(bad, "message") == "the body is not valid JSON: invalid UTF-8 at byte offset " +
                                           std::to_string(latin1.find('\xe9')));

  auto array = d.pbx("[1,2]");
  CHECK(array.status == 400);
  CHECK(error_field(array, "message") == "the body must be a JSON object");
  CHECK(d.rows("SELECT count(*) FROM interactions") == 0);

  // The same call, sent whole, is taken.
  CHECK(d.pbx(kMissed).status == 200);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
}

TEST_CASE("voice: a signed Twilio form whose used fields are not UTF-8 is 400 naming the field") {
  VoiceDaemon d;
  struct Case {
    std::vector<std::pair<std::string, std::string>> params;
    std::string field;
  };
  std::vector<Case> cases = {
      {{{"CallSid", "CA\xff"}, {"CallStatus", "ringing"}}, "CallSid"},
      {{{"CallSid", "CA1"},
        {"CallStatus", "completed"},
        {"RecordingUrl", "https://r.example/\xff"}},
       "RecordingUrl"},
      {{{"CallSid", "CA2"},
        {"CallStatus", "ringing"},
        {"ParentCallSid", "CA\xc3("},
        {"Direction", "outbound-dial"},
        {"To", "+14155550111"}},
       "ParentCallSid"},
      {{{"CallSid", "CA3"},
        {"CallStatus", "completed"},
        {"ParentCallSid", "CA1"},
        {"Direction", "outbound-dial"},
        {"To", "sip:agent\xfe@pbx.example.com"}},
       "To"},
      {{{"CallSid", "CA1"},
        {"CallStatus", "in-progress"},
        {"DialCallSid", "CA\xed\xa0\x80"},  // an encoded surrogate
        {"DialCallStatus", "completed"}},
       "DialCallSid"},
      {{{"CallSid", "CA1"}, {"CallStatus", "ringing"}, {"From", "\xff\xfe"}}, "From"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.field);
    auto r = post_twilio(d, c.params);
    CHECK(r.status == 400);
    CHECK(error_field(r, "code") == "invalid_payload");
    CHECK(error_field(r, "message").rfind(c.field + " is not valid UTF-8", 0) == 0);
  }
  CHECK(d.rows("SELECT count(*) FROM interactions") == 0);

  // CA1's events that are UTF-8 are taken, one after the other: nothing unreadable was stored
  // for the call (stored, the refused RecordingUrl made each later event answer 503).
  auto first = post_twilio(d, {{"CallSid", "CA1"},
                               {"CallStatus", "ringing"},
                               {"From", "+14155550100"},
                               {"To", "+14155550199"},
                               {"Direction", "inbound"},
                               {"SequenceNumber", "1"}});
  CAPTURE(first.body);
  CHECK(first.status == 200);
  auto last = post_twilio(d, {{"CallSid", "CA1"},
                              {"CallStatus", "completed"},
                              {"CallDuration", "12"},
                              {"RecordingUrl", "https://r.example/caf\xc3\xa9"},
                              {"SequenceNumber", "2"}});
  CAPTURE(last.body);
  CHECK(last.status == 200);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE json_valid(payload) AND "
               "json_extract(payload, '$.call.recording_url') = 'https://r.example/café'") == 1);
}
