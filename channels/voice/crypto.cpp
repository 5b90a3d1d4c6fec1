#include "channels/voice/crypto.hpp"

#include <cstdlib>

#include <openssl/evp.h>

#include "core/crypto.hpp"

namespace sb::voice {

namespace {

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes(in),
                          static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// Written out rather than EVP_DecodeBlock, which accepts garbage after padding and returns
// the padding as zero bytes.
std::optional<std::string> base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z')
      return c - 'A';
    if (c >= 'a' && c <= 'z')
      return c - 'a' + 26;
    if (c >= '0' && c <= '9')
      return c - '0' + 52;
    if (c == '+')
      return 62;
    if (c == '/')
      return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') {
    in.remove_suffix(1);
  }
  if (in.size() % 4 == 1) {
    return std::nullopt;
  }
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = value(c);
    if (v < 0) {
      return std::nullopt;
    }
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  return hex_lower(sha256(data));
}

namespace {
// OpenSSL without HMAC-SHA1/SHA256 is a broken installation: stop rather than answer 403.
std::string must(std::string mac) {
  if (mac.empty()) {
    std::abort();
  }
  return mac;
}
}  // namespace

std::string hmac_sha1_base64(std::string_view key, std::string_view data) {
  return base64_encode(must(hmac_sha1(key, data)));
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  return hex_lower(must(hmac_sha256(key, data)));
}

}  // namespace sb::voice
