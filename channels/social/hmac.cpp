#include "channels/social/hmac.hpp"

#include <openssl/crypto.h>

#include "core/crypto.hpp"
#include "core/hex.hpp"

namespace sb::social {

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  return hex_lower(sb::hmac_sha256(key, data));  // "" when OpenSSL failed: never a signature
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace sb::social
