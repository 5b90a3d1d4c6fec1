// Customer matching on the daemon's data path (storage/store.cpp): the stored usernames of X,
// Telegram and Instagram users.
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
