#pragma once
// HMAC-SHA256 and a constant-time comparison, for webhook signatures (DESIGN-NOTES invariant 5:
// every signature a constant-time compare).
#include <string>
#include <string_view>

#include "core/crypto.hpp"

namespace sb::social {

// Lower-case hex of HMAC-SHA256(key, data), via OpenSSL 3 EVP_MAC.
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

using sb::constant_time_equal;  // core/crypto.hpp

}  // namespace sb::social
