#pragma once
#include "storage/sqlite.hpp"

namespace sb::storage {

// The schema version this binary writes.
int current_schema_version();

// Brings the database to current_schema_version() (tests: to `target`), one migration per
// transaction. An older file is upgraded; a file written by a newer binary is refused with a
// clear message (throws Error).
void migrate(Db& db, int target = current_schema_version());

// For a reader that may not migrate (a read-only connection, `customers show`): throws Error
// unless the database is at current_schema_version(). Says "PATH is not a switchboard database
// (no schema version)" for a file without one (another application's, or never migrated), and
// for a newer or an older version which it is, as migrate() does for a newer one.
void require_current_schema(Db& db);

}  // namespace sb::storage
