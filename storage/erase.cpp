#include "storage/erase.hpp"

#include <string_view>

namespace sb::storage {

std::optional<Erased> erase_customer(Db& db, const std::string& id) {
  // Statements over the customer (?1), or over the erased interactions' ids (no parameter).
  auto run = [&](const char* sql) {
    auto st = db.prepare(sql);
    if (std::string_view(sql).find("?1") != std::string_view::npos) {
      st.bind(1, id);
    }
    st.run();
    return db.changes();
  };
  {
    auto st = db.prepare("SELECT 1 FROM customers WHERE id = ?1");
    st.bind(1, id);
    if (!st.step()) {
      return std::nullopt;
    }
  }
  Erased e;
  // The customer's interactions (interactions_by_customer), its replies included: an outbound
  // interaction carries the customer of the one it answers (agents/records.cpp). The table may
  // hold ids of an earlier erasure whose Redis cleanup is still to come: their rows are gone, so
  // the deletes below find nothing more for them.
  run("INSERT OR IGNORE INTO erased_interactions(interaction_id) "
      "SELECT id FROM interactions WHERE customer_id = ?1");
  e.events =
      run("DELETE FROM events WHERE interaction_id IN "
          "(SELECT interaction_id FROM erased_interactions)");
  e.attachments =
      run("DELETE FROM attachments WHERE interaction_id IN "
          "(SELECT interaction_id FROM erased_interactions)");
  e.sends =
      run("DELETE FROM sends WHERE interaction_id IN "
          "(SELECT interaction_id FROM erased_interactions)");
  // Rows not yet in Redis: the relay must not project them (it reads the outbox joined to the
  // interactions, so it would skip them anyway; this takes them out of its backlog count).
  e.outbox =
      run("DELETE FROM outbox WHERE interaction_id IN "
          "(SELECT interaction_id FROM erased_interactions)");
  // The threading keys hold the customer's message ids and thread references, and a key left
  // pointing at no conversation would make every later message under it a conversation of its
  // own. conversation_keys has no index on conversation_id (ingest would pay for one on every
  // key): a scan, for a rare operation.
  run("DELETE FROM conversation_keys WHERE conversation_id IN "
      "(SELECT id FROM conversations WHERE customer_id = ?1)");
  e.conversations = run("DELETE FROM conversations WHERE customer_id = ?1");
  e.interactions =
      run("DELETE FROM interactions WHERE id IN "
          "(SELECT interaction_id FROM erased_interactions)");
  e.identities = run("DELETE FROM identities WHERE customer_id = ?1");
  run("DELETE FROM guessed_customers WHERE customer_id = ?1");
  run("DELETE FROM customers WHERE id = ?1");
  return e;
}

}  // namespace sb::storage
