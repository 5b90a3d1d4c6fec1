#include "channels/social/hmac.hpp"

#include <array>
#include <memory>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

namespace sb::social {

namespace {

// One EVP_MAC algorithm object per thread: fetching it is a provider lookup under a lock, too
// slow for 10,000 webhooks/s; contexts are cheap and created per call.
EVP_MAC* hmac_algorithm() {
  thread_local std::unique_ptr<EVP_MAC, decltype(&EVP_MAC_free)> mac(
      EVP_MAC_fetch(nullptr, "HMAC", nullptr), &EVP_MAC_free);
  return mac.get();
}

}  // namespace

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)> ctx(EVP_MAC_CTX_new(hmac_algorithm()),
                                                                &EVP_MAC_CTX_free);
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                         OSSL_PARAM_construct_end()};
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  std::size_t out_len = 0;
  if (!ctx ||
      EVP_MAC_init(ctx.get(), reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                   params) != 1 ||
      EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()), data.size()) !=
          1 ||
      EVP_MAC_final(ctx.get(), out.data(), &out_len, out.size()) != 1) {
    return {};  // never equal to a provided signature (callers reject empty ones)
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string result;
  result.reserve(out_len * 2);
  for (std::size_t i = 0; i < out_len; ++i) {
    result.push_back(hex[out[i] >> 4]);
    result.push_back(hex[out[i] & 0xF]);
  }
  return result;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace sb::social
