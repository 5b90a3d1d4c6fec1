#pragma once
// Charset conversion to UTF-8 with the aliases real mail needs. Mail user agents label text
// with the narrow standard charset but write the vendor superset: Outlook's "gb2312" is GBK,
// "ks_c_5601-1987" is CP949, "iso-8859-1" is windows-1252 (WHATWG Encoding Standard maps these
// labels the same way), Shift_JIS is CP932 and Big5 is CP950. Decoding with the superset
// reads everything the narrow charset would and the vendor characters too.
#include <string>
#include <string_view>

#include "core/utf8.hpp"

namespace sb::email {

// The iconv name used for a MIME charset label ("gb2312" -> "GB18030"); empty for an empty
// label, us-ascii and unknown-8bit, which mean "not declared".
std::string iconv_charset(std::string_view label);

// Converts bytes in `charset` (a MIME label) to UTF-8. Undeclared or unknown charsets: UTF-8
// when the bytes are valid UTF-8, else windows-1252. Invalid sequences become U+FFFD; the
// result is always valid UTF-8. `replaced`, when given, is set when anything was replaced.
std::string to_utf8(std::string_view bytes, std::string_view charset, bool* replaced = nullptr);

using sb::is_valid_utf8;  // core/utf8.hpp, one check for every layer

// Replaces every invalid UTF-8 sequence with U+FFFD (the last line of defence).
std::string sanitize_utf8(std::string_view s);

// C0 controls (CR and LF among them) and DEL as spaces: header text of the customer's that we
// store or write into a header of ours (a Subject). An encoded word may decode to any byte
// ("=0D=0A" is CR LF), and a CR or LF in a header we send starts a header line or the body.
std::string controls_to_spaces(std::string_view s);

// Cuts at most `max_bytes` off a valid UTF-8 string without splitting a character.
std::string_view utf8_prefix(std::string_view s, std::size_t max_bytes);

}  // namespace sb::email
