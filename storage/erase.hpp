#pragma once
// Erasing a customer (GDPR art. 17): the customer, its identities, its interactions (their
// events, attachments, sends and outbox rows: the outbound replies carry the customer too), its
// conversations and their threading keys, in the caller's transaction. Shared by
// DELETE /v1/customers/{id} (a writer job) and `switchboard customers erase` (a transaction of
// its own, beside a running daemon, as `customers import`).
//
// Redis is a projection of the database (DESIGN-NOTES invariant 3), and its cleanup one too: the
// erased interaction ids are written to `erased_interactions` in the same transaction, and the
// relay removes their entries from every queue stream and dead-letter stream, and their markers,
// then deletes the rows (relay/erase.cpp). Until then the ids (random ULIDs, nothing of the
// customer's) stay, so a Redis that is down, or a daemon that is not running, has the cleanup
// done when it is back.
//
// Dedupe keys are the interaction rows themselves (UNIQUE(channel, account, external_id)): they
// go with them, and nothing of an erased message is kept, not even a hash, which would still be
// data about the person (GDPR recital 26). A provider re-delivering an erased message, or an
// API client posting it again, stores it anew, for a new customer.
#include <cstdint>
#include <optional>
#include <string>

#include "storage/sqlite.hpp"

namespace sb::storage {

struct Erased {
  std::int64_t identities = 0, interactions = 0, conversations = 0, events = 0, sends = 0,
               attachments = 0, outbox = 0;
};

// Erases customer `id` (its id, not an external id or identity: an erasure names exactly whom).
// nullopt when no customer has that id. Throws Error. Inside a transaction of the caller's.
std::optional<Erased> erase_customer(Db& db, const std::string& id);

}  // namespace sb::storage
