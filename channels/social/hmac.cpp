#include "channels/social/hmac.hpp"

#include <array>
#include <memory>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "core/hex.hpp"

namespace sb::social {

namespace {

// One HMAC-SHA256 context per thread with its digest set once, re-keyed on every use: creating a
// context and setting the digest per call fetches implementations from the OpenSSL 3 provider
// each time, a large share of a signed webhook's cost at 10,000 events/s.
class HmacSha256 {
 public:
  HmacSha256() {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    ctx_ = mac == nullptr ? nullptr : EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (ctx_ != nullptr && EVP_MAC_CTX_set_params(ctx_, params) != 1) {
      EVP_MAC_CTX_free(ctx_);
      ctx_ = nullptr;
    }
  }
  ~HmacSha256() { EVP_MAC_CTX_free(ctx_); }
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;

  // false when OpenSSL failed (the caller then returns "", never equal to a signature).
  bool mac(std::string_view key, std::string_view data, unsigned char* out, std::size_t& len) {
    static const unsigned char kEmpty = 0;  // an empty key is legal; OpenSSL wants non-null
    const auto* k = key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
    return ctx_ != nullptr && EVP_MAC_init(ctx_, k, key.size(), nullptr) == 1 &&
           EVP_MAC_update(ctx_, reinterpret_cast<const unsigned char*>(data.data()), data.size()) ==
               1 &&
           EVP_MAC_final(ctx_, out, &len, EVP_MAX_MD_SIZE) == 1;
  }

 private:
  EVP_MAC_CTX* ctx_ = nullptr;
};

}  // namespace

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  thread_local HmacSha256 hmac;
  std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
  std::size_t out_len = 0;
  if (!hmac.mac(key, data, out.data(), out_len)) {
    return {};
  }
  return hex_lower({reinterpret_cast<const char*>(out.data()), out_len});
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace sb::social
