#pragma once
// Lowercase hexadecimal of bytes: digests in signatures, script hashes, message ids.
#include <string>
#include <string_view>

namespace sb {

inline std::string hex_lower(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0x0f]);
  }
  return out;
}

}  // namespace sb
