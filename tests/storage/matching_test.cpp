// Customer matching on the daemon's data path (storage/store.cpp): the stored usernames of X,
// Telegram and Instagram users, and the links between identity types (routing/identity_links.hpp)
// looked up from either side.
#include <doctest/doctest.h>

#include <string>
#include <tuple>

#include "routing/identity.hpp"
#include "storage/customers.hpp"
#include "storage/schema.hpp"
#include "tests/storage/inbox.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using namespace sb::storage;
using sb::test::Inbox;

namespace matching_test {

std::string stored_handle(Inbox& inbox, const std::string& type, const std::string& value) {
  return inbox.count("SELECT handle FROM identities WHERE type = '" + type + "' AND value = '" +
                     value + "'");
}

}  // namespace matching_test

TEST_CASE("matching: a known X user who writes under another username has it stored") {
  using matching_test::stored_handle;
  Inbox inbox;
  const std::string ann = inbox.receive("x", Identity{"x", "2244994999", "Ann", "AnnLee"});
  CHECK(stored_handle(inbox, "x", "2244994999") == "AnnLee");
  // The same username in other letter case, or with '@': not another one, nothing written.
  CHECK(inbox.receive("x", Identity{"x", "2244994999", "Ann", "@annlee"}) == ann);
  CHECK(stored_handle(inbox, "x", "2244994999") == "AnnLee");
  CHECK(inbox.receive("x", Identity{"x", "2244994999", "Ann", "AnnLee_2"}) == ann);
  CHECK(stored_handle(inbox, "x", "2244994999") == "AnnLee_2");
  // No username (the ingest API given the id, whose from.handle is the id), or none at all:
  // the stored one stays.
  CHECK(inbox.receive("api", Identity{"x", "2244994999", "", "2244994999"}) == ann);
  CHECK(inbox.receive("x", Identity{"x", "2244994999", "Ann", ""}) == ann);
  CHECK(stored_handle(inbox, "x", "2244994999") == "AnnLee_2");
  CHECK(inbox.identities(ann) == "x:2244994999");
  CHECK(inbox.count("SELECT count(*) FROM customers") == "1");
}

TEST_CASE("matching: an ingest API sender given by username is the user who wrote under it") {
  Inbox inbox;
  const std::string ann = inbox.receive("x", Identity{"x", "2244994999", "Ann", "AnnLee"});
  const std::string bob = inbox.receive("telegram", Identity{"telegram", "42", "Bob", "Bob_Smith"});
  // POST /v1/interactions with from.platform "x", from.handle "@AnnLee" (channels/api).
  CHECK(inbox.receive("api", Identity{"x_handle", "annlee", "Ann", "@AnnLee"}) == ann);
  CHECK(inbox.receive("api", Identity{"telegram_handle", "bob_smith", "", "bob_smith"}) == bob);
  CHECK(inbox.count("SELECT count(*) FROM customers") == "2");
  // Who holds the username now, looked up each time: not stored as an x_handle of Ann's.
  CHECK(inbox.identities(ann) == "x:2244994999");
  CHECK(inbox.identities(bob) == "telegram:42");
  // Once Ann renamed, "annlee" names nobody known.
  CHECK(inbox.receive("x", Identity{"x", "2244994999", "Ann", "AnnLee2"}) == ann);
  const std::string other = inbox.receive("api", Identity{"x_handle", "annlee", "", "annlee"});
  CHECK(other != ann);
  CHECK(inbox.identities(other) == "x_handle:annlee");
}

TEST_CASE("matching: an ingest API sender given by phone is the WhatsApp sender of the number") {
  Inbox inbox;
  const std::string cy =
      inbox.receive("whatsapp", Identity{"whatsapp", "+14155550111", "Cy", "14155550111"});
  CHECK(inbox.receive("api", Identity{"phone", "+14155550111", "", ""}) == cy);
  CHECK(inbox.identities(cy) == "phone:+14155550111 whatsapp:+14155550111");
  CHECK(inbox.count("SELECT count(*) FROM customers") == "1");
}

// A database written before usernames moved to their new holder: two users carry one.
TEST_CASE("matching: a username stored for users of two customers names neither") {
  Inbox inbox;
  const std::string first = inbox.receive("x", Identity{"x", "1", "Ann", "ann"});
  const std::string second = inbox.receive("x", Identity{"x", "2", "Ann B", "ann_b"});
  inbox.db.exec("UPDATE identities SET handle = 'ann' WHERE type = 'x' AND value = '2'");
  const std::string api = inbox.receive("api", Identity{"x_handle", "ann", "", "ann"});
  CHECK(api != first);
  CHECK(api != second);
  CHECK(inbox.count("SELECT count(*) FROM customers") == "3");
}

// The lookups by username go through the identities_by_username index of schema 9, never a scan
// of the platform's identities.
TEST_CASE("matching: the username lookup and release use the username index") {
  ::sb::test::TempDir dir;
  Db db(dir.file("plan.db"));
  migrate(db);
  for (const char* sql : {kUsernameHoldersSql, kReleaseUsernameSql}) {
    auto st = db.prepare(std::string("EXPLAIN QUERY PLAN ") + sql);
    std::string plan;
    while (st.step()) {
      plan += st.text(3) + "\n";
    }
    CAPTURE(plan);
    CHECK(plan.find("USING INDEX identities_by_username") != std::string::npos);
    CHECK(plan.find("SCAN") == std::string::npos);
  }
}

// The ingest API given several identities (from.email, from.phone, from.platform + handle):
// `from` is the first, matched first; the others are matched after it, in order, and kept.
namespace matching_test {

// A customer from the CRM holding `ids`; returns its id.
std::string import_customer(Inbox& inbox, const std::string& external_id,
                            std::vector<Identity> ids) {
  CustomerImporter imp(inbox.db);
  imp.begin();
  std::string error;
  CustomerUpsert rec{external_id, external_id, "", {}, std::move(ids)};
  REQUIRE(imp.upsert(rec, error) == CustomerImporter::Result::inserted);
  imp.commit();
  return inbox.count("SELECT id FROM customers WHERE external_id = '" + external_id + "'");
}

}  // namespace matching_test

TEST_CASE("matching: several identities name the customer any of them names, who gains the rest") {
  Inbox inbox;
  const std::string cy =
      matching_test::import_customer(inbox, "crm-cy", {{"phone", "+14155550111", "", ""}});
  CHECK(inbox.receive("api", Identity{"email", "cy@example.com", "Cy", ""},
                      {Identity{"phone", "+14155550111", "Cy", ""}}) == cy);
  CHECK(inbox.identities(cy) == "email:cy@example.com phone:+14155550111");
  CHECK(inbox.count("SELECT count(*) FROM customers") == "1");
  // The email alone now names the customer.
  CHECK(inbox.receive("email", Identity{"email", "cy@example.com", "Cy", ""}) == cy);
}

TEST_CASE("matching: several unknown identities make one new customer holding them all") {
  Inbox inbox;
  const std::string dee = inbox.receive(
      "api", Identity{"email", "dee@example.com", "Dee", ""},
      {Identity{"phone", "+14155550122", "Dee", ""}, Identity{"x_handle", "deedee", "Dee", "Dee"}});
  CHECK(inbox.identities(dee) == "email:dee@example.com phone:+14155550122 x_handle:deedee");
  CHECK(inbox.count("SELECT count(*) FROM customers") == "1");
  CHECK(inbox.receive("voice", Identity{"phone", "+14155550122", "", ""}) == dee);
}

TEST_CASE("matching: an identity another customer holds stays with it, the first match wins") {
  Inbox inbox;
  const std::string eve = inbox.receive("email", Identity{"email", "eve@example.com", "Eve", ""});
  const std::string pat =
      matching_test::import_customer(inbox, "crm-pat", {{"phone", "+14155550133", "", ""}});
  const std::string fay =
      matching_test::import_customer(inbox, "crm-fay", {{"x_handle", "fay", "", ""}});
  // `from` (the email) decides; the phone and the handle stay with their customers.
  CHECK(inbox.receive("api", Identity{"email", "eve@example.com", "Eve", ""},
                      {Identity{"phone", "+14155550133", "", ""},
                       Identity{"x_handle", "fay", "", "fay"}}) == eve);
  CHECK(inbox.identities(eve) == "email:eve@example.com");
  CHECK(inbox.identities(pat) == "phone:+14155550133");
  CHECK(inbox.identities(fay) == "x_handle:fay");
  // `from` unknown: the first other identity that names a customer wins; the unknown email
  // goes to it, the handle of the next stays where it is.
  CHECK(inbox.receive("api", Identity{"email", "pat@example.com", "", ""},
                      {Identity{"phone", "+14155550133", "", ""},
                       Identity{"x_handle", "fay", "", "fay"}}) == pat);
  CHECK(inbox.identities(pat) == "email:pat@example.com phone:+14155550133");
  CHECK(inbox.identities(fay) == "x_handle:fay");
  CHECK(inbox.count("SELECT count(*) FROM customers") == "3");
}

TEST_CASE("matching: the identity links apply to each of several identities") {
  Inbox inbox;
  const std::string cy =
      inbox.receive("whatsapp", Identity{"whatsapp", "+14155550144", "Cy", "14155550144"});
  // The phone is nobody's, but the WhatsApp sender of the number is Cy: Cy, who gains both.
  CHECK(inbox.receive("api", Identity{"email", "cy@example.com", "", ""},
                      {Identity{"phone", "+14155550144", "", ""}}) == cy);
  CHECK(inbox.identities(cy) == "email:cy@example.com phone:+14155550144 whatsapp:+14155550144");
  // A phone whose WhatsApp sender is another customer is that customer's: left alone.
  const std::string gil =
      inbox.receive("whatsapp", Identity{"whatsapp", "+14155550155", "Gil", "14155550155"});
  CHECK(inbox.receive("api", Identity{"email", "cy@example.com", "", ""},
                      {Identity{"phone", "+14155550155", "", ""}}) == cy);
  CHECK(inbox.identities(gil) == "whatsapp:+14155550155");
  CHECK(inbox.identities(cy) == "email:cy@example.com phone:+14155550144 whatsapp:+14155550144");
}

TEST_CASE("matching: a username match picks the customer but lends it no other identity") {
  Inbox inbox;
  const std::string ann = inbox.receive("x", Identity{"x", "2244994999", "Ann", "AnnLee"});
  // A form that names Ann's X username next to an unknown e-mail: Ann is who the username
  // names now, but nothing says the e-mail is hers.
  CHECK(inbox.receive("api", Identity{"email", "someone@example.com", "", ""},
                      {Identity{"x_handle", "annlee", "", "annlee"}}) == ann);
  CHECK(inbox.identities(ann) == "x:2244994999");
  // So the e-mail alone names nobody yet: a new customer.
  CHECK(inbox.receive("email", Identity{"email", "someone@example.com", "", ""}) != ann);
}

// A customer file names c-1 by username; its user writes under it (linked, the user id stored
// with c-1), then renames, and a stranger takes the name: the file's username row must not
// pull the stranger into c-1. Before the fix the row linked any unknown id that wrote under it.
TEST_CASE(
    "matching: an imported username does not pull in a stranger who took it after its user "
    "renamed") {
  Inbox inbox;
  {
    Db db(inbox.path);
    CustomerImporter imp(db);
    imp.begin();
    std::string error;
    for (const auto& [ext, type, raw] :
         {std::tuple{"c-1", "x", "@annlee"}, std::tuple{"c-2", "telegram", "bob_smith"}}) {
      auto c = canonicalize(type, raw, "US");
      REQUIRE(c.ok());
      CustomerUpsert rec{ext, "", "", {}, {*c.identity()}};
      REQUIRE(imp.upsert(rec, error) == CustomerImporter::Result::inserted);
    }
    imp.commit();
  }
  const std::string ann = inbox.receive("x", Identity{"x", "123", "Ann", "annlee"});
  CHECK(inbox.customer(ann) == "c-1||");
  CHECK(inbox.identities(ann) == "x:123 x_handle:annlee");
  CHECK(inbox.receive("x", Identity{"x", "123", "Ann", "ann2"}) == ann);
  const std::string stranger = inbox.receive("x", Identity{"x", "999", "Someone", "annlee"});
  CHECK(stranger != ann);
  CHECK(inbox.identities(stranger) == "x:999");
  CHECK(inbox.identities(ann) == "x:123 x_handle:annlee");
  CHECK(inbox.receive("x", Identity{"x", "123", "Ann", "ann2"}) == ann);

  const std::string bob = inbox.receive("telegram", Identity{"telegram", "42", "Bob", "Bob_Smith"});
  CHECK(inbox.customer(bob) == "c-2||");
  CHECK(inbox.receive("telegram", Identity{"telegram", "42", "Bob", "bob_s"}) == bob);
  const std::string other =
      inbox.receive("telegram", Identity{"telegram", "77", "Other", "bob_smith"});
  CHECK(other != bob);
  CHECK(inbox.identities(bob) == "telegram:42 telegram_handle:bob_smith");
  CHECK(inbox.count("SELECT count(*) FROM customers") == "4");
}
