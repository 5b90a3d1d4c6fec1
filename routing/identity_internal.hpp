#pragma once
// Internal to routing/identity*.cpp: byte-level text helpers and the phone entry points.
#include <string>
#include <string_view>

#include "routing/identity.hpp"

namespace sb::identity_detail {

inline bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}
inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
inline bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
inline char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// The code point of the well-formed UTF-8 sequence at the start of `s` and its length in
// bytes; {0, 0} for empty input or a malformed sequence (overlong forms included), which the
// callers leave to the checks that follow as they left every non-ASCII byte before.
struct CodePoint {
  char32_t cp = 0;
  std::size_t len = 0;
};
inline CodePoint decode_utf8(std::string_view s) {
  if (s.empty()) {
    return {};
  }
  const auto b0 = static_cast<unsigned char>(s[0]);
  if (b0 < 0x80) {
    return {b0, 1};
  }
  // 0xF5-0xFF and 0xC0-0xC1 never start a sequence.
  std::size_t len = b0 >= 0xF5 ? 0 : b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : b0 >= 0xC2 ? 2 : 0;
  if (len == 0 || s.size() < len) {
    return {};
  }
  char32_t cp = len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (std::size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b & 0xC0) != 0x80) {
      return {};
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
    return {};
  }
  return {cp, len};
}
// The code point of the UTF-8 sequence that ends `s` (as decode_utf8; {0, 0} when malformed).
inline CodePoint decode_utf8_back(std::string_view s) {
  for (std::size_t len = 1; len <= 4 && len <= s.size(); ++len) {
    const auto b = static_cast<unsigned char>(s[s.size() - len]);
    if ((b & 0xC0) != 0x80) {
      auto c = decode_utf8(s.substr(s.size() - len));
      return c.len == len ? c : CodePoint{};
    }
  }
  return {};
}

// What pasting adds around an address, number or handle and nobody can see: Unicode White_Space
// (NBSP from web forms and spreadsheets, the typographic spaces, NEL, the line and paragraph
// separators) and the zero-width characters, the byte order mark among them (a file or
// clipboard that starts with one).
inline bool is_invisible_padding(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         c == 0x180E || (c >= 0x2000 && c <= 0x200D) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x2060 || c == 0x3000 || c == 0xFEFF;
}

// Controls (C0, DEL, C1) and the format characters that change how text looks or reads without
// being seen: soft hyphen, zero-width space / non-joiner / joiner, the directional marks and
// embeddings (U+200E-200F, U+202A-202E, U+2066-2069), word joiner and invisible operators
// (U+2060-2064), BOM. An identity with one inside is a different string that prints the same.
inline bool is_control_or_format(char32_t c) {
  return c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0xAD || (c >= 0x200B && c <= 0x200F) ||
         (c >= 0x202A && c <= 0x202E) || (c >= 0x2060 && c <= 0x2064) ||
         (c >= 0x2066 && c <= 0x2069) || c == 0xFEFF;
}

// Drops invisible padding (is_invisible_padding) at both ends. ASCII white space was all it
// dropped once; "ann@example.com" followed by an NBSP then became another customer.
inline std::string_view trim(std::string_view s) {
  while (!s.empty()) {
    auto c = decode_utf8(s);
    if (c.len == 0 || !is_invisible_padding(c.cp)) {
      break;
    }
    s.remove_prefix(c.len);
  }
  while (!s.empty()) {
    auto c = decode_utf8_back(s);
    if (c.len == 0 || !is_invisible_padding(c.cp)) {
      break;
    }
    s.remove_suffix(c.len);
  }
  return s;
}

// ASCII-only lower-casing: non-ASCII UTF-8 bytes pass through untouched, so the result stays
// valid UTF-8 and the rule is the same on every locale.
inline std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = to_lower(c);
  }
  return out;
}

inline bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (to_lower(s[i]) != prefix[i]) {
      return false;
    }
  }
  return true;
}

inline bool all_digits(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!is_digit(c)) {
      return false;
    }
  }
  return true;
}

inline Canonical ok(std::string_view type, std::string value) {
  return Canonical{Canonical::Status::ok, std::string(type), std::move(value), {}, {}};
}
inline Canonical invalid(std::string_view type, std::string error) {
  return Canonical{Canonical::Status::invalid, std::string(type), {}, std::move(error), {}};
}

// phone / whatsapp, in identity_phone.cpp.
Canonical canonical_phone_identity(std::string_view type, std::string_view raw,
                                   std::string_view region);
Canonical canonical_whatsapp(std::string_view raw, std::string_view region);

}  // namespace sb::identity_detail
