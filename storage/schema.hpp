#pragma once
#include "storage/sqlite.hpp"

namespace sb::storage {

// The schema version this binary writes.
int current_schema_version();

// Brings the database to current_schema_version() (tests: to `target`), one migration per
// transaction. An older file is upgraded; a file written by a newer binary is refused with a
// clear message (throws Error).
void migrate(Db& db, int target = current_schema_version());

}  // namespace sb::storage
