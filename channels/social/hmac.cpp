#include "channels/social/hmac.hpp"

#include "core/crypto.hpp"
#include "core/hex.hpp"

namespace sb::social {

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  return hex_lower(sb::hmac_sha256(key, data));  // "" when OpenSSL failed: never a signature
}

}  // namespace sb::social
