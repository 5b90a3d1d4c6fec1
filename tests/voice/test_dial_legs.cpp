// Twilio <Dial> child legs: one call, one interaction. When an inbound call is answered by
// <Dial>ing an agent's phone, Twilio creates a child call (its own CallSid, ParentCallSid = the
// inbound call, Direction=outbound-dial) whose status callbacks (<Number statusCallback>) reach
// the same webhook. Signed requests into a whole daemon with a real redis-server and SQLite.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <future>
#include <string>
#include <thread>

#include "voice_daemon.hpp"

using sb::voice::test::post_twilio;
using sb::voice::test::VoiceDaemon;
namespace json = boost::json;

// Named per file: the test programs are unity builds (helpers such as kAnn or config() would
namespace dial_legs_test {

namespace {

constexpr const char* kAnn = "+14155550123";     // the customer who calls
constexpr const char* kLine = "+13125550100";    // our Twilio number
constexpr const char* kAgent = "+14155550166";   // the agent's phone, <Dial>led
constexpr const char* kAgent2 = "+14155550167";  // a second agent rung at the same time

// A status callback of the inbound (parent) call.
void parent(VoiceDaemon& d, const std::string& status, const std::string& seq,
            const std::string& duration = "") {
  std::vector<std::pair<std::string, std::string>> p = {
      {"CallSid", "CA-parent"}, {"CallStatus", status}, {"Direction", "inbound"},
      {"From", kAnn},           {"To", kLine},          {"SequenceNumber", seq}};
  if (!duration.empty()) {
    p.emplace_back("CallDuration", duration);
  }
  auto r = post_twilio(d, p);
  CAPTURE(r.body);
  REQUIRE(r.status == 200);
}

// A status callback of a child leg that <Dial><Number> created. `from` is the caller ID the
// leg shows the agent: the customer's number by default, our number with <Dial callerId>.
void child(VoiceDaemon& d, const std::string& sid, const std::string& to, const std::string& status,
           const std::string& seq, const std::string& timestamp, const std::string& duration = "",
           const std::string& from = kAnn) {
  std::vector<std::pair<std::string, std::string>> p = {
      {"CallSid", sid},        {"ParentCallSid", "CA-parent"},
      {"CallStatus", status},  {"Direction", "outbound-dial"},
      {"From", from},          {"To", to},
      {"Called", to},          {"CallbackSource", "call-progress-events"},
      {"SequenceNumber", seq}, {"Timestamp", timestamp}};
  if (!duration.empty()) {
    p.emplace_back("CallDuration", duration);
  }
  auto r = post_twilio(d, p);
  CAPTURE(r.body);
  REQUIRE(r.status == 200);
}

json::object queued_payload(VoiceDaemon& d, const std::string& stream) {
  return json::parse(d.redis.xrange(stream).at(0)["payload"]).as_object();
}

std::string call_field(VoiceDaemon& d, const std::string& path) {
  return d.text("SELECT json_extract(payload, '$.call." + path + "') FROM interactions");
}

}  // namespace

TEST_CASE("voice dial: a child leg folds into the inbound call, whose caller stays the customer") {
  VoiceDaemon d;
  parent(d, "ringing", "0");
  child(d, "CA-leg1", kAgent, "ringing", "0", "Fri, 02 Jan 2026 03:04:10 +0000");
  child(d, "CA-leg1", kAgent, "in-progress", "1", "Fri, 02 Jan 2026 03:04:15 +0000");
  child(d, "CA-leg1", kAgent, "completed", "2", "Fri, 02 Jan 2026 03:04:55 +0000", "40");
  parent(d, "completed", "1", "55");
  // A late, repeated child callback changes nothing and queues nothing again.
  child(d, "CA-leg1", kAgent, "in-progress", "1", "Fri, 02 Jan 2026 03:04:15 +0000");

  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
  CHECK(d.text("SELECT external_id FROM interactions") == "CA-parent");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(d.redis.xlen("sb:q:general:normal") == 1);
  auto payload = queued_payload(d, "sb:q:general:normal");
  CHECK(payload.at("from").at("value").as_string() == kAnn);
  CHECK(payload.at("call").at("status").as_string() == "completed");
  CHECK(payload.at("call").at("duration_s").as_int64() == 55);  // the parent's, not the leg's
  CHECK(payload.at("call").at("answered_by").as_string() == kAgent);
  CHECK(payload.at("call").at("answered_at").as_int64() == 1767323055000);  // 03:04:15
  CHECK(d.rows("SELECT count(*) FROM customers") == 1);
  CHECK(d.rows(std::string("SELECT count(*) FROM identities WHERE value = '") + kAgent + "'") == 0);
  CHECK(call_field(d, "legs[0].id") == "CA-leg1");
  CHECK(call_field(d, "legs[0].to") == kAgent);
  CHECK(call_field(d, "legs[0].status") == "completed");
  CHECK(call_field(d, "legs[0].duration_s") == "40");
  CHECK(call_field(d, "status") == "completed");
}

// <Dial> with two <Number>s rings both agents; the one who does not pick up gets no-answer (or
// canceled). Neither leg's end is the call's end: the call is queued by its own final event,
// with its own status (a no-answer would have sent it to the "missed calls" queue).
TEST_CASE("voice dial: a child leg's final status never ends, queues or misroutes the call") {
  VoiceDaemon d;
  parent(d, "in-progress", "0");
  child(d, "CA-leg2", kAgent2, "no-answer", "1", "Fri, 02 Jan 2026 03:04:40 +0000", "0");
  child(d, "CA-leg1", kAgent, "completed", "2", "Fri, 02 Jan 2026 03:05:00 +0000", "20");
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
  CHECK(d.text("SELECT state FROM interactions") == "pending_call");
  CHECK(d.rows("SELECT count(*) FROM outbox") == 0);
  CHECK(call_field(d, "status") == "in-progress");
  CHECK(call_field(d, "answered_by") == kAgent);  // the completed leg, not the unanswered one
  CHECK(call_field(d, "answered_at") == "1767323080000");  // 03:05:00 minus the leg's 20 s

  parent(d, "completed", "1", "70");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(d.redis.xlen("sb:q:callbacks:high") <= 0);
  auto payload = queued_payload(d, "sb:q:general:normal");
  CHECK(payload.at("call").at("status").as_string() == "completed");
  CHECK(payload.at("call").at("legs").as_array().size() == 2);
  CHECK(call_field(d, "legs[0].status") == "no-answer");  // in arrival order
  CHECK(call_field(d, "legs[1].status") == "completed");
}

// The parent's callbacks may come later than its child's (or, when only <Number> has a
// statusCallback, never): the first child event creates the parent's call, keyed by the parent's
// CallSid, pending, with no customer yet (the leg's From may be our own number, set by
// <Dial callerId>) and no final status; the parent's own events then name the caller and end it.
TEST_CASE("voice dial: child events before any parent event create the parent's call, pending") {
  VoiceDaemon d;
  child(d, "CA-leg1", kAgent, "in-progress", "1", "Fri, 02 Jan 2026 03:04:15 +0000", "", kLine);
  child(d, "CA-leg1", kAgent, "completed", "2", "Fri, 02 Jan 2026 03:04:55 +0000", "40", kLine);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
  CHECK(d.text("SELECT external_id FROM interactions") == "CA-parent");
  CHECK(d.text("SELECT state FROM interactions") == "pending_call");
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE customer_id IS NULL") == 1);
  CHECK(d.rows("SELECT count(*) FROM customers") == 0);
  CHECK(call_field(d, "status") == "in-progress");
  CHECK(d.rows("SELECT count(*) FROM outbox") == 0);

  parent(d, "completed", "1", "55");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto payload = queued_payload(d, "sb:q:general:normal");
  CHECK(payload.at("from").at("value").as_string() == kAnn);
  CHECK(payload.at("to").at(0).at("value").as_string() == kLine);
  CHECK(payload.at("call").at("status").as_string() == "completed");
  CHECK(payload.at("call").at("direction").as_string() == "inbound");
  CHECK(payload.at("call").at("answered_by").as_string() == kAgent);
  CHECK(d.rows("SELECT count(*) FROM customers") == 1);
  CHECK(d.rows(std::string("SELECT count(*) FROM identities WHERE value = '") + kLine + "'") == 0);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
}

namespace {

// The <Dial action> request (https://www.twilio.com/docs/voice/twiml/dial#action): the parent's
// CallSid, CallStatus, Direction, From and To, plus how the <Dial>led leg ended. No Timestamp
// and no SequenceNumber: it is a TwiML request, not a status callback.
void dial_action(VoiceDaemon& d, const std::string& parent_status, const std::string& leg_sid,
                 const std::string& dial_status, const std::string& dial_duration) {
  std::vector<std::pair<std::string, std::string>> p = {{"AccountSid", "AC123"},
                                                        {"CallSid", "CA-parent"},
                                                        {"CallStatus", parent_status},
                                                        {"Direction", "inbound"},
                                                        {"From", kAnn},
                                                        {"To", kLine},
                                                        {"Called", kLine},
                                                        {"Caller", kAnn},
                                                        {"DialCallSid", leg_sid},
                                                        {"DialCallStatus", dial_status},
                                                        {"DialBridged", "true"}};
  if (!dial_duration.empty()) {
    p.emplace_back("DialCallDuration", dial_duration);
  }
  auto r = post_twilio(d, p);
  CAPTURE(r.body);
  REQUIRE(r.status == 200);
}

}  // namespace

// Without a statusCallback on <Number>, the action callback is all Twilio tells of the leg.
TEST_CASE("voice dial: the Dial action callback lists the dialled leg on the parent call") {
  VoiceDaemon d;
  parent(d, "ringing", "0");
  dial_action(d, "in-progress", "CA-leg1", "completed", "40");
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
  CHECK(d.text("SELECT state FROM interactions") == "pending_call");  // the leg's end is not ours
  CHECK(call_field(d, "status") == "in-progress");
  CHECK(call_field(d, "legs[0].id") == "CA-leg1");
  CHECK(call_field(d, "legs[0].status") == "completed");
  CHECK(call_field(d, "legs[0].duration_s") == "40");
  CHECK(call_field(d, "answered_by").empty());  // absent: the action does not say who

  SUBCASE("the leg's own callback, later, names who answered") {
    child(d, "CA-leg1", kAgent, "completed", "2", "Fri, 02 Jan 2026 03:04:55 +0000", "40");
    CHECK(call_field(d, "legs[0].to") == kAgent);
    CHECK(call_field(d, "answered_by") == kAgent);
    CHECK(call_field(d, "answered_at") == "1767323055000");  // 03:04:55 less the 40 s
  }
  SUBCASE("a leg that rang first and was then answered, told by the action only") {
    // <Number statusCallbackEvent="ringing">: the ringing callback brings the number, the
    // action callback the answer.
    child(d, "CA-leg2", kAgent2, "ringing", "0", "Fri, 02 Jan 2026 03:04:10 +0000");
    dial_action(d, "in-progress", "CA-leg2", "completed", "30");
    CHECK(call_field(d, "legs[1].to") == kAgent2);
    CHECK(call_field(d, "legs[1].status") == "completed");
    CHECK(call_field(d, "answered_by") == kAgent2);
  }
  SUBCASE("nobody answered: the leg is listed, the call is not ended by it") {
    dial_action(d, "in-progress", "CA-leg3", "no-answer", "0");
    CHECK(call_field(d, "legs[1].status") == "no-answer");
    CHECK(d.text("SELECT state FROM interactions") == "pending_call");
  }
  parent(d, "completed", "1", "55");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto payload = queued_payload(d, "sb:q:general:normal");
  CHECK(payload.at("call").at("status").as_string() == "completed");
  CHECK(payload.at("call").at("legs").at(0).at("id").as_string() == "CA-leg1");
  CHECK(payload.at("from").at("value").as_string() == kAnn);
}

TEST_CASE("voice dial: a Dial action callback with a bad DialCallDuration is refused, unstored") {
  VoiceDaemon d;
  std::vector<std::pair<std::string, std::string>> p = {{"CallSid", "CA-parent"},
                                                        {"CallStatus", "in-progress"},
                                                        {"Direction", "inbound"},
                                                        {"From", kAnn},
                                                        {"To", kLine},
                                                        {"DialCallSid", "CA-leg1"},
                                                        {"DialCallStatus", "completed"},
                                                        {"DialCallDuration", "forty"}};
  auto r = post_twilio(d, p);
  CHECK(r.status == 400);
  CHECK(r.body.find("DialCallDuration") != std::string::npos);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 0);
}

// The caller's own call ends completed although nobody it <Dial>led answered: routed as it
// stands it never met the "missed calls" rule. The legs listed, none answered, make it no-answer;
// it waits one release of held calls for a leg's answer that may still come, then goes to the
// missed calls.
TEST_CASE("voice dial: nobody answered the dialled leg: held a moment, then routed as no-answer") {
  VoiceDaemon d;
  parent(d, "ringing", "0");
  dial_action(d, "in-progress", "CA-leg1", "no-answer", "0");
  parent(d, "completed", "1", "35");
  CHECK(d.text("SELECT state FROM interactions") == "pending_call");
  CHECK(d.rows("SELECT count(*) FROM outbox") == 0);
  CHECK(call_field(d, "status") == "no-answer");
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE customer_id IS NOT NULL") == 1);
  CHECK(d.release_held() == 0);  // the first release passes it over
  CHECK(d.rows("SELECT count(*) FROM outbox") == 0);
  CHECK(d.release_held() == 1);
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:callbacks:high") == 1; }));
  CHECK(d.redis.xlen("sb:q:general:normal") <= 0);
  auto payload = queued_payload(d, "sb:q:callbacks:high");
  CHECK(payload.at("call").at("status").as_string() == "no-answer");
  CHECK(payload.at("call").at("legs").at(0).at("status").as_string() == "no-answer");
  CHECK(payload.at("from").at("value").as_string() == kAnn);
  CHECK(d.rows("SELECT count(*) FROM customers") == 1);
  CHECK(d.release_held() == 0);  // queued once
}

// A ring group: the leg that loses ends canceled the moment another answers, and the one that
// answered reports when it hangs up, with the caller's own call, in either order.
TEST_CASE(
    "voice dial: a ring group's answer reported after the call's completed keeps it "
    "completed") {
  VoiceDaemon d;
  parent(d, "ringing", "0");
  child(d, "CA-leg2", kAgent2, "canceled", "1", "Fri, 02 Jan 2026 03:04:12 +0000", "0");
  parent(d, "completed", "1", "70");
  CHECK(d.text("SELECT state FROM interactions") == "pending_call");  // held for its legs
  CHECK(call_field(d, "status") == "no-answer");                      // as far as known
  SUBCASE("the answered leg's callback, then the release") {
    child(d, "CA-leg1", kAgent, "completed", "2", "Fri, 02 Jan 2026 03:05:15 +0000", "60");
    CHECK(call_field(d, "status") == "completed");
    CHECK(d.release_held() == 1);  // nothing to wait for any more
  }
  SUBCASE("the <Dial action> telling of the answer queues it at once") {
    dial_action(d, "completed", "CA-leg1", "completed", "60");
  }
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  CHECK(d.redis.xlen("sb:q:callbacks:high") <= 0);
  auto payload = queued_payload(d, "sb:q:general:normal");
  CHECK(payload.at("call").at("status").as_string() == "completed");
  CHECK(payload.at("call").at("legs").as_array().size() == 2);
}

// An agent calling out from a browser phone (Twilio Client): Twilio says "inbound" from
// client:alice, and <Dial>s the customer. Nobody answering is not a missed call of ours.
TEST_CASE(
    "voice dial: a Twilio Client call an agent placed that nobody answered is an outbound call "
    "to the customer, not a missed call") {
  VoiceDaemon d;
  auto client_call = [&](const std::string& status, const std::string& seq) {
    auto r = post_twilio(d, {{"CallSid", "CA-parent"},
                             {"CallStatus", status},
                             {"Direction", "inbound"},
                             {"From", "client:alice"},
                             {"To", kAnn},
                             {"SequenceNumber", seq}});
    CAPTURE(r.body);
    REQUIRE(r.status == 200);
  };
  client_call("ringing", "0");
  child(d, "CA-leg1", kAnn, "no-answer", "1", "Fri, 02 Jan 2026 03:04:40 +0000", "0", kLine);
  client_call("completed", "1");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  CHECK(d.redis.xlen("sb:q:callbacks:high") <= 0);
  auto payload = queued_payload(d, "sb:q:general:normal");
  CHECK(payload.at("call").at("status").as_string() == "completed");
  CHECK(payload.at("call").at("direction").as_string() == "outbound");
  CHECK(payload.at("from").at("value").as_string() == kAnn);  // the customer it called
}

// What the hold does not cover: a call whose legs all report after its own completed was queued
// at once as a call that dialled nobody (an IVR's). Its stored status follows the legs, and an
// agent's claim answers that; the route stays.
TEST_CASE(
    "voice dial: legs that report after the call was queued correct its status, not its "
    "route") {
  VoiceDaemon d;
  parent(d, "ringing", "0");
  parent(d, "completed", "1", "35");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  child(d, "CA-leg1", kAgent, "no-answer", "1", "Fri, 02 Jan 2026 03:04:40 +0000", "0");
  CHECK(call_field(d, "status") == "no-answer");
  CHECK(queued_payload(d, "sb:q:general:normal").at("call").at("status").as_string() ==
        "completed");
  CHECK(d.claim("general").at("call").at("status").as_string() == "no-answer");
  CHECK(d.redis.xlen("sb:q:general:normal") == 1);
  CHECK(d.redis.xlen("sb:q:callbacks:high") <= 0);
}

}  // namespace dial_legs_test

namespace dial_legs_test {

namespace {

// One run of the 4-hour sweep (the daemon's, every minute), for calls older than now; how many
// it closed.
int close_stale(VoiceDaemon& d) {
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the calls older than "now - 0"
  std::promise<int> p;
  d.app->store().close_stale_calls(
      0, [&](const sb::storage::StaleSweep& r) { p.set_value(r.closed); });
  return p.get_future().get();
}

}  // namespace

// The other way round from the no-answer case above: every callback of the leg that answered
// arrives after the call's own completed. The call was queued as it stood (no legs known); the
// leg's ringing makes it no-answer for a moment, its answer completed again, and the route stays.
TEST_CASE(
    "voice dial: an answered leg reported after the call was queued keeps it completed, with "
    "who answered") {
  VoiceDaemon d;
  parent(d, "ringing", "0");
  parent(d, "in-progress", "1");
  parent(d, "completed", "2", "70");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  child(d, "CA-leg1", kAgent, "ringing", "0", "Fri, 02 Jan 2026 03:04:12 +0000");
  child(d, "CA-leg1", kAgent, "in-progress", "1", "Fri, 02 Jan 2026 03:04:15 +0000");
  child(d, "CA-leg1", kAgent, "completed", "2", "Fri, 02 Jan 2026 03:05:15 +0000", "60");
  CHECK(call_field(d, "status") == "completed");
  CHECK(call_field(d, "answered_by") == kAgent);
  CHECK(d.text("SELECT state || ' ' || held || ' ' || queue FROM interactions") ==
        "queued 0 general");
  auto claimed = d.claim("general");
  CHECK(claimed.at("call").at("status").as_string() == "completed");
  CHECK(claimed.at("call").at("answered_by").as_string() == kAgent);
  CHECK(d.redis.xlen("sb:q:general:normal") == 1);
  CHECK(d.redis.xlen("sb:q:callbacks:high") <= 0);
}

// The call's own completed is lost to a restart (posted while the daemon was down, and Twilio
// retries for 15 s at most): the call stays pending with what its leg told, and the 4-hour sweep
// closes it as unknown, legs and who answered kept. A final status that still comes corrects
// the stored call, not its route.
TEST_CASE(
    "voice dial: a call whose completed was lost to a restart is closed as unknown with its "
    "legs - a late final corrects the stored call, not its route") {
  VoiceDaemon d;
  parent(d, "ringing", "0");
  parent(d, "in-progress", "1");
  child(d, "CA-leg1", kAgent, "completed", "2", "Fri, 02 Jan 2026 03:05:15 +0000", "60");
  d.app->stop();  // the caller hangs up now: Twilio's completed finds nobody
  d.app = std::make_unique<sb::App>(d.cfg);
  d.app->start();
  d.http = std::make_unique<sb::test::HttpClient>(d.app->port());
  CHECK(d.text("SELECT state FROM interactions") == "pending_call");
  CHECK(close_stale(d) == 1);
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto payload = queued_payload(d, "sb:q:general:normal");
  CHECK(payload.at("call").at("status").as_string() == "unknown");
  CHECK(payload.at("call").at("answered_by").as_string() == kAgent);
  CHECK(payload.at("call").at("legs").at(0).at("status").as_string() == "completed");
  CHECK(payload.at("from").at("value").as_string() == kAnn);
  CHECK(d.claim("general").at("call").at("status").as_string() == "unknown");
  CHECK(close_stale(d) == 0);  // closed once
  parent(d, "completed", "2", "70");
  CHECK(call_field(d, "status") == "completed");
  CHECK(call_field(d, "duration_s") == "70");
  CHECK(d.text("SELECT state || ' ' || held || ' ' || queue FROM interactions") ==
        "claimed 0 general");  // still carol's, where it was
  CHECK(d.redis.xlen("sb:q:general:normal") == 1);
  CHECK(d.redis.xlen("sb:q:callbacks:high") <= 0);
}

}  // namespace dial_legs_test
