#pragma once
// Identities stored before canonicalisation trimmed invisible padding off both ends (routing/
// identity.hpp trim_invisible_padding): "ann@example.com" followed by a web form's NBSP was
// stored as it came, and the same address canonicalised since never matched it (a second
// customer; `customers show ann@example.com` found neither). The schema upgrade 20 -> 21
// (storage/schema.cpp) rewrites them with this step, inside the upgrade's transaction.
#include "storage/sqlite.hpp"

namespace sb::storage {

// Each stored identity whose value trim_invisible_padding changes, by who holds its trimmed form
// under the same type:
//  - nobody: the value is rewritten in place (customer and handle kept);
//  - the same customer: the padded row is a duplicate, and goes;
//  - another customer: left as it is, and one warning names the type, the value and both
//    customers. Two customers become one only by an operator's decision, never by an upgrade;
//  - the trimmed form is empty (padding only): left as it is, with a warning.
// Two padded rows of one trimmed form: the first in (type, value) order is taken as above, the
// second then meets it. Idempotent: run again, it finds only the rows it left, and leaves them.
void trim_padded_identities(Db& db);

}  // namespace sb::storage
