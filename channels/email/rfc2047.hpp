#pragma once
// RFC 2047 encoded words, decoded by us rather than GMime because GMime converts each word
// on its own: a multibyte character split across two words (webmailers fold long Chinese and
// Japanese subjects at a byte count) comes out as "??". Here adjacent words of one charset
// are joined as bytes first and converted once (RFC 2047 section 5 forbids the split, real
// mail does it anyway). Charset labels go through charset.hpp's aliases.
#include <string>
#include <string_view>

namespace sb::email {

// An unstructured header value (Subject), unfolded -> UTF-8. Whitespace between adjacent
// encoded words is dropped (RFC 2047 6.2); 8-bit text outside encoded words is read as UTF-8
// when valid, else windows-1252. Malformed words are kept verbatim.
std::string decode_rfc2047(std::string_view value);

// For address headers: replaces every run of encoded words with its decoded UTF-8, quoted so
// the address grammar still holds (a quoted-string in a phrase, escaped text inside an
// existing quoted-string or comment). GMime's address parser then reads the UTF-8 directly.
std::string predecode_address_header(std::string_view value);

}  // namespace sb::email
