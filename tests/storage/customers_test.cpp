// The customer import against customers that messages created before the CRM was loaded.
#include <doctest/doctest.h>

#include "storage/customers.hpp"
#include "storage/schema.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using namespace sb::storage;
using Result = CustomerImporter::Result;

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
