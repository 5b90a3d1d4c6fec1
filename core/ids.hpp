#pragma once
// Sortable unique ids: ULID (https://github.com/ulid/spec), 26 Crockford base32 characters,
// 48-bit millisecond time then 80 random bits (from the kernel's CSPRNG). Monotonic within one
// process and millisecond (the random part grows by a random step), so ids sort in creation
// order, which keeps SQLite B-tree inserts at the right edge.
#include <cstdint>
#include <string>

namespace sb {

std::string new_ulid();
std::string new_ulid(std::int64_t unix_ms);        // for tests
std::int64_t ulid_time_ms(std::string_view ulid);  // -1 when not a ULID
bool is_ulid(std::string_view s);

}  // namespace sb
