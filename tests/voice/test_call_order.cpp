// The customer of a call is its remote party whatever order the provider delivers the events in:
// for an outbound call Telnyx puts our number in `from` and the customer in `to`, but only
// call.initiated says `direction` (call.answered and call.hangup do not: Telnyx API reference
// and SDK models), and Telnyx does not guarantee order. Signed Telnyx payloads go through the
// real route handler into a real Writer + Store.
#include <doctest/doctest.h>

#include "call_store.hpp"
#include "channels/voice/pbx.hpp"
#include "channels/voice/signatures.hpp"
#include "channels/voice/telnyx.hpp"
#include "channels/voice/twilio.hpp"
#include "helpers.hpp"
#include "storage/customers.hpp"
#include "storage/schema.hpp"

using namespace sb;
using sb::voice::test::CallStore;
using sb::voice::test::kCanon;
using sb::voice::test::KeyPair;
using sb::voice::test::Request;

// Named per file: the test programs are unity builds (helpers such as kAnn or config() would
namespace call_order_test {

namespace {

constexpr const char* kOurLine = "+13125550100";
constexpr const char* kAnn = "+14155550123";  // a customer from the CRM
constexpr const char* kBob = "+14155550177";  // nobody knows him yet

const KeyPair& key() {
  static const KeyPair k;
  return k;
}

// A Telnyx Call Control event, shaped like the API reference's examples: `direction` only when
// given (call.initiated).
CallEventInput telnyx(const std::string& type, const std::string& leg, const std::string& from,
                      const std::string& to, const std::string& occurred_at,
                      const std::string& extra = "") {
  config::Telnyx cfg;
  cfg.name = "voice";
  cfg.public_key = key().public_b64;
  Request r;
  r.target = "/webhooks/telnyx/voice";
  r.content_type = "application/json";
  r.body = R"({"data":{"record_type":"event","event_type":")" + type + R"(","id":"e-)" + leg +
           type + R"(","occurred_at":")" + occurred_at + R"(","payload":{"call_control_id":"v3:)" +
           leg + R"(","call_leg_id":")" + leg + R"(","call_session_id":"s-)" + leg +
           R"(","from":")" + from + R"(","to":")" + to +
           R"(","start_time":"2026-01-02T03:00:00Z")" + (extra.empty() ? "" : "," + extra) + "}}}";
  std::string ts = std::to_string(r.now);
  r.with("telnyx-timestamp", ts);
  r.with("telnyx-signature-ed25519", key().sign(ts + "|" + r.body));
  auto res = voice::handle_telnyx(cfg, r.view(), "US", kCanon);
  REQUIRE(res.status == 200);
  REQUIRE(res.event);
  return std::move(*res.event);
}

CallEventInput initiated(const std::string& leg, const std::string& from, const std::string& to,
                         const std::string& direction) {
  return telnyx("call.initiated", leg, from, to, "2026-01-02T03:00:00Z",
                R"("direction":")" + direction + R"(","state":"bridging")");
}
CallEventInput answered(const std::string& leg, const std::string& from, const std::string& to) {
  return telnyx("call.answered", leg, from, to, "2026-01-02T03:00:10Z");
}
CallEventInput hangup(const std::string& leg, const std::string& from, const std::string& to) {
  return telnyx("call.hangup", leg, from, to, "2026-01-02T03:01:00Z",
                R"("hangup_cause":"normal_clearing","hangup_source":"callee")");
}

// A generic PBX event (SPEC section 3), `direction` only when given.
// `occurred_at` "" leaves the key out; the event is signed `sign_offset_s` from now.
CallEventInput pbx(const std::string& event, const std::string& call_id, const std::string& from,
                   const std::string& to, const std::string& occurred_at,
                   const std::string& direction = "", std::int64_t sign_offset_s = 0) {
  config::CallWebhook cfg;
  cfg.name = "voice";
  cfg.secret = "pbx-secret";
  Request r;
  r.target = "/webhooks/calls/voice";
  r.content_type = "application/json";
  // "from" and "to" are optional in the SPEC: "" leaves them out.
  r.body = R"({"event":")" + event + R"(","call_id":")" + call_id + R"(")" +
           (from.empty() ? "" : R"(,"from":")" + from + R"(")") +
           (to.empty() ? "" : R"(,"to":")" + to + R"(")") +
           (occurred_at.empty() ? "" : R"(,"occurred_at":")" + occurred_at + R"(")") +
           (direction.empty() ? "" : R"(,"direction":")" + direction + R"(")") + "}";
  r.with("X-Switchboard-Signature",
         voice::pbx_signature_header(cfg.secret, r.now + sign_offset_s, r.body));
  auto res = voice::handle_pbx(cfg, r.view(), "US", kCanon);
  REQUIRE(res.status == 200);
  REQUIRE(res.event);
  return std::move(*res.event);
}

void import_ann(CallStore& s) {
  storage::Db db(s.path);
  storage::CustomerImporter imp(db);
  imp.begin();
  std::string error;
  storage::CustomerUpsert ann{"crm-1", "Ann", "vip", {}, {{"phone", kAnn, "", ""}}};
  REQUIRE(imp.upsert(ann, error) == storage::CustomerImporter::Result::inserted);
  imp.commit();
}

std::string caller_of(CallStore& s, const std::string& leg) {
  return s.text(
      "SELECT json_extract(payload, '$.from.value') FROM interactions "
      "WHERE external_id = '" +
      leg + "'");
}

std::string identities_of(CallStore& s, const std::string& number) {
  return s.text("SELECT count(*) FROM identities WHERE value = '" + number + "'");
}

}  // namespace

TEST_CASE("call order: telnyx outbound call, answered and hangup before initiated") {
  CallStore s;
  import_ann(s);
  s.start();
  REQUIRE(s.submit(answered("leg-1", kOurLine, kAnn)).error.empty());
  REQUIRE(s.submit(hangup("leg-1", kOurLine, kAnn)).error.empty());
  REQUIRE(s.submit(initiated("leg-1", kOurLine, kAnn, "outgoing")).error.empty());
  CHECK(caller_of(s, "leg-1") == kAnn);
  CHECK(s.text("SELECT json_extract(payload, '$.customer.name') FROM interactions") == "Ann");
  CHECK(s.text("SELECT json_extract(payload, '$.call.direction') FROM interactions") == "outbound");
  CHECK(s.text("SELECT json_extract(payload, '$.call.status') FROM interactions") == "completed");
  CHECK(identities_of(s, kOurLine) == "0");  // our own number never becomes a customer
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
}

TEST_CASE("call order: telnyx outbound call to a new number, answered before initiated") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(answered("leg-2", kOurLine, kBob)).error.empty());
  REQUIRE(s.submit(initiated("leg-2", kOurLine, kBob, "outgoing")).error.empty());
  REQUIRE(s.submit(hangup("leg-2", kOurLine, kBob)).error.empty());
  CHECK(caller_of(s, "leg-2") == kBob);
  CHECK(identities_of(s, kOurLine) == "0");
  CHECK(identities_of(s, kBob) == "1");
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
}

// The worst order for a number nobody knows: the call ends before anything says its direction.
// It is held back, no customer made of either number, until call.initiated tells; then queued.
TEST_CASE("call order: telnyx outbound call to a new number, initiated last, is corrected") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(hangup("leg-3", kOurLine, kBob)).error.empty());
  CHECK(s.text("SELECT count(*) FROM outbox") == "0");
  CHECK(s.text("SELECT count(*) FROM customers") == "0");
  REQUIRE(s.submit(initiated("leg-3", kOurLine, kBob, "outgoing")).error.empty());
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
  CHECK(caller_of(s, "leg-3") == kBob);
  CHECK(identities_of(s, kOurLine) == "0");  // the customer the hangup made of it is gone
  CHECK(s.text("SELECT direction || ' ' || json_extract(payload, '$.direction') || ' ' || "
               "json_extract(payload, '$.to[0].value') FROM interactions") ==
        std::string("outbound outbound ") + kOurLine);
  CHECK(s.text("SELECT count(*) FROM customers") == "1");
  CHECK(s.text("SELECT i.value FROM identities i JOIN interactions x ON x.customer_id = "
               "i.customer_id") == kBob);
  CHECK(s.text("SELECT i.value FROM identities i JOIN conversations c ON c.customer_id = "
               "i.customer_id") == kBob);
}

// call.initiated lost for good: the line is known from an earlier call of the account.
TEST_CASE("call order: telnyx outbound call whose call.initiated never arrives") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(initiated("leg-4", kOurLine, kAnn, "outgoing")).error.empty());
  REQUIRE(s.submit(hangup("leg-4", kOurLine, kAnn)).error.empty());
  REQUIRE(s.submit(answered("leg-5", kOurLine, kBob)).error.empty());
  REQUIRE(s.submit(hangup("leg-5", kOurLine, kBob)).error.empty());
  CHECK(caller_of(s, "leg-5") == kBob);
  CHECK(s.text("SELECT json_extract(payload, '$.call.direction') FROM interactions "
               "WHERE external_id = 'leg-5'") == "outbound");
  CHECK(identities_of(s, kOurLine) == "0");
  CHECK(s.text("SELECT count(*) FROM outbox") == "2");
}

TEST_CASE("call order: telnyx outbound call to a known customer without call.initiated") {
  CallStore s;
  import_ann(s);
  s.start();
  REQUIRE(s.submit(answered("leg-6", kOurLine, kAnn)).error.empty());
  REQUIRE(s.submit(hangup("leg-6", kOurLine, kAnn)).error.empty());
  CHECK(caller_of(s, "leg-6") == kAnn);
  CHECK(identities_of(s, kOurLine) == "0");
}

// The customer records that tell the direction include a number known only by WhatsApp.
TEST_CASE("call order: telnyx outbound call to a customer known only by WhatsApp") {
  CallStore s;
  s.exec(
      "INSERT INTO customers(id, name, created_at, updated_at) VALUES ('cy', 'Cy', 1, 1);"
      "INSERT INTO identities(type, value, customer_id) VALUES ('whatsapp', '" +
      std::string(kAnn) + "', 'cy')");
  s.start();
  REQUIRE(s.submit(answered("leg-w", kOurLine, kAnn)).error.empty());
  REQUIRE(s.submit(hangup("leg-w", kOurLine, kAnn)).error.empty());
  CHECK(caller_of(s, "leg-w") == kAnn);
  CHECK(s.text("SELECT customer_id FROM interactions WHERE external_id = 'leg-w'") == "cy");
  CHECK(identities_of(s, kOurLine) == "0");
  CHECK(s.text("SELECT count(*) FROM customers") == "1");
}

TEST_CASE("call order: telnyx inbound call whose call.initiated never arrives") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(answered("leg-7", kBob, kOurLine)).error.empty());
  REQUIRE(s.submit(hangup("leg-7", kBob, kOurLine)).error.empty());
  CHECK(s.text("SELECT count(*) FROM outbox") == "0");  // held: nothing tells the direction yet
  CHECK(s.release() == 1);                              // the hold is over: taken for inbound
  CHECK(caller_of(s, "leg-7") == kBob);
  CHECK(identities_of(s, kOurLine) == "0");
  CHECK(identities_of(s, kBob) == "1");
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
  CHECK(s.release() == 0);
}

TEST_CASE("call order: telnyx inbound call, hangup before initiated") {
  CallStore s;
  import_ann(s);
  s.start();
  REQUIRE(s.submit(hangup("leg-8", kAnn, kOurLine)).error.empty());
  REQUIRE(s.submit(answered("leg-8", kAnn, kOurLine)).error.empty());
  REQUIRE(s.submit(initiated("leg-8", kAnn, kOurLine, "incoming")).error.empty());
  CHECK(caller_of(s, "leg-8") == kAnn);
  CHECK(s.text("SELECT json_extract(payload, '$.call.direction') FROM interactions") == "inbound");
  CHECK(identities_of(s, kOurLine) == "0");
}

// A PBX that never states the direction and names the parties on the first event only: the
// caller it named is the call's when the call ends, by its own event or by the 4-hour sweep.
TEST_CASE("call order: pbx call without direction, the ending event names no party") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(pbx("ringing", "pbx-7", kBob, kOurLine, "2026-01-02T03:00:00Z")).error.empty());
  REQUIRE(s.submit(pbx("completed", "pbx-7", "", "", "2026-01-02T03:01:00Z")).error.empty());
  CHECK(caller_of(s, "pbx-7") == kBob);
  CHECK(s.text("SELECT i.value FROM identities i JOIN interactions x ON x.customer_id = "
               "i.customer_id WHERE x.external_id = 'pbx-7'") == kBob);
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");

  REQUIRE(s.submit(pbx("ringing", "pbx-8", kBob, kOurLine, "2026-01-02T03:00:00Z")).error.empty());
  CHECK(s.sweep(0) == 1);  // no final event: closed as unknown
  CHECK(caller_of(s, "pbx-8") == kBob);
  CHECK(s.text("SELECT json_extract(payload, '$.call.status') FROM interactions "
               "WHERE external_id = 'pbx-8'") == "unknown");
}

// An outbound call whose callee is no phone number (an extension): our line is never its
// customer, not even when a later event names no party and the stored ones are looked at.
TEST_CASE("call order: pbx outbound call to an extension makes no customer of our line") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(pbx("ringing", "pbx-9", kOurLine, "201", "2026-01-02T03:00:00Z", "outbound"))
              .error.empty());
  REQUIRE(s.submit(pbx("completed", "pbx-9", "", "", "2026-01-02T03:01:00Z")).error.empty());
  CHECK(identities_of(s, kOurLine) == "0");
  CHECK(caller_of(s, "pbx-9") == "");
}

// A PBX that states the direction on its first event only, delivered last.
TEST_CASE("call order: pbx outbound call, the event stating the direction arrives last") {
  CallStore s;
  s.start();
  REQUIRE(
      s.submit(pbx("completed", "pbx-1", kOurLine, kBob, "2026-01-02T03:01:00Z")).error.empty());
  REQUIRE(s.submit(pbx("answered", "pbx-1", kOurLine, kBob, "2026-01-02T03:00:10Z")).error.empty());
  REQUIRE(s.submit(pbx("ringing", "pbx-1", kOurLine, kBob, "2026-01-02T03:00:00Z", "outbound"))
              .error.empty());
  CHECK(caller_of(s, "pbx-1") == kBob);
  CHECK(s.text("SELECT json_extract(payload, '$.call.direction') FROM interactions") == "outbound");
  CHECK(s.text("SELECT i.value FROM identities i JOIN interactions x ON x.customer_id = "
               "i.customer_id") == kBob);
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
}

// SPEC section 5 allows call.direction inbound | outbound only: a PBX that never says leaves
// the key out, and the top-level direction is the one routing used. Nothing later will tell
// the direction either, so the call is not held back: queued at once, taken for inbound.
TEST_CASE(
    "call order: pbx call that never states its direction is queued at once, no empty "
    "call.direction") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(pbx("missed", "pbx-2", kBob, kOurLine, "2026-01-02T03:00:00Z")).error.empty());
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
  CHECK(s.text("SELECT state FROM interactions") == "queued");
  CHECK(s.release() == 0);
  CHECK(s.text("SELECT json_type(payload, '$.call.direction') FROM interactions") == "");
  CHECK(s.text("SELECT json_extract(payload, '$.direction') FROM interactions") == "inbound");
  CHECK(s.text("SELECT json_extract(payload, '$.call.status') FROM interactions") == "no-answer");
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
}

// Telnyx answering machine detection: an outbound call that a machine answered ends `voicemail`,
// as a Twilio one (AnsweredBy=machine_*) does, whichever of the detection and the hangup comes
// first.
namespace {

CallEventInput machine_detected(const std::string& leg, const std::string& result) {
  return telnyx("call.machine.detection.ended", leg, kOurLine, kBob, "2026-01-02T03:00:15Z",
                R"("result":")" + result + R"(")");
}

std::string status_of(CallStore& s, const std::string& leg) {
  return s.text(
      "SELECT json_extract(payload, '$.call.status') FROM interactions "
      "WHERE external_id = '" +
      leg + "'");
}

}  // namespace

TEST_CASE("call order: telnyx outbound call answered by a machine ends as voicemail") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(initiated("amd-1", kOurLine, kBob, "outgoing")).error.empty());
  REQUIRE(s.submit(answered("amd-1", kOurLine, kBob)).error.empty());
  REQUIRE(s.submit(machine_detected("amd-1", "machine")).error.empty());
  REQUIRE(s.submit(hangup("amd-1", kOurLine, kBob)).error.empty());
  CHECK(status_of(s, "amd-1") == "voicemail");
  CHECK(s.text("SELECT json_extract(payload, '$.call.machine_detection') FROM interactions "
               "WHERE external_id = 'amd-1'") == "machine");
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");  // queued once, as voicemail

  // A person answered: completed, the result kept.
  REQUIRE(s.submit(initiated("amd-2", kOurLine, kBob, "outgoing")).error.empty());
  REQUIRE(s.submit(machine_detected("amd-2", "human")).error.empty());
  REQUIRE(s.submit(hangup("amd-2", kOurLine, kBob)).error.empty());
  CHECK(status_of(s, "amd-2") == "completed");
  CHECK(s.text("SELECT json_extract(payload, '$.call.machine_detection') FROM interactions "
               "WHERE external_id = 'amd-2'") == "human");

  // The detection delivered after the hangup still corrects the stored call.
  REQUIRE(s.submit(initiated("amd-3", kOurLine, kBob, "outgoing")).error.empty());
  REQUIRE(s.submit(hangup("amd-3", kOurLine, kBob)).error.empty());
  REQUIRE(s.submit(machine_detected("amd-3", "machine")).error.empty());
  CHECK(status_of(s, "amd-3") == "voicemail");
  REQUIRE(s.submit(hangup("amd-3", kOurLine, kBob)).error.empty());  // a retry changes nothing
  CHECK(status_of(s, "amd-3") == "voicemail");
  CHECK(s.text("SELECT count(*) FROM outbox") == "3");
}

// A PBX that never states the direction: an outbound call first, taken for inbound, makes a
// customer of our own line. That customer must not make the next caller's call an outbound call
// to our line (rule 3): the caller gets a record of their own.
TEST_CASE(
    "call order: pbx without direction, our line taken for a caller does not swallow callers") {
  constexpr const char* kPbxLine = "+14155550199";
  constexpr const char* kCaller = "+14155550777";
  CallStore s;
  s.start();
  // Really outbound (our line calls Ann): nothing tells, taken for inbound.
  REQUIRE(s.submit(pbx("completed", "c1", kPbxLine, kAnn, "")).error.empty());
  CHECK(caller_of(s, "c1") == kPbxLine);
  // Really inbound: a new caller rings our line.
  REQUIRE(s.submit(pbx("missed", "c2", kCaller, kPbxLine, "")).error.empty());
  CHECK(caller_of(s, "c2") == kCaller);
  CHECK(s.text("SELECT json_extract(payload, '$.customer.is_new') FROM interactions "
               "WHERE external_id = 'c2'") == "1");
  CHECK(s.text("SELECT i.value FROM identities i JOIN interactions x ON x.customer_id = "
               "i.customer_id WHERE x.external_id = 'c2'") == kCaller);
  CHECK(s.text("SELECT direction FROM interactions WHERE external_id = 'c2'") == "inbound");
  CHECK(s.text("SELECT count(*) FROM outbox") == "2");
}

// A customer made by a guessed call counts for rule 3 again once something firm names it: a call
// that states its direction, any other interaction (as migration 14 counts them), or the CRM
// adopting it.
TEST_CASE("call order: pbx without direction, a guessed caller named firmly counts again") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(pbx("missed", "g1", kBob, kOurLine, "")).error.empty());  // guessed: Bob
  SUBCASE("by a call that states its direction") {
    REQUIRE(s.submit(pbx("missed", "g2", kBob, kOurLine, "", "inbound")).error.empty());
  }
  SUBCASE("by a WhatsApp message from the number") {
    Inbound wa;
    wa.channel = "whatsapp";
    wa.account = "meta";
    wa.kind = "direct_message";
    wa.external_id = "wamid.G1";
    wa.from = Identity{"whatsapp", kBob, "Bob", "14155550177"};
    wa.text = "about my call";
    REQUIRE(s.message(wa).error.empty());
    CHECK(s.text("SELECT customer_id FROM interactions WHERE external_id = 'wamid.G1'") ==
          s.text("SELECT customer_id FROM interactions WHERE external_id = 'g1'"));
    // A second message is matched by its WhatsApp identity: the mark is gone already.
    wa.external_id = "wamid.G2";
    REQUIRE(s.message(wa).error.empty());
  }
  SUBCASE("by an ingest API post with the number") {
    Inbound post;
    post.channel = "api";
    post.account = "crm";
    post.kind = "message";
    post.external_id = "crm-post-1";
    post.from = Identity{"phone", kBob, "Bob", ""};
    post.text = "called you earlier";
    REQUIRE(s.message(std::move(post)).error.empty());
  }
  SUBCASE("by the CRM") {
    storage::Db db(s.path);
    storage::CustomerImporter imp(db);
    imp.begin();
    std::string error;
    storage::CustomerUpsert bob{"crm-2", "Bob", "", {}, {{"phone", kBob, "", ""}}};
    REQUIRE(imp.upsert(bob, error) == storage::CustomerImporter::Result::updated);
    imp.commit();
  }
  // Our line calls Bob on another account (no lines learned there), the PBX does not say:
  // Bob is a known customer, so the call is outbound and Bob its customer.
  CallEventInput out = pbx("completed", "g3", kOurLine, kBob, "");
  out.call.account = "other";
  REQUIRE(s.submit(std::move(out)).error.empty());
  CHECK(caller_of(s, "g3") == kBob);
  CHECK(s.text("SELECT direction FROM interactions WHERE external_id = 'g3'") == "outbound");
  CHECK(identities_of(s, kOurLine) == "0");
  CHECK(s.text("SELECT count(*) FROM guessed_customers g JOIN customers c ON c.id = "
               "g.customer_id WHERE c.external_id IS NULL") == "0");
}

// Telnyx's call.initiated, late: the call was released as inbound before it came (its caller a
// guessed customer), and when it states that direction the caller is named firmly, as a call
// that stated it from the start would have named them.
TEST_CASE(
    "call order: telnyx, a caller taken for inbound is named firmly by a late call.initiated") {
  CallStore s;
  s.start();
  auto guessed = [&] {
    return s.text(
        "SELECT count(*) FROM guessed_customers g JOIN customers c ON c.id = "
        "g.customer_id WHERE c.external_id IS NULL");
  };
  REQUIRE(s.submit(hangup("late-1", kBob, kOurLine)).error.empty());
  CHECK(s.release() == 1);
  CHECK(caller_of(s, "late-1") == kBob);
  CHECK(guessed() == "1");
  REQUIRE(s.submit(initiated("late-1", kBob, kOurLine, "incoming")).error.empty());
  CHECK(s.text("SELECT json_extract(payload, '$.call.direction') FROM interactions "
               "WHERE external_id = 'late-1'") == "inbound");
  CHECK(guessed() == "0");
  // Our line calls Bob on an account with no lines learned, the PBX does not say: Bob is a
  // known customer, so the call is outbound and Bob its customer.
  CallEventInput out = pbx("completed", "late-2", kOurLine, kBob, "");
  out.call.account = "other";
  REQUIRE(s.submit(std::move(out)).error.empty());
  CHECK(caller_of(s, "late-2") == kBob);
  CHECK(s.text("SELECT direction FROM interactions WHERE external_id = 'late-2'") == "outbound");
}

// A PBX retry is signed again, so without occurred_at the signature time says nothing about
// when the event happened: a late re-delivery of an earlier final status must not replace the
// one already queued.
TEST_CASE(
    "call order: pbx events without occurred_at, a re-signed earlier final status does not replace "
    "the queued one") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(pbx("voicemail", "pbx-3", kBob, kOurLine, "", "", -20)).error.empty());
  REQUIRE(s.submit(pbx("missed", "pbx-3", kBob, kOurLine, "", "", 0)).error.empty());
  CHECK(s.text("SELECT json_extract(payload, '$.call.status') FROM interactions") == "voicemail");
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
}

// A held call with no caller to name (withheld number) is still queued by the release, once.
TEST_CASE("call order: a held call from a withheld number is released and queued once") {
  CallStore s;
  s.start();
  REQUIRE(s.submit(hangup("leg-9", "anonymous", kOurLine)).error.empty());
  CHECK(s.text("SELECT count(*) FROM outbox") == "0");
  CHECK(s.release() == 1);
  CHECK(s.text("SELECT state FROM interactions") == "queued");
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
  CHECK(s.release() == 0);
  CHECK(s.text("SELECT count(*) FROM customers") == "0");
}

// Twilio states Direction on every call request and status callback (outbound-api for a call
// made through the REST API: From is our number, To the customer), so any order works.
TEST_CASE("call order: twilio outbound-api callbacks in reverse order") {
  CallStore s;
  s.start();
  config::Twilio cfg;
  cfg.name = "voice";
  auto twilio = [&](const std::string& status, const std::string& seq) {
    FormParams p = {{"CallSid", "CA-out"},
                    {"CallStatus", status},
                    {"Direction", "outbound-api"},
                    {"From", kOurLine},
                    {"To", kBob},
                    {"SequenceNumber", seq},
                    {"CallDuration", status == "completed" ? "30" : ""}};
    auto res = voice::twilio_event(cfg, p, "US", kCanon);
    REQUIRE(res.event);
    return std::move(*res.event);
  };
  REQUIRE(s.submit(twilio("completed", "3")).error.empty());
  REQUIRE(s.submit(twilio("in-progress", "2")).error.empty());
  REQUIRE(s.submit(twilio("ringing", "1")).error.empty());
  CHECK(caller_of(s, "CA-out") == kBob);
  CHECK(identities_of(s, kOurLine) == "0");
  CHECK(s.text("SELECT count(*) FROM outbox") == "1");
}

// An upgraded database knows the lines of the calls it already holds (migration 7), so a
// directionless event needs no new call.initiated first; an unreadable payload does not stop it.
TEST_CASE("call order: the upgrade to call_lines learns the lines of stored calls") {
  sb::test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 6);
    auto row = [&](const std::string& id, const std::string& direction,
                   const std::string& payload) {
      auto st = db.prepare(
          "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
          "occurred_at, received_at, payload) VALUES (?1, 'voice', 'voice', ?1, 'call', ?2, 1, 1, "
          "?3)");
      st.bind(1, id).bind(2, direction).bind(3, payload).run();
    };
    // Stated on the first event: "to" is our line.
    row("c1", "outbound",
        R"({"direction":"outbound","to":[{"type":"phone","value":"+13125550100"}],)"
        R"("call":{"status":"completed","direction":"outbound"}})");
    // First event without a direction (the old code took it for inbound): "to" may be anyone.
    row("c2", "inbound",
        R"({"direction":"inbound","to":[{"type":"phone","value":"+14155550177"}],)"
        R"("call":{"status":"completed","direction":"outbound"}})");
    row("c3", "inbound", R"({"call": [)");
    storage::migrate(db);
  }
  storage::Db db(path, true);
  auto st = db.prepare("SELECT group_concat(value) FROM call_lines");
  REQUIRE(st.step());
  CHECK(st.text(0) == kOurLine);
}

// An upgraded database knows which customers guessed calls made (migration 14): those whose every
// interaction is a call stored without call.direction, and the CRM never named.
TEST_CASE("call order: the upgrade to guessed_customers marks the customers of guessed calls") {
  sb::test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 13);
    auto customer = [&](const std::string& id, const std::string& phone, const char* external) {
      auto st = db.prepare(
          "INSERT INTO customers(id, external_id, created_at, updated_at) VALUES (?1, ?2, 1, 1)");
      st.bind(1, id);
      if (external) {
        st.bind(2, std::string(external));
      } else {
        st.bind_null(2);
      }
      st.run();
      db.prepare("INSERT INTO identities(type, value, customer_id) VALUES ('phone', ?1, ?2)")
          .bind(1, phone)
          .bind(2, id)
          .run();
    };
    auto row = [&](const std::string& id, const std::string& customer, const std::string& channel,
                   const std::string& payload) {
      auto st = db.prepare(
          "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
          "customer_id, occurred_at, received_at, payload) VALUES (?1, ?2, 'voice', ?1, ?3, "
          "'inbound', ?4, 1, 1, ?5)");
      st.bind(1, id).bind(2, channel).bind(3, channel == "voice" ? "call" : "message");
      st.bind(4, customer).bind(5, payload).run();
    };
    const std::string guessed = R"({"call":{"status":"completed"}})";
    customer("G", kOurLine, nullptr);  // only guessed calls
    row("i1", "G", "voice", guessed);
    row("i2", "G", "voice", guessed);
    customer("F", kBob, nullptr);  // one call that stated its direction
    row("i3", "F", "voice", guessed);
    row("i4", "F", "voice", R"({"call":{"status":"completed","direction":"inbound"}})");
    customer("C", kAnn, "crm-1");  // named by the CRM
    row("i5", "C", "voice", guessed);
    customer("W", "+14155550188", nullptr);  // wrote on WhatsApp too
    row("i6", "W", "voice", guessed);
    row("i7", "W", "whatsapp", "{}");
    customer("U", "+14155550189", nullptr);  // an unreadable payload counts as firm
    row("i8", "U", "voice", R"({"call": [)");
    storage::migrate(db);
  }
  storage::Db db(path, true);
  auto st = db.prepare("SELECT group_concat(customer_id) FROM guessed_customers");
  REQUIRE(st.step());
  CHECK(st.text(0) == "G");
}

// The marks the daemon left on callers that something firm named since (migration 17): a
// message, or the call that made them stating its direction later. The others stay.
TEST_CASE("call order: the upgrade to 20 takes the marks off callers named firmly since") {
  sb::test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 19);
    auto customer = [&](const std::string& id, const std::string& phone) {
      db.prepare("INSERT INTO customers(id, created_at, updated_at) VALUES (?1, 1, 1)")
          .bind(1, id)
          .run();
      db.prepare("INSERT INTO identities(type, value, customer_id) VALUES ('phone', ?1, ?2)")
          .bind(1, phone)
          .bind(2, id)
          .run();
      db.prepare("INSERT INTO guessed_customers(customer_id) VALUES (?1)").bind(1, id).run();
    };
    auto row = [&](const std::string& id, const std::string& customer, const std::string& channel,
                   const std::string& payload) {
      auto st = db.prepare(
          "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
          "customer_id, occurred_at, received_at, payload) VALUES (?1, ?2, 'voice', ?1, ?3, "
          "'inbound', ?4, 1, 1, ?5)");
      st.bind(1, id).bind(2, channel).bind(3, channel == "voice" ? "call" : "message");
      st.bind(4, customer).bind(5, payload).run();
    };
    const std::string guessed = R"({"call":{"status":"completed"}})";
    customer("G", kOurLine);  // only guessed calls
    row("i1", "G", "voice", guessed);
    customer("W", kBob);  // wrote on WhatsApp since
    row("i2", "W", "voice", guessed);
    row("i3", "W", "whatsapp", "{}");
    customer("A", kAnn);  // posted through the ingest API since
    row("i4", "A", "voice", guessed);
    row("i5", "A", "api", "{}");
    customer("L", "+14155550188");  // its call stated the direction later
    row("i6", "L", "voice", R"({"call":{"status":"completed","direction":"inbound"}})");
    storage::migrate(db);
  }
  storage::Db db(path, true);
  auto st = db.prepare("SELECT group_concat(customer_id) FROM guessed_customers");
  REQUIRE(st.step());
  CHECK(st.text(0) == "G");
}

}  // namespace call_order_test
