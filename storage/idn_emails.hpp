#pragma once
// E-mail identities stored before an internationalised domain took its one canonical form, the
// ASCII one (routing/identity.cpp): a customer file's "ann@bücher.de" was stored as given, and
// the same address written "ann@xn--bcher-kva.de" (or decoded by GMime from a mail) never
// matched it. The schema upgrade (storage/schema.cpp) rewrites them with this step, inside the
// upgrade's transaction.
#include "storage/sqlite.hpp"

namespace sb::storage {

// Each stored e-mail identity with a non-ASCII byte after its '@' that canonicalize now writes
// otherwise, by who holds the new form, as trim_padded_identities does:
//  - nobody: rewritten in place (customer and handle kept);
//  - the same customer: the old row is a duplicate, and goes;
//  - another customer: left as it is, with one warning naming both customers (two customers
//    become one only by an operator's decision);
//  - a domain IDNA has no form for (an emoji): left as it is, with a warning.
// Idempotent: run again, it finds only the rows it left, and leaves them.
void ascii_email_domains(Db& db);

}  // namespace sb::storage
