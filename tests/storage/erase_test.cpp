// storage::erase_customer: one transaction takes the customer and everything of theirs, and
// lists the erased interactions for the relay's Redis cleanup; nothing of another customer's
// goes with it.
#include <doctest/doctest.h>

#include <future>

#include "storage/erase.hpp"
#include "tests/storage/inbox.hpp"

using namespace sb;
using sb::test::Inbox;

namespace {

std::optional<storage::Erased> erase_on_writer(Inbox& inbox, const std::string& id) {
  std::promise<std::string> done;
  std::optional<storage::Erased> out;
  inbox.writer.submit(storage::Job{[&](storage::Db& db) { out = storage::erase_customer(db, id); },
                                   [&](const std::string& error) { done.set_value(error); }});
  REQUIRE(done.get_future().get() == "");
  return out;
}

}  // namespace

TEST_CASE(
    "erase: a customer's rows go in one transaction, another's stay, the ids wait for Redis") {
  Inbox inbox;
  const std::string ann = inbox.receive("telegram", Identity{"telegram", "1001", "Ann", "ann"});
  REQUIRE(inbox.receive("telegram", Identity{"telegram", "1001", "Ann", "ann"}) == ann);
  const std::string bob = inbox.receive("telegram", Identity{"telegram", "1002", "Bob", "bob"});
  const std::string first = inbox.count("SELECT id FROM interactions WHERE customer_id = '" + ann +
                                        "' ORDER BY seq LIMIT 1");
  const std::string bobs =
      inbox.count("SELECT id FROM interactions WHERE customer_id = '" + bob + "'");
  // What agents add: an event, an attachment, a reply with its send.
  inbox.db.exec("INSERT INTO events(interaction_id, at, actor, type) VALUES ('" + first +
                "', 1, 'alice', 'claim'), ('" + bobs + "', 1, 'alice', 'claim')");
  inbox.db.exec(
      "INSERT INTO attachments(interaction_id, idx, filename, content_type, data) "
      "VALUES ('" +
      first + "', 0, 'a.pdf', 'application/pdf', x'00')");
  inbox.db.exec(
      "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
      "customer_id, occurred_at, received_at, payload, state) VALUES ('R1', 'telegram', "
      "'telegram', 'R1', 'direct_message', 'outbound', '" +
      ann +
      "', 2, 2, '{}', "
      "'outbound')");
  inbox.db.exec(
      "INSERT INTO sends(interaction_id, parent_id, channel, account, next_attempt_at, "
      "created_at, updated_at) VALUES ('R1', '" +
      first +
      "', 'telegram', 'telegram', "
      "0, 0, 0)");
  REQUIRE(inbox.count("SELECT count(*) FROM outbox") == "3");  // no relay runs here

  auto e = erase_on_writer(inbox, ann);
  REQUIRE(e);
  CHECK(e->interactions == 3);
  CHECK(e->identities == 1);
  CHECK(e->conversations == 2);  // a direct message without a thread key: one each
  CHECK(e->events == 1);
  CHECK(e->attachments == 1);
  CHECK(e->sends == 1);
  CHECK(e->outbox == 2);
  CHECK(inbox.customer(ann) == "<no customer>");
  CHECK(inbox.identities(ann) == "");  // no row: group_concat is NULL
  CHECK(inbox.count("SELECT count(*) FROM interactions WHERE customer_id = '" + ann + "'") == "0");
  CHECK(inbox.count("SELECT count(*) FROM conversations WHERE customer_id = '" + ann + "'") == "0");
  CHECK(inbox.count("SELECT count(*) FROM conversation_keys k WHERE NOT EXISTS "
                    "(SELECT 1 FROM conversations c WHERE c.id = k.conversation_id)") == "0");
  CHECK(inbox.count("SELECT count(*) FROM erased_interactions") == "3");
  CHECK(inbox.count("SELECT count(*) FROM erased_interactions WHERE interaction_id = '" + first +
                    "'") == "1");
  // Bob's are untouched.
  CHECK(inbox.identities(bob) == "telegram:1002");
  CHECK(inbox.count("SELECT count(*) FROM events") == "1");
  CHECK(inbox.count("SELECT interaction_id FROM outbox") == bobs);

  // Unknown now; the same user again is a new customer.
  CHECK_FALSE(erase_on_writer(inbox, ann));
  const std::string again = inbox.receive("telegram", Identity{"telegram", "1001", "Ann", "ann"});
  CHECK(again != ann);
  CHECK(again != bob);
}
