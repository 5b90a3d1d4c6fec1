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

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_space(s.back())) {
    s.remove_suffix(1);
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
  return Canonical{Canonical::Status::ok, std::string(type), std::move(value), {}};
}
inline Canonical invalid(std::string_view type, std::string error) {
  return Canonical{Canonical::Status::invalid, std::string(type), {}, std::move(error)};
}

// phone / whatsapp, in identity_phone.cpp.
Canonical canonical_phone_identity(std::string_view type, std::string_view raw,
                                   std::string_view region);
Canonical canonical_whatsapp(std::string_view raw);

}  // namespace sb::identity_detail
