// Customer matching on the daemon's data path (storage/store.cpp): the stored usernames of X,
// Telegram and Instagram users, and the links between identity types (routing/identity_links.hpp)
// looked up from either side.
#include <doctest/doctest.h>

#include <string>

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
