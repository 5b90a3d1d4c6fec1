#pragma once
// UTF-8 (RFC 3629) checks and encoding, shared by every place that takes text from outside:
// mail parts, CSV cells, HTML character references, text printed on a terminal.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sb {

// The length of the well-formed UTF-8 sequence at the start of `s` (no overlong forms, no
// surrogates, nothing above U+10FFFF), or 0 when `s` does not start with one.
std::size_t utf8_sequence_length(std::string_view s);

// Offset of the first byte that starts no well-formed sequence, or s.size() when there is none.
std::size_t first_invalid_utf8(std::string_view s);

bool is_valid_utf8(std::string_view s);

// Appends code point `cp` as UTF-8; NUL, surrogates and values past U+10FFFF become U+FFFD.
void append_utf8(std::string& out, std::uint32_t cp);

}  // namespace sb
