#pragma once
// SHA-256 and HMAC through OpenSSL 3, with the algorithm fetched once per thread: the one-shot
// calls (EVP_Digest, HMAC) look the implementation up in the provider on every call, a large
// share of a signed webhook's cost at 10,000-20,000 requests/s. Results are raw bytes (see
// core/hex.hpp); "" only when OpenSSL cannot compute them (a broken installation), which never
// equals a signature.
#include <string>
#include <string_view>

namespace sb {

std::string sha256(std::string_view data);
// Compares in time that depends only on the lengths (CRYPTO_memcmp); a length mismatch returns
// early, as lengths are not secret.
bool constant_time_equal(std::string_view a, std::string_view b);
// An HMAC context keeps the last key it was given and, when the next call brings the same one
// (one account's secret, request after request), restarts from it instead of hashing the key's
// pads again: 4k instructions a signed callback less. Keys are configured secrets, never a
// request's, so comparing them is not a timing channel.
std::string hmac_sha1(std::string_view key, std::string_view data);
std::string hmac_sha256(std::string_view key, std::string_view data);

}  // namespace sb
