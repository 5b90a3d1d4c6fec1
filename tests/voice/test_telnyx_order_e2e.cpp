// Telnyx Call Control states `direction` in call.initiated only: the API reference's
// call.answered and call.hangup payloads (call_control_id, connection_id, call_leg_id,
// call_session_id, client_state, from, to, start_time, state, hangup_cause, hangup_source,
// sip_hangup_cause, call_quality_stats) and the SDK models carry from/to but no direction, and
// Telnyx does not promise delivery order. For an outbound call `from` is our number, so a
// channel that took `from` for the customer would queue our own line as the caller. The store
// settles the direction (storage/call_parties.hpp); this proves it end to end: signed webhooks
// over HTTP into a whole daemon, and the bytes queued in a real redis-server.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "helpers.hpp"
#include "voice_daemon.hpp"

using sb::voice::test::KeyPair;
using sb::voice::test::VoiceDaemon;
namespace json = boost::json;

// Named per file: the test programs are unity builds (helpers such as kAnn or config() would
namespace telnyx_order_e2e_test {

namespace {

constexpr const char* kLine = "+13125550100";  // our Telnyx number
constexpr const char* kAnn = "+14155550123";   // a customer we know
constexpr const char* kBob = "+14155550177";   // a number nobody knows yet

const KeyPair& key() {
  static const KeyPair k;
  return k;
}

// Posts a Telnyx event shaped like the API reference's examples, signed with key().
void telnyx(VoiceDaemon& d, const std::string& type, const std::string& leg, const std::string& to,
            const std::string& occurred_at, const std::string& extra = "") {
  std::string body =
      R"({"data":{"record_type":"event","event_type":")" + type + R"(","id":"e-)" + leg + type +
      R"(","occurred_at":")" + occurred_at + R"(","payload":{"call_control_id":"v3:)" + leg +
      R"(","call_leg_id":")" + leg + R"(","call_session_id":"s-)" + leg +
      R"(","connection_id":"7267",)" + R"("client_state":null,"from":")" + kLine + R"(","to":")" +
      to + R"(","start_time":"2026-01-02T03:00:00Z")" + (extra.empty() ? "" : "," + extra) + "}}}";
  auto r =
      sb::voice::test::post_telnyx(d, body, [](const std::string& m) { return key().sign(m); });
  CAPTURE(r.body);
  REQUIRE(r.status == 200);
}

void answered(VoiceDaemon& d, const std::string& leg, const std::string& to) {
  telnyx(d, "call.answered", leg, to, "2026-01-02T03:00:10Z", R"("state":"answered")");
}
void hangup(VoiceDaemon& d, const std::string& leg, const std::string& to) {
  telnyx(d, "call.hangup", leg, to, "2026-01-02T03:01:00Z",
         R"("state":"hangup","hangup_cause":"normal_clearing","hangup_source":"callee")");
}
void initiated(VoiceDaemon& d, const std::string& leg, const std::string& to) {
  telnyx(d, "call.initiated", leg, to, "2026-01-02T03:00:00Z",
         R"("direction":"outgoing","state":"bridging")");
}

json::object queued(VoiceDaemon& d, std::size_t i) {
  return json::parse(d.redis.xrange("sb:q:general:normal").at(i)["payload"]).as_object();
}

}  // namespace

TEST_CASE("voice telnyx: outbound calls whose answered and hangup come before initiated") {
  VoiceDaemon d(key().public_b64);
  // Ann is a customer (made by the ingest API); our line is nobody's.
  auto r =
      d.http->post_json("/v1/interactions",
                        std::string(R"({"source":"crm","external_id":"c1","from":{"phone":")") +
                            kAnn + R"(","name":"Ann"},"text":"call me"})",
                        "test-token");
  REQUIRE(r.status == 202);
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));

  SUBCASE("to a known customer: the customer records tell, initiated arrives last") {
    answered(d, "leg-1", kAnn);
    hangup(d, "leg-1", kAnn);
    REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
    initiated(d, "leg-1", kAnn);
    auto p = queued(d, 1);
    CHECK(p.at("from").at("value").as_string() == kAnn);
    CHECK(p.at("customer").at("name").as_string() == "Ann");
    CHECK(p.at("call").at("status").as_string() == "completed");
    CHECK(d.text("SELECT json_extract(payload, '$.call.direction') FROM interactions "
                 "WHERE external_id = 'leg-1'") == "outbound");
  }
  SUBCASE("to a new number: our line, learned from an earlier call, tells; initiated never comes") {
    initiated(d, "leg-2", kAnn);
    hangup(d, "leg-2", kAnn);
    REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 2; }));
    answered(d, "leg-3", kBob);
    hangup(d, "leg-3", kBob);
    REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 3; }));
    auto p = queued(d, 2);
    CHECK(p.at("from").at("value").as_string() == kBob);
    CHECK(p.at("to").at(0).at("value").as_string() == kLine);
    CHECK(p.at("call").at("direction").as_string() == "outbound");
  }
  CHECK(d.rows(std::string("SELECT count(*) FROM identities WHERE value = '") + kLine + "'") == 0);
}

// A fresh account: no learned lines, and a number nobody knows. A call.hangup that comes before
// call.initiated cannot tell our line from the customer's; queued at once (as inbound, with our
// line for its caller) the queue entry stayed wrong when call.initiated corrected the database a
// moment later. Held back instead, the call is queued once, when something tells.
TEST_CASE("voice telnyx: a hangup before initiated on a fresh account waits for the direction") {
  VoiceDaemon d(key().public_b64);
  hangup(d, "leg-9", kBob);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
  CHECK(d.text("SELECT state FROM interactions") == "pending_call");
  CHECK(d.rows("SELECT count(*) FROM outbox") == 0);
  CHECK(d.rows("SELECT count(*) FROM customers") == 0);  // neither number made a customer yet
  hangup(d, "leg-9", kBob);                              // Telnyx retries: nothing changes
  CHECK(d.rows("SELECT count(*) FROM outbox") == 0);

  SUBCASE("call.initiated arrives: an outbound call to Bob, queued once, right") {
    initiated(d, "leg-9", kBob);
    REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
    auto p = queued(d, 0);
    CHECK(p.at("from").at("value").as_string() == kBob);
    CHECK(p.at("to").at(0).at("value").as_string() == kLine);
    CHECK(p.at("direction").as_string() == "outbound");
    CHECK(p.at("call").at("direction").as_string() == "outbound");
    CHECK(p.at("call").at("status").as_string() == "completed");
    CHECK(p.at("customer").at("is_new").as_bool());
    CHECK(d.release_held() == 0);  // nothing left held
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(d.redis.xlen("sb:q:general:normal") == 1);
  }
  SUBCASE("call.initiated never comes: released after the hold, taken for inbound") {
    CHECK(d.release_held() == 1);
    REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
    auto p = queued(d, 0);
    CHECK(p.at("from").at("value").as_string() == kLine);  // from as sent: no evidence either way
    CHECK(p.at("to").at(0).at("value").as_string() == kBob);
    CHECK(p.at("call").at("status").as_string() == "completed");
    CHECK(d.text("SELECT state FROM interactions") == "queued");
    CHECK(d.release_held() == 0);
    // A late call.initiated still corrects the stored call (not the queue entry, already sent).
    initiated(d, "leg-9", kBob);
    CHECK(d.text("SELECT json_extract(payload, '$.from.value') FROM interactions") == kBob);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    CHECK(d.redis.xlen("sb:q:general:normal") == 1);
  }
  CHECK(d.rows("SELECT count(*) FROM interactions") == 1);
}

TEST_CASE("voice telnyx: answered then hangup before initiated keep the caller for the release") {
  VoiceDaemon d(key().public_b64);
  answered(d, "leg-8", kBob);  // unfinished and undirected: no caller named
  hangup(d, "leg-8", kBob);    // ended, still undirected: held, parties kept as sent
  CHECK(d.text("SELECT state FROM interactions") == "pending_call");
  CHECK(d.text("SELECT json_extract(payload, '$.from.value') FROM interactions") == kLine);
  CHECK(d.rows("SELECT count(*) FROM customers") == 0);
  CHECK(d.release_held() == 1);
  REQUIRE(sb::test::eventually([&] { return d.redis.xlen("sb:q:general:normal") == 1; }));
  CHECK(queued(d, 0).at("customer").at("id").as_string().size() > 0);
}

}  // namespace telnyx_order_e2e_test
