// Click-to-call through Twilio: the REST API calls the agent first (Direction=outbound-api, To =
// the agent's browser phone `client:alice` or the agent's own phone), and the TwiML of that call
// <Dial>s the customer as a child leg (Direction=outbound-dial, To = the customer). The customer
// is the leg's callee, never the agent. Signed requests into a whole daemon with a real
// redis-server and SQLite.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <string>

#include "voice_daemon.hpp"

using sb::voice::test::post_twilio;
using sb::voice::test::VoiceDaemon;
namespace json = boost::json;

namespace click_to_call_test {

namespace {

constexpr const char* kLine = "+14155550199";   // our Twilio number, the caller ID
constexpr const char* kAgent = "+14155550166";  // the agent's own phone
constexpr const char* kCustomer = "+14155550881";
constexpr const char* kCustomer2 = "+14155550882";

// A status callback of the call the REST API placed to the agent.
void agent_call(VoiceDaemon& d, const std::string& sid, const std::string& to,
                const std::string& status, const std::string& seq,
                const std::string& duration = "") {
  std::vector<std::pair<std::string, std::string>> p = {{"CallSid", sid},
                                                        {"CallStatus", status},
                                                        {"Direction", "outbound-api"},
                                                        {"From", kLine},
                                                        {"To", to},
                                                        {"SequenceNumber", seq},
                                                        {"Called", to},
                                                        {"ApiVersion", "2010-04-01"}};
  if (!duration.empty()) {
    p.emplace_back("CallDuration", duration);
  }
  auto r = post_twilio(d, p);
  CAPTURE(r.body);
  REQUIRE(r.status == 200);
}

// A status callback of the leg that call's TwiML <Dial>led: the customer.
void customer_leg(VoiceDaemon& d, const std::string& parent, const std::string& to,
                  const std::string& status, const std::string& seq, const std::string& duration) {
  std::vector<std::pair<std::string, std::string>> p = {
      {"CallSid", parent + "-leg"},
      {"ParentCallSid", parent},
      {"CallStatus", status},
      {"Direction", "outbound-dial"},
      {"From", kLine},
      {"To", to},
      {"Called", to},
      {"CallbackSource", "call-progress-events"},
      {"SequenceNumber", seq},
      {"Timestamp", "Fri, 02 Jan 2026 03:04:55 +0000"},
      {"CallDuration", duration}};
  auto r = post_twilio(d, p);
  CAPTURE(r.body);
  REQUIRE(r.status == 200);
}

std::string field(VoiceDaemon& d, const std::string& sid, const std::string& path) {
  return d.text("SELECT json_extract(payload, '$." + path +
                "') FROM interactions WHERE external_id = '" + sid + "'");
}

}  // namespace

TEST_CASE("voice click-to-call: a call to a Twilio Client agent names the customer its leg dials") {
  VoiceDaemon d;
  agent_call(d, "CA600", "client:alice", "initiated", "0");
  agent_call(d, "CA600", "client:alice", "in-progress", "1");
  customer_leg(d, "CA600", kCustomer, "completed", "1", "40");
  agent_call(d, "CA600", "client:alice", "completed", "2", "55");
  // A second call by the same agent, to another customer.
  agent_call(d, "CA601", "client:alice", "in-progress", "0");
  customer_leg(d, "CA601", kCustomer2, "completed", "1", "20");
  agent_call(d, "CA601", "client:alice", "completed", "1", "30");

  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  CHECK(field(d, "CA600", "from.value") == kCustomer);
  CHECK(field(d, "CA601", "from.value") == kCustomer2);
  CHECK(field(d, "CA600", "to[0].value") == kLine);
  CHECK(field(d, "CA600", "call.direction") == "outbound");
  CHECK(field(d, "CA600", "direction") == "outbound");
  CHECK(d.rows("SELECT count(*) FROM customers") == 2);
  CHECK(d.rows("SELECT count(DISTINCT customer_id) FROM interactions") == 2);
  auto entries = d.redis.xrange("sb:q:general:normal");
  auto first = json::parse(entries.at(0)["payload"]).as_object();
  CHECK(first.at("from").at("value").as_string() == kCustomer);
  CHECK(first.at("customer").at("id").as_string() != "");
}

// The caller's own completed and the leg's callback are posted separately: the call waits for
// the leg that names its customer instead of being queued without one.
TEST_CASE("voice click-to-call: a call that ends before its leg reports waits for its customer") {
  VoiceDaemon d;
  agent_call(d, "CA700", "client:alice", "in-progress", "0");
  agent_call(d, "CA700", "client:alice", "completed", "1", "55");
  CHECK(d.rows("SELECT count(*) FROM outbox") == 0);
  CHECK(d.text("SELECT held FROM interactions") == "1");
  customer_leg(d, "CA700", kCustomer, "completed", "1", "40");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  auto payload = json::parse(d.redis.xrange("sb:q:general:normal").at(0)["payload"]).as_object();
  CHECK(payload.at("from").at("value").as_string() == kCustomer);
  CHECK(d.release_held() == 0);  // queued once
  CHECK(d.text("SELECT state FROM interactions WHERE external_id = 'CA700'") == "queued");

  // One whose leg never reports is queued by the release, without a customer.
  agent_call(d, "CA701", "client:alice", "completed", "1", "5");
  CHECK(d.release_held() == 1);
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
  CHECK(field(d, "CA701", "from") == "");
  CHECK(d.redis.xlen("sb:q:general:normal") == 2);
}

// The agent's own phone in the call's To is a customer record once a call named it (here the
// call's in-progress, before its leg reported): a REST call to it that <Dial>s another number is
// still a call to that number, call after call.
TEST_CASE("voice click-to-call: a call to an agent's phone names the customer its leg dials") {
  VoiceDaemon d;
  agent_call(d, "CA800", kAgent, "in-progress", "0");
  CHECK(field(d, "CA800", "from.value") == kAgent);  // nothing tells otherwise yet
  customer_leg(d, "CA800", kCustomer, "completed", "1", "40");
  agent_call(d, "CA800", kAgent, "completed", "1", "55");
  agent_call(d, "CA801", kAgent, "in-progress", "0");
  customer_leg(d, "CA801", kCustomer2, "completed", "1", "20");
  agent_call(d, "CA801", kAgent, "completed", "1", "30");
  // The leg reports first, then the call.
  customer_leg(d, "CA802", kCustomer, "completed", "1", "10");
  agent_call(d, "CA802", kAgent, "completed", "1", "15");

  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; }));
  CHECK(field(d, "CA800", "from.value") == kCustomer);
  CHECK(field(d, "CA801", "from.value") == kCustomer2);
  CHECK(field(d, "CA802", "from.value") == kCustomer);
  auto agent_record =
      d.text(std::string("SELECT customer_id FROM identities WHERE value = '") + kAgent + "'");
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE customer_id = '" + agent_record + "'") ==
        0);
  for (const auto& entry : d.redis.xrange("sb:q:general:normal")) {
    auto payload = json::parse(entry.at("payload")).as_object();
    CHECK(payload.at("from").at("value").as_string() != kAgent);
  }
}

// A Voice SDK call whose TwiML <Dial>s the number in its own To is a call to that number.
TEST_CASE("voice click-to-call: a leg to the call's own To changes nothing") {
  VoiceDaemon d;
  agent_call(d, "CA810", kCustomer, "in-progress", "0");
  customer_leg(d, "CA810", kCustomer, "completed", "1", "40");
  agent_call(d, "CA810", kCustomer, "completed", "1", "55");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  CHECK(field(d, "CA810", "from.value") == kCustomer);
  CHECK(d.rows("SELECT count(*) FROM customers") == 1);
}

// A number an inbound call was forwarded to (an on-call phone outside) is not one of our lines:
// a REST call straight to it is a call to a customer, queued with them at once.
TEST_CASE("voice click-to-call: a number an inbound call forwarded to stays a customer's") {
  VoiceDaemon d;
  constexpr const char* kForwarded = "+14155550777";
  auto post = [&](std::vector<std::pair<std::string, std::string>> p) {
    auto r = post_twilio(d, p);
    CAPTURE(r.body);
    REQUIRE(r.status == 200);
  };
  post({{"CallSid", "CA-in"},
        {"CallStatus", "ringing"},
        {"Direction", "inbound"},
        {"From", "+14155550123"},
        {"To", kLine},
        {"SequenceNumber", "0"}});
  post({{"CallSid", "CA-in-leg"},
        {"ParentCallSid", "CA-in"},
        {"CallStatus", "completed"},
        {"Direction", "outbound-dial"},
        {"From", "+14155550123"},
        {"To", kForwarded},
        {"SequenceNumber", "0"},
        {"CallDuration", "30"}});

  agent_call(d, "CA820", kForwarded, "completed", "0", "25");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  CHECK(field(d, "CA820", "from.value") == kForwarded);
  CHECK(d.text("SELECT held FROM interactions WHERE external_id = 'CA820'") == "0");
  auto payload = json::parse(d.redis.xrange("sb:q:general:normal").at(0)["payload"]).as_object();
  CHECK(payload.at("from").at("value").as_string() == kForwarded);
}

// A call queued with the customer its To named, corrected by its leg afterwards: the queue entry
// keeps the customer it was queued with, and that record must still be there for the agent.
TEST_CASE("voice click-to-call: a corrected call's queue entry still names a customer record") {
  VoiceDaemon d;
  agent_call(d, "CA830", kAgent, "completed", "0", "25");
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  customer_leg(d, "CA830", kCustomer, "completed", "1", "20");
  CHECK(field(d, "CA830", "from.value") == kCustomer);
  auto payload = json::parse(d.redis.xrange("sb:q:general:normal").at(0)["payload"]).as_object();
  std::string queued_customer(payload.at("customer").at("id").as_string());
  REQUIRE(!queued_customer.empty());
  auto r = d.http->request("GET", "/v1/customers/" + queued_customer, "",
                           {{"Authorization", "Bearer carol-token"}});
  CAPTURE(r.body);
  CHECK(r.status == 200);
}

}  // namespace click_to_call_test
