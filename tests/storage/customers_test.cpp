// The customer import against customers that messages created before the CRM was loaded.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <future>

#include "routing/identity.hpp"
#include "routing/rules.hpp"
#include "storage/customers.hpp"
#include "storage/schema.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/storage/inbox.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using namespace sb::storage;
using Result = CustomerImporter::Result;
using sb::test::Inbox;

namespace {

// A customer as the ingest path creates one for an unknown sender: no external_id.
void message_customer(Db& db, const std::string& id, const std::string& type,
                      const std::string& value) {
  db.exec("INSERT INTO customers(id, name, created_at, updated_at) VALUES ('" + id +
          "', 'from a message', 1, 1)");
  db.exec("INSERT INTO identities(type, value, customer_id) VALUES ('" + type + "', '" + value +
          "', '" + id + "')");
}

std::string one(Db& db, const std::string& sql) {
  auto st = db.prepare(sql);
  return st.step() ? st.text(0) : "<no row>";
}

// A record as `customers import` makes it of a CSV line: canonical identities.
CustomerUpsert line(const std::string& external_id, const std::string& name,
                    const std::vector<std::pair<std::string, std::string>>& columns) {
  CustomerUpsert rec{external_id, name, "", {}, {}};
  for (const auto& [type, raw] : columns) {
    auto c = canonicalize(type, raw, "US");
    REQUIRE_MESSAGE(c.ok(), type, " ", raw, ": ", c.error);
    rec.identities.push_back(*c.identity());
  }
  return rec;
}

}  // namespace

TEST_CASE(
    "customers import: a customer a message created is named by the record sharing its identity") {
  test::TempDir dir;
  Db db(dir.file("customers.db"));
  migrate(db);
  message_customer(db, "auto-1", "email", "ann@example.com");
  message_customer(db, "auto-2", "phone", "+14155550111");
  message_customer(db, "auto-3", "email", "dan@example.com");
  message_customer(db, "auto-4", "phone", "+14155550144");

  CustomerImporter imp(db);
  imp.begin();
  std::string error;
  CustomerUpsert ann{"crm-1",
                     "Ann Lee",
                     "vip",
                     {"b2b"},
                     {{"email", "ann@example.com", "", ""}, {"phone", "+14155550100", "", ""}}};
  CHECK(imp.upsert(ann, error) == Result::updated);
  // Found by its second identity; an empty name keeps the one the message gave.
  CustomerUpsert bob{"crm-2",
                     "",
                     "",
                     {},
                     {{"email", "bob@example.com", "", ""}, {"phone", "+14155550111", "", ""}}};
  CHECK(imp.upsert(bob, error) == Result::updated);
  // An identity of a customer the CRM already named is still refused.
  CustomerUpsert cy{"crm-3",
                    "Cy",
                    "",
                    {},
                    {{"email", "cy@example.com", "", ""}, {"phone", "+14155550100", "", ""}}};
  CHECK(imp.upsert(cy, error) == Result::rejected);
  CHECK(error == "phone \"+14155550100\" already belongs to customer crm-1");
  // Two message customers in one record would take a merge: refused whole, neither named.
  CustomerUpsert dan{"crm-4",
                     "Dan",
                     "",
                     {},
                     {{"email", "dan@example.com", "", ""}, {"phone", "+14155550144", "", ""}}};
  CHECK(imp.upsert(dan, error) == Result::rejected);
  imp.commit();

  CHECK(one(db,
            "SELECT external_id || '|' || name || '|' || tier || '|' || tags FROM customers "
            "WHERE id = 'auto-1'") == "crm-1|Ann Lee|vip|[\"b2b\"]");
  CHECK(one(db,
            "SELECT group_concat(value, ' ') FROM (SELECT value FROM identities WHERE "
            "customer_id = 'auto-1' ORDER BY value)") == "+14155550100 ann@example.com");
  CHECK(one(db, "SELECT external_id || '|' || name FROM customers WHERE id = 'auto-2'") ==
        "crm-2|from a message");
  CHECK(one(db, "SELECT count(*) FROM identities WHERE customer_id = 'auto-2'") == "2");
  CHECK(one(db, "SELECT count(*) FROM customers WHERE external_id IN ('crm-3', 'crm-4')") == "0");
  CHECK(one(db, "SELECT coalesce(external_id, 'none') FROM customers WHERE id = 'auto-3'") ==
        "none");
  CHECK(one(db, "SELECT count(*) FROM customers") == "4");
}

TEST_CASE("customers import: fields a record does not give keep their stored values") {
  test::TempDir dir;
  Db db(dir.file("customers.db"));
  migrate(db);
  CustomerImporter imp(db);
  imp.begin();
  std::string error;
  CustomerUpsert ann{"crm-1", "Ann Lee", "vip", {"b2b"}, {{"email", "ann@example.com", "", ""}}};
  CHECK(imp.upsert(ann, error) == Result::inserted);
  // A file with only external_id and phone: nothing said about name, tier or tags.
  CustomerUpsert phone_only{"crm-1", "", "", {}, {{"phone", "+14155550100", "", ""}}};
  phone_only.has_name = phone_only.has_tier = phone_only.has_tags = false;
  CHECK(imp.upsert(phone_only, error) == Result::updated);
  CHECK(one(db, "SELECT name || '|' || tier || '|' || tags FROM customers") ==
        "Ann Lee|vip|[\"b2b\"]");
  // Given empty: cleared.
  CustomerUpsert cleared{"crm-1", "", "", {}, {}};
  cleared.has_name = false;
  CHECK(imp.upsert(cleared, error) == Result::updated);
  CHECK(one(db, "SELECT name || '|' || tier || '|' || tags FROM customers") == "Ann Lee||[]");
  imp.commit();
}

TEST_CASE("customers import: an X or Telegram user who wrote first is taken over by the username") {
  Inbox inbox;
  // Before the CRM is loaded, Ann writes on X and Bob on Telegram: each becomes a customer
  // known by the platform's user id, with the username beside it.
  const std::string ann = inbox.receive("x", Identity{"x", "2244994999", "Ann", "AnnLee"});
  const std::string bob = inbox.receive("telegram", Identity{"telegram", "42", "Bob", "Bob_Smith"});

  Db db(inbox.path);
  CustomerImporter imp(db);
  imp.begin();
  std::string error;
  auto c1 = line("c-1", "Ann Lee", {{"x", "@AnnLee"}});
  c1.tier = "vip";
  CHECK(imp.upsert(c1, error) == Result::updated);
  CHECK(imp.upsert(line("c-2", "Bob Smith", {{"telegram", "bob_smith"}}), error) ==
        Result::updated);
  imp.commit();

  // One customer each, named by the CRM, with both identities and its message.
  CHECK(inbox.customer(ann) == "c-1|Ann Lee|vip");
  CHECK(inbox.identities(ann) == "x:2244994999 x_handle:annlee");
  CHECK(inbox.customer(bob) == "c-2|Bob Smith|");
  CHECK(inbox.identities(bob) == "telegram:42 telegram_handle:bob_smith");
  CHECK(inbox.count("SELECT count(*) FROM customers") == "2");
  CHECK(inbox.count("SELECT count(*) FROM interactions WHERE customer_id = '" + ann + "'") == "1");
  // Their next messages reach the CRM's customers.
  CHECK(inbox.receive("x", Identity{"x", "2244994999", "Ann", "AnnLee"}) == ann);
  CHECK(inbox.receive("telegram", Identity{"telegram", "42", "Bob", "Bob_Smith"}) == bob);
}

TEST_CASE("customers import: a WhatsApp sender is taken over by the phone number, and back") {
  Inbox inbox;
  const std::string cy =
      inbox.receive("whatsapp", Identity{"whatsapp", "+14155550111", "Cy", "14155550111"});
  // A sender known by phone, and a file that gives the WhatsApp number (JSON Lines "handles").
  const std::string di = inbox.receive("api", Identity{"phone", "+14155550122", "", ""});

  Db db(inbox.path);
  CustomerImporter imp(db);
  imp.begin();
  std::string error;
  CHECK(imp.upsert(line("c-2", "Cy Young", {{"phone", "+1 415 555 0111"}}), error) ==
        Result::updated);
  CHECK(imp.upsert(line("c-3", "Di", {{"whatsapp", "14155550122"}}), error) == Result::updated);
  imp.commit();

  CHECK(inbox.customer(cy) == "c-2|Cy Young|");
  CHECK(inbox.identities(cy) == "phone:+14155550111 whatsapp:+14155550111");
  CHECK(inbox.customer(di) == "c-3|Di|");
  CHECK(inbox.identities(di) == "phone:+14155550122 whatsapp:+14155550122");
  CHECK(inbox.count("SELECT count(*) FROM customers") == "2");
  CHECK(inbox.receive("whatsapp", Identity{"whatsapp", "+14155550111", "Cy", "14155550111"}) == cy);
}

TEST_CASE("customers import: a username or number another customer wrote from is refused") {
  Inbox inbox;
  const std::string ann = inbox.receive("x", Identity{"x", "2244994999", "Ann", "AnnLee"});
  const std::string cy =
      inbox.receive("whatsapp", Identity{"whatsapp", "+14155550111", "Cy", "14155550111"});
  const std::string eve = inbox.receive("x", Identity{"x", "777", "Eve", "eve_x"});

  Db db(inbox.path);
  CustomerImporter imp(db);
  imp.begin();
  std::string error;
  // The CRM knows Ann's X account by its id: c-9 takes over her customer.
  CHECK(imp.upsert(line("c-9", "Ann Lee", {{"x", "2244994999"}}), error) == Result::updated);
  // Another record giving her username is someone else's claim on c-9's account.
  CHECK(imp.upsert(line("c-1", "Ann L.", {{"email", "ann@example.com"}, {"x", "@annlee"}}),
                   error) == Result::rejected);
  CHECK(error == "x_handle \"annlee\" already belongs to customer c-9 (as x 2244994999)");
  // Cy's number and Eve's username in one record: two customers, which would take a merge.
  CHECK(imp.upsert(line("c-5", "Cy", {{"phone", "+14155550111"}, {"x", "eve_x"}}), error) ==
        Result::rejected);
  CHECK(error == "x_handle \"eve_x\" already belongs to customer " + eve + " (as x 777)");
  // A customer the CRM already named does not take over one a message created.
  CHECK(imp.upsert(line("c-9", "Ann Lee", {{"phone", "+14155550111"}}), error) == Result::rejected);
  CHECK(error ==
        "phone \"+14155550111\" already belongs to customer " + cy + " (as whatsapp +14155550111)");
  imp.commit();

  CHECK(inbox.count("SELECT count(*) FROM customers WHERE external_id IN ('c-1', 'c-5')") == "0");
  CHECK(inbox.customer(ann) == "c-9|Ann Lee|");
  CHECK(inbox.identities(ann) == "x:2244994999");
  CHECK(inbox.customer(cy) == "-|Cy|");
  CHECK(inbox.identities(cy) == "whatsapp:+14155550111");
  CHECK(inbox.count("SELECT count(*) FROM customers") == "3");
}

// X recycles usernames: a username goes to the user who holds it now, never to whoever wrote
// under it before (storage/store.cpp keeps the stored handles current).
TEST_CASE("customers import: a username renamed away and taken over is the new holder's") {
  Inbox inbox;
  const std::string first = inbox.receive("x", Identity{"x", "1", "Ann", "ann"});
  CHECK(inbox.receive("x", Identity{"x", "1", "Ann", "ann2"}) == first);  // renamed
  const std::string second = inbox.receive("x", Identity{"x", "2", "Ann B", "ann"});
  REQUIRE(second != first);

  Db db(inbox.path);
  CustomerImporter imp(db);
  imp.begin();
  std::string error;
  CHECK(imp.upsert(line("c-1", "Ann Bell", {{"x", "@ann"}}), error) == Result::updated);
  CHECK(error == "");
  imp.commit();

  CHECK(inbox.customer(second) == "c-1|Ann Bell|");
  CHECK(inbox.identities(second) == "x:2 x_handle:ann");
  CHECK(inbox.customer(first) == "-|Ann|");
  CHECK(inbox.identities(first) == "x:1");
}

// The previous holder never wrote again after renaming: the message that shows the username
// for another user takes it off the previous one.
TEST_CASE("customers import: a username taken over before its previous holder wrote again") {
  Inbox inbox;
  const std::string first = inbox.receive("x", Identity{"x", "1", "Ann", "ann"});
  const std::string second = inbox.receive("x", Identity{"x", "2", "Ann B", "ann"});
  REQUIRE(second != first);
  CHECK(inbox.count("SELECT handle FROM identities WHERE type = 'x' AND value = '1'") == "");
  CHECK(inbox.count("SELECT handle FROM identities WHERE type = 'x' AND value = '2'") == "ann");

  Db db(inbox.path);
  CustomerImporter imp(db);
  imp.begin();
  std::string error;
  CHECK(imp.upsert(line("c-1", "Ann Bell", {{"x", "ann"}}), error) == Result::updated);
  imp.commit();
  CHECK(inbox.customer(second) == "c-1|Ann Bell|");
  CHECK(inbox.customer(first) == "-|Ann|");
}

// A database written before usernames moved to their new holder may hold one username for two
// users: nothing tells which holds it now, and the line is refused with the users named.
TEST_CASE("customers import: a username stored for users of two customers is refused") {
  Inbox inbox;
  const std::string first = inbox.receive("x", Identity{"x", "1", "Ann", "ann"});
  const std::string second = inbox.receive("x", Identity{"x", "2", "Ann B", "ann_b"});
  inbox.db.exec("UPDATE identities SET handle = 'Ann' WHERE type = 'x' AND value = '2'");

  Db db(inbox.path);
  CustomerImporter imp(db);
  imp.begin();
  std::string error;
  CHECK(imp.upsert(line("c-1", "Ann Bell", {{"x", "ann"}}), error) == Result::rejected);
  CHECK(error ==
        "x_handle \"ann\" is the last username seen for users of more than one "
        "customer (x 1 of " +
            first + ", x 2 of " + second + "): give the user id instead");
  // By the id, the record is taken.
  CHECK(imp.upsert(line("c-1", "Ann Bell", {{"x", "2"}}), error) == Result::updated);
  imp.commit();
  CHECK(inbox.customer(second) == "c-1|Ann Bell|");
  CHECK(inbox.customer(first) == "-|Ann|");
}

TEST_CASE("customers import: a full database fails the import, it does not reject the record") {
  // SQLITE_FULL is the disk's fault, not the line's. Taken as a rejection, every later line was
  // printed as bad with "database or disk is full", and the batch's earlier records, rolled
  // back with the transaction, had been counted as imported. max_page_count stands in for the
  // disk: SQLite answers it with the same error.
  test::TempDir dir;
  Db db(dir.file("customers.db"));
  migrate(db);
  CustomerImporter imp(db);
  db.exec("PRAGMA max_page_count = " +
          std::to_string(std::stoll(one(db, "PRAGMA page_count")) + 8));
  imp.begin();
  std::string error;
  bool threw = false;
  for (int i = 0; i < 5000 && !threw; ++i) {
    auto rec = line("c-" + std::to_string(i), std::string(300, 'n'),
                    {{"email", "u" + std::to_string(i) + "@example.com"}});
    try {
      auto r = imp.upsert(rec, error);
      REQUIRE_MESSAGE(r == Result::inserted, "record ", i, ": ", error);
    } catch (const Error& e) {
      threw = true;
      CHECK((e.code & 0xff) == SQLITE_FULL);
      CHECK(std::string(e.what()).find("database or disk is full") != std::string::npos);
    }
  }
  CHECK(threw);
}

TEST_CASE("customer timeline: a page ends before the row that passes max_bytes, one row at least") {
  test::TempDir dir;
  const std::string path = dir.file("t.db");
  { storage::Writer writer(path); }  // creates and migrates
  Db db(path);
  // Five of one customer, newest first I5..I1, their payloads 100 bytes each but I3's, 1000.
  db.exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
      "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
      "customer_id, occurred_at, received_at, payload) "
      "SELECT 'I' || i, 'api', 'web', 'e' || i, 'message', 'inbound', 'C1', i, i, "
      "printf('%-*s', CASE WHEN i = 3 THEN 1000 ELSE 100 END, 'I' || i) FROM n");
  auto ids = [](const TimelinePage& p) {
    std::vector<std::string> out;
    for (const auto& r : p.rows) {
      out.push_back(r.id);
    }
    return out;
  };
  // 250 bytes: two rows (200), not the third.
  auto p1 = customer_timeline(db, "C1", 50, "", 250);
  CHECK(ids(p1) == std::vector<std::string>{"I5", "I4"});
  CHECK(p1.cut);
  CHECK(p1.rows[0].payload.size() == 100);
  // I3 alone is past the budget: it still comes, alone, so that paging goes on.
  auto p2 = customer_timeline(db, "C1", 50, "I4", 250);
  CHECK(ids(p2) == std::vector<std::string>{"I3"});
  CHECK(p2.cut);
  auto p3 = customer_timeline(db, "C1", 50, "I3", 250);
  CHECK(ids(p3) == std::vector<std::string>{"I2", "I1"});
  CHECK(!p3.cut);  // the end, not the budget
  // Without a budget the limit alone ends the page.
  auto whole = customer_timeline(db, "C1", 4, "");
  CHECK(ids(whole) == std::vector<std::string>{"I5", "I4", "I3", "I2"});
  CHECK(!whole.cut);
}
