#pragma once
// The few crypto and encoding primitives the webhook signatures need, on OpenSSL 3.
#include <optional>
#include <string>
#include <string_view>

#include "core/crypto.hpp"
#include "core/hex.hpp"

namespace sb::voice {

using sb::constant_time_equal;  // core/crypto.hpp
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);  // strict, padding optional
using sb::hex_lower;                                              // core/hex.hpp
std::string sha256_hex(std::string_view data);
std::string hmac_sha1_base64(std::string_view key, std::string_view data);
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

}  // namespace sb::voice
