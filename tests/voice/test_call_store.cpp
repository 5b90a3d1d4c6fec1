// The call fold against a real Writer + Store on a temporary SQLite database, without a server:
// what the interactions and outbox tables hold after call events and the 4-hour sweep.
#include <doctest/doctest.h>

#include <chrono>
#include <future>
#include <thread>

#include "call_store.hpp"
#include "routing/rules.hpp"
#include "storage/customers.hpp"
#include "storage/sqlite.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using sb::voice::test::CallStore;

TEST_CASE("call store: the 4-hour sweep closes a call whose only event carried no status") {
  CallStore s;
  s.start();
  // A recording callback delivered before (or instead of) any status callback.
  REQUIRE(s.event("CA-rec", "", 0, "", "https://api.twilio.com/rec/RE1").error.empty());
  REQUIRE(s.event("CA-ring", "ringing", 1).error.empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));  // both older than "now - 0"
  CHECK(s.sweep(0) == 2);
  CHECK(s.text("SELECT count(*) FROM outbox") == "2");
  CHECK(s.text("SELECT state FROM interactions WHERE external_id = 'CA-rec'") == "queued");
  CHECK(s.text("SELECT json_extract(payload, '$.call.status') FROM interactions "
               "WHERE external_id = 'CA-ring'") == "unknown");
}

// Named per file: the test programs are unity builds (helpers such as kAnn or config() would
namespace call_store_test {

namespace {

// Ann, a customer from the CRM: tier "vip", tag "gold", phone +14155550123.
void import_ann(CallStore& s) {
  storage::Db db(s.path);
  storage::CustomerImporter imp(db);
  imp.begin();
  std::string error;
  storage::CustomerUpsert ann{
      "crm-1", "Ann", "vip", {"gold", "de"}, {{"phone", "+14155550123", "", ""}}};
  REQUIRE(imp.upsert(ann, error) == storage::CustomerImporter::Result::inserted);
  imp.commit();
}

config::Routing gold_rule() {
  config::Rule gold;
  gold.name = "gold customers";
  gold.queue = "gold";
  gold.when.customer_tag = "gold";
  config::Routing routing;
  routing.rules.push_back(gold);
  return routing;
}

}  // namespace

TEST_CASE("call store: a call from a tagged customer carries the customer's name and tier") {
  CallStore s(gold_rule());
  import_ann(s);
  s.start();
  auto out = s.event("CA-1", "completed", 2, "+14155550123");
  REQUIRE(out.error.empty());
  CHECK(s.text("SELECT json_extract(payload, '$.customer.name') FROM interactions") == "Ann");
  CHECK(s.text("SELECT json_extract(payload, '$.customer.tier') FROM interactions") == "vip");
  CHECK(s.text("SELECT queue FROM outbox") == "gold");
}

// Rules see the customer's tags whether a call ends with its first event or a later one.
TEST_CASE("call store: a customer_tag rule routes a call that ends with a later event") {
  CallStore s(gold_rule());
  import_ann(s);
  s.start();
  REQUIRE(s.event("CA-1", "ringing", 0, "+14155550123").error.empty());
  REQUIRE(s.event("CA-1", "completed", 2, "+14155550123").error.empty());
  CHECK(s.text("SELECT queue FROM outbox") == "gold");
  CHECK(s.text("SELECT queue FROM interactions WHERE external_id = 'CA-1'") == "gold");
}

// The caller is known from the first event that names one, not only from the first event.
TEST_CASE("call store: a caller named only by a later event is matched") {
  CallStore s;
  s.start();
  REQUIRE(s.event("CA-9", "", 0, "", "https://api.twilio.com/rec/RE9").error.empty());
  REQUIRE(s.event("CA-9", "completed", 3, "+14155550100").error.empty());
  CHECK(s.event("CA-9", "completed", 3, "+14155550100").duplicate);  // matched once
  CHECK(s.text("SELECT json_extract(payload, '$.from.value') FROM interactions") == "+14155550100");
  CHECK(s.text("SELECT count(*) FROM customers") == "1");
  CHECK(s.text("SELECT coalesce(customer_id, 'none') FROM interactions") != "none");
}

}  // namespace call_store_test

namespace call_store_test {

// A customer known only by WhatsApp calls from the same number: the call's phone identity is
// linked to the WhatsApp one (routing/identity_links.hpp), as the customer import links them.
TEST_CASE("call store: a call from the number of a customer known only by WhatsApp is theirs") {
  CallStore s;
  s.start();
  Inbound wa;
  wa.channel = "whatsapp";
  wa.account = "meta";
  wa.kind = "direct_message";
  wa.external_id = "wamid.1";
  wa.from = Identity{"whatsapp", "+14155550111", "Cy", "14155550111"};
  wa.text = "hello";
  std::promise<std::vector<IngestOutcome>> p;
  s.store->submit({wa}, std::nullopt, [&](std::vector<IngestOutcome> out) { p.set_value(out); });
  REQUIRE(p.get_future().get().at(0).error.empty());
  const std::string cy = s.text("SELECT customer_id FROM interactions");

  REQUIRE(s.event("CA-1", "completed", 2, "+14155550111").error.empty());
  CHECK(s.text("SELECT customer_id FROM interactions WHERE external_id = 'CA-1'") == cy);
  CHECK(s.text("SELECT json_extract(payload, '$.customer.is_new') FROM interactions "
               "WHERE external_id = 'CA-1'") == "0");
  CHECK(s.text("SELECT count(*) FROM customers") == "1");
  CHECK(s.text("SELECT group_concat(type, ' ') FROM (SELECT type FROM identities "
               "WHERE customer_id = '" +
               cy + "' ORDER BY type)") == "phone whatsapp");
}

}  // namespace call_store_test
