#pragma once
// Customer records outside the interaction path: bulk upsert for `customers import`, and the
// read side for `customers show` and the customer API.
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "core/interaction.hpp"
#include "storage/sqlite.hpp"

namespace sb::storage {

struct CustomerUpsert {
  std::string external_id, name, tier;
  std::vector<std::string> tags;
  std::vector<Identity> identities;
  // Which of name, tier and tags the record gives. One it does not give (its CSV has no such
  // column, its JSON Lines object no such key) keeps the stored value, and a new customer gets
  // "", "" or []: a re-import of a few columns must not blank the others. A given one
  // replaces the stored value, even when empty.
  bool has_name = true, has_tier = true, has_tags = true;
  // Beside each identity, what the file's value held that the identity leaves out (a phone
  // extension), for the message that names it; "" or missing: nothing.
  std::vector<std::string> notes{};
};

// Upserts by external_id, each record in its own SAVEPOINT inside a caller-driven transaction.
// A new external_id whose identity belongs to a customer a message created (no external_id)
// names that customer (updated); a record whose identity belongs to another customer is
// rejected whole. An identity belongs to the customer that has it, or, when none has it, to
// the customer of a linked identity (routing/identity_links.hpp: x_handle "annlee" and the X
// user who wrote as "AnnLee", phone and WhatsApp). A username stored for users of several
// customers (a database from before the daemon moved usernames to their new holder) is refused
// as ambiguous: the file should give the user id.
// The users of platform ?1 (x, telegram or instagram) whose stored handle is username ?2 (a
// username_key, routing/identity_links.hpp), one row each: customer_id, whether the CRM named
// the customer (it has an external_id), how an error names it (external_id, else id), type,
// value. The key and the condition on the type are those of the identities_by_username index
// (storage/schema.cpp), which is named because the planner would rather scan the platform's rows
// by primary key. Shared by the import and the daemon's matching (storage/store.cpp).
extern const char* const kUsernameHoldersSql;

// Takes username ?2 off every user of platform ?1 other than user ?3 (their stored handle
// becomes ''), through the same index: the daemon runs it when a message shows that username
// for user ?3, whose it now is (storage/store.cpp).
extern const char* const kReleaseUsernameSql;

class CustomerImporter {
 public:
  enum class Result { inserted, updated, rejected };
  explicit CustomerImporter(Db& db);
  void begin();
  void commit();
  Result upsert(const CustomerUpsert& rec, std::string& error);

 private:
  Db& db_;
  Stmt find_ext_, insert_, update_, adopt_, find_owner_, find_username_owners_, insert_identity_;
};

struct CustomerView {
  std::string id, external_id, name, tier, tags_json;
  std::int64_t created_at = 0;
  std::vector<Identity> identities;
};

// Finds a customer by id, external id, or any identity (already canonical).
std::optional<CustomerView> load_customer(Db& db, const std::string& id);
std::optional<std::string> find_customer_id(Db& db, const std::string& type,
                                            const std::string& value);
std::optional<std::string> find_customer_by_external_id(Db& db, const std::string& external_id);
// The users of platform `type` (x, telegram or instagram) whose stored handle is `username` (a
// username_key), through kUsernameHoldersSql: the customer a message created has identity
// x 12345 with handle "BobLee", not x_handle "boblee". One row per user: customer id and
// the identity (type and value). Usually one; several for a database from before the
// daemon moved usernames to their new holder. The identity's handle is left empty.
struct UsernameHolder {
  std::string customer_id;
  Identity identity;
};
std::vector<UsernameHolder> find_username_holders(Db& db, const std::string& type,
                                                  const std::string& username);
// The customer's interactions, newest first by when each happened: occurred_at, or received_at
// when that is earlier (a source's clock running ahead); of one time, by id. Payload JSON
// texts. `before`: "" for the newest; else the id of the last interaction of the page before,
// and the page continues after it. An id that is no interaction of this customer's (none, or
// another customer's) gives, as it did when the order was by id, the customer's interactions of
// smaller ids, in this order.
// `max_bytes`: the page ends before the row that would take its payloads past it (the first
// row always comes, whatever its size); `cut` says it ended there with more to come.
struct TimelineRow {
  std::string id, payload;
};
struct TimelinePage {
  std::vector<TimelineRow> rows;
  bool cut = false;
};
TimelinePage customer_timeline(Db& db, const std::string& customer_id, int limit,
                               const std::string& before,
                               std::size_t max_bytes = std::numeric_limits<std::size_t>::max());

// The timeline's statements (storage/customers.cpp), for the tests of their query plans.
// Each selects id, payload. kTimelineSql: customer ?1, limit ?2. kTimelineAfterSql: customer ?1,
// after the interaction of time ?2 (min(occurred_at, received_at)) and id ?3, limit ?4.
// kTimelineBelowIdSql: customer ?1, ids below ?2, limit ?3.
extern const char* const kTimelineSql;
extern const char* const kTimelineAfterSql;
extern const char* const kTimelineBelowIdSql;

}  // namespace sb::storage
