#include "core/crypto.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

namespace sb {
namespace {

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

class Digest {
 public:
  explicit Digest(const char* name)
      : md_(EVP_MD_fetch(nullptr, name, nullptr)), ctx_(EVP_MD_CTX_new()) {}
  ~Digest() {
    EVP_MD_CTX_free(ctx_);
    EVP_MD_free(md_);
  }
  Digest(const Digest&) = delete;
  Digest& operator=(const Digest&) = delete;

  std::string of(std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (md_ == nullptr || ctx_ == nullptr || EVP_DigestInit_ex(ctx_, md_, nullptr) != 1 ||
        EVP_DigestUpdate(ctx_, data.data(), data.size()) != 1 ||
        EVP_DigestFinal_ex(ctx_, out, &len) != 1) {
      return {};
    }
    return {reinterpret_cast<const char*>(out), len};
  }

 private:
  EVP_MD* md_;
  EVP_MD_CTX* ctx_;
};

class Hmac {
 public:
  explicit Hmac(const char* digest) {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    ctx_ = mac == nullptr ? nullptr : EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digest), 0),
        OSSL_PARAM_construct_end()};
    if (ctx_ != nullptr && EVP_MAC_CTX_set_params(ctx_, params) != 1) {
      EVP_MAC_CTX_free(ctx_);
      ctx_ = nullptr;
    }
  }
  ~Hmac() { EVP_MAC_CTX_free(ctx_); }
  Hmac(const Hmac&) = delete;
  Hmac& operator=(const Hmac&) = delete;

  std::string mac(std::string_view key, std::string_view data) {
    if (ctx_ == nullptr) {
      return {};
    }
    // An empty key is legal for HMAC but OpenSSL wants a non-null pointer.
    static const unsigned char kEmpty = 0;
    bool same_key = keyed_ && key == key_;
    int init = same_key
                   ? EVP_MAC_init(ctx_, nullptr, 0, nullptr)
                   : EVP_MAC_init(ctx_, key.empty() ? &kEmpty : bytes(key), key.size(), nullptr);
    if (!same_key) {
      key_.assign(key);
      keyed_ = init == 1;
    }
    unsigned char out[EVP_MAX_MD_SIZE];
    std::size_t len = 0;
    if (init != 1 || EVP_MAC_update(ctx_, bytes(data), data.size()) != 1 ||
        EVP_MAC_final(ctx_, out, &len, sizeof out) != 1) {
      return {};
    }
    return {reinterpret_cast<const char*>(out), len};
  }

 private:
  EVP_MAC_CTX* ctx_ = nullptr;
  std::string key_;  // the key ctx_ holds, when keyed_
  bool keyed_ = false;
};

}  // namespace

bool constant_time_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string sha256(std::string_view data) {
  thread_local Digest d("SHA256");
  return d.of(data);
}

std::string hmac_sha1(std::string_view key, std::string_view data) {
  thread_local Hmac h("SHA1");
  return h.mac(key, data);
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  thread_local Hmac h("SHA256");
  return h.mac(key, data);
}

}  // namespace sb
