// Which numbers are ours (table call_lines, storage/call_parties.hpp) on a Telnyx account. A
// transfer (or a dial bridged to the caller) may pass the original caller's number on as the
// caller ID of the leg it places: its call.initiated says direction=outgoing with `from` = the
// customer. Learned as our line, that number misrouted the customer's later calls and every call
// to them. Signed webhooks into a whole daemon with a real redis-server and SQLite.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <string>

#include "helpers.hpp"
#include "storage/sqlite.hpp"
#include "voice_daemon.hpp"

using sb::voice::test::KeyPair;
using sb::voice::test::VoiceDaemon;
namespace json = boost::json;

namespace telnyx_lines_test {

namespace {

constexpr const char* kLine = "+13125550100";   // our Telnyx number
constexpr const char* kLine2 = "+13125550101";  // another of ours, not learned yet
constexpr const char* kCaller = "+14155550123";
constexpr const char* kAgent = "+14155550166";  // where the transfer rang

const KeyPair& key() {
  static const KeyPair k;
  return k;
}

void post(VoiceDaemon& d, const std::string& body) {
  auto r =
      sb::voice::test::post_telnyx(d, body, [](const std::string& m) { return key().sign(m); });
  CAPTURE(r.body);
  REQUIRE(r.status == 200);
}

// A Telnyx event shaped like the API reference's examples, signed with key(); `direction` is
// only in call.initiated ("" leaves it out, as call.answered and call.hangup do).
void telnyx(VoiceDaemon& d, const std::string& type, const std::string& leg,
            const std::string& from, const std::string& to, const std::string& direction,
            const std::string& occurred_at, const std::string& session) {
  std::string extra = type == "call.hangup"
                          ? R"(,"state":"hangup","hangup_cause":"normal_clearing")"
                          : R"(,"state":"bridging")";
  if (!direction.empty()) {
    extra += R"(,"direction":")" + direction + "\"";
  }
  std::string body =
      R"({"data":{"record_type":"event","event_type":")" + type + R"(","id":"e-)" + leg + type +
      R"(","occurred_at":")" + occurred_at + R"(","payload":{"call_control_id":"v3:)" + leg +
      R"(","call_leg_id":")" + leg + R"(","call_session_id":")" + session +
      R"(","connection_id":"7267","client_state":null,"from":")" + from + R"(","to":")" + to +
      R"(","start_time":"2026-01-02T03:00:00Z")" + extra + "}}}";
  post(d, body);
}

std::string field(VoiceDaemon& d, const std::string& leg, const std::string& path) {
  return d.text("SELECT json_extract(payload, '$." + path +
                "') FROM interactions WHERE external_id = '" + leg + "'");
}

bool is_line(VoiceDaemon& d, const std::string& number) {
  return d.rows("SELECT count(*) FROM call_lines WHERE value = '" + number + "'") > 0;
}

}  // namespace

TEST_CASE(
    "voice telnyx lines: a transfer leg with the caller's number as caller ID teaches no line") {
  VoiceDaemon d(key().public_b64);
  // A: the customer calls our line, and is transferred to an agent with their own number passed
  // on as the caller ID (B, same session).
  telnyx(d, "call.initiated", "A", kCaller, kLine, "incoming", "2026-01-02T03:00:00Z", "s-1");
  telnyx(d, "call.initiated", "B", kCaller, kAgent, "outgoing", "2026-01-02T03:00:05Z", "s-1");
  telnyx(d, "call.hangup", "B", kCaller, kAgent, "", "2026-01-02T03:01:00Z", "s-1");
  telnyx(d, "call.hangup", "A", kCaller, kLine, "", "2026-01-02T03:01:00Z", "s-1");
  CHECK(is_line(d, kLine));
  CHECK_FALSE(is_line(d, kCaller));

  // The customer calls again; the hangup comes first. Inbound, with the customer as the caller,
  // once call.initiated arrives (and never before it was told, with our line as the customer).
  telnyx(d, "call.hangup", "C", kCaller, kLine, "", "2026-01-02T04:01:00Z", "s-2");
  telnyx(d, "call.initiated", "C", kCaller, kLine, "incoming", "2026-01-02T04:00:00Z", "s-2");
  CHECK(field(d, "C", "from.value") == kCaller);
  CHECK(field(d, "C", "call.direction") == "inbound");

  // A call from another of our numbers to the customer, hangup first: outbound to the customer
  // (the customer records tell), not an inbound call from our own number.
  telnyx(d, "call.hangup", "D", kLine2, kCaller, "", "2026-01-02T05:01:00Z", "s-3");
  CHECK(field(d, "D", "from.value") == kCaller);
  CHECK(field(d, "D", "direction") == "outbound");
  CHECK(d.rows(std::string("SELECT count(*) FROM identities WHERE value = '") + kLine2 + "'") == 0);
}

// A database that learned the customer's number before the fix: the hangup-first call to the
// customer is taken for inbound by the lines (from our second number); the call.initiated that
// says outgoing corrects it, and the number that misled is forgotten.
TEST_CASE("voice telnyx lines: a stated direction overrules one the lines inferred") {
  VoiceDaemon d(key().public_b64);
  telnyx(d, "call.initiated", "A", kCaller, kLine, "incoming", "2026-01-02T03:00:00Z", "s-1");
  telnyx(d, "call.hangup", "A", kCaller, kLine, "", "2026-01-02T03:01:00Z", "s-1");
  {
    sb::storage::Db db(d.dir.file("switchboard.db"));
    db.exec(
        std::string("INSERT INTO call_lines(account, type, value) VALUES ('telnyx', 'phone', '") +
        kCaller + "')");
  }
  telnyx(d, "call.hangup", "D", kLine2, kCaller, "", "2026-01-02T05:01:00Z", "s-3");
  CHECK(field(d, "D", "call.direction") == "inbound");  // what the wrong line told
  telnyx(d, "call.initiated", "D", kLine2, kCaller, "outgoing", "2026-01-02T05:00:00Z", "s-3");
  CHECK(field(d, "D", "call.direction") == "outbound");
  CHECK(field(d, "D", "direction") == "outbound");
  CHECK(field(d, "D", "from.value") == kCaller);
  CHECK(field(d, "D", "to[0].value") == kLine2);
  CHECK(d.text("SELECT direction FROM interactions WHERE external_id = 'D'") == "outbound");
  CHECK_FALSE(is_line(d, kCaller));
  CHECK(is_line(d, kLine2));
  // No interaction refers to the customer record made of our own number any more; the record
  // itself stays (a queue entry may name it, an import may have filled it in).
  CHECK(d.rows(std::string("SELECT count(*) FROM interactions i JOIN identities n ON "
                           "n.customer_id = i.customer_id WHERE n.value = '") +
               kLine2 + "'") == 0);
  CHECK(d.rows(std::string("SELECT count(*) FROM conversations c JOIN identities n ON "
                           "n.customer_id = c.customer_id WHERE n.value = '") +
               kLine2 + "'") == 0);
}

// Telnyx's recording_urls are presigned S3 links valid 10 minutes (X-Amz-Expires=600), often
// expired by the time an agent claims the call: the stored call keeps the recording's id, with
// which a client asks Telnyx for fresh links.
TEST_CASE("voice telnyx: the stored call keeps the recording id of call.recording.saved") {
  VoiceDaemon d(key().public_b64);
  telnyx(d, "call.initiated", "R", kCaller, kLine, "incoming", "2026-01-02T03:00:00Z", "s-r");
  telnyx(d, "call.hangup", "R", kCaller, kLine, "", "2026-01-02T03:01:00Z", "s-r");
  post(
      d,
      R"({"data":{"record_type":"event","event_type":"call.recording.saved","id":"e-rec",)"
      R"("occurred_at":"2026-01-02T03:01:02Z","payload":{"call_control_id":"v3:R",)"
      R"("call_leg_id":"R","call_session_id":"s-r","connection_id":"7267","channels":"single",)"
      R"("format":"mp3","recording_id":"10cd86ac-fef8-4765-b203-0f7511f9fc75",)"
      R"("recording_started_at":"2026-01-02T03:00:10Z","recording_ended_at":"2026-01-02T03:01:00Z",)"
      R"("public_recording_urls":{},"recording_urls":{"mp3":"https://s3.amazonaws.com/rec/R.mp3?)"
      R"(X-Amz-Expires=600&X-Amz-Signature=abc"}}}})");
  CHECK(field(d, "R", "call.recording_id") == "10cd86ac-fef8-4765-b203-0f7511f9fc75");
  CHECK(field(d, "R", "call.recording_url") ==
        "https://s3.amazonaws.com/rec/R.mp3?X-Amz-Expires=600&X-Amz-Signature=abc");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  CHECK(d.claim("general").at("call").at("recording_id").as_string() ==
        "10cd86ac-fef8-4765-b203-0f7511f9fc75");
}

}  // namespace telnyx_lines_test
