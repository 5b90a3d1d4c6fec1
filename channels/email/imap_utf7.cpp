#include "channels/email/imap_utf7.hpp"

#include <cstdint>
#include <vector>

#include "channels/email/charset.hpp"

namespace sb::email::imap {
namespace {

std::vector<std::uint32_t> code_points(std::string_view s) {
  std::vector<std::uint32_t> out;
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < n; ++k) {
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    }
    out.push_back(cp);
    i += static_cast<std::size_t>(n);
  }
  return out;
}

void flush(std::vector<std::uint16_t>& units, std::string& out) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
  if (units.empty()) {
    return;
  }
  out += '&';
  std::uint32_t bits = 0;
  int nbits = 0;
  for (std::uint16_t u : units) {
    for (int shift = 8; shift >= 0; shift -= 8) {
      bits = (bits << 8) | ((u >> shift) & 0xFF);
      nbits += 8;
      while (nbits >= 6) {
        nbits -= 6;
        out += alphabet[(bits >> nbits) & 0x3F];
      }
    }
  }
  if (nbits > 0) {
    out += alphabet[(bits << (6 - nbits)) & 0x3F];
  }
  out += '-';
  units.clear();
}

}  // namespace

std::optional<std::string> encode_mailbox_name(std::string_view utf8) {
  if (!sb::email::is_valid_utf8(utf8)) {
    return std::nullopt;
  }
  std::string out;
  std::vector<std::uint16_t> pending;
  for (std::uint32_t cp : code_points(utf8)) {
    if (cp >= 0x20 && cp <= 0x7E) {
      flush(pending, out);
      out += cp == '&' ? std::string("&-") : std::string(1, static_cast<char>(cp));
    } else if (cp >= 0x10000) {
      cp -= 0x10000;
      pending.push_back(static_cast<std::uint16_t>(0xD800 + (cp >> 10)));
      pending.push_back(static_cast<std::uint16_t>(0xDC00 + (cp & 0x3FF)));
    } else {
      pending.push_back(static_cast<std::uint16_t>(cp));
    }
  }
  flush(pending, out);
  return out;
}

}  // namespace sb::email::imap
