#pragma once
// Test doubles for the voice tests: a fake phone canonicaliser (the real one is libphonenumber,
// routing/identity.hpp), an owning request builder, and an Ed25519 key pair for Telnyx.
#include <cctype>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <doctest/doctest.h>
#include <openssl/evp.h>

#include "channels/voice/signatures.hpp"
#include "channels/voice/webhook.hpp"

namespace sb::voice::test {

// E.164 for "+<digits>" (punctuation allowed) and for 10-digit US national numbers.
inline std::optional<std::string> fake_canon(std::string_view raw, std::string_view region) {
  std::string digits;
  bool plus = !raw.empty() && raw.front() == '+';
  for (char c : raw.substr(plus ? 1 : 0)) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      digits.push_back(c);
    } else if (c != ' ' && c != '-' && c != '(' && c != ')' && c != '.') {
      return std::nullopt;
    }
  }
  if (plus && digits.size() >= 8) {
    return "+" + digits;
  }
  if (!plus && region == "US" && digits.size() == 10) {
    return "+1" + digits;
  }
  return std::nullopt;
}

inline const PhoneCanonicalizer kCanon = fake_canon;

struct Request {
  std::string method = "POST";
  std::string target;
  std::string content_type;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::int64_t now = 1767323045;               // 2026-01-02T03:04:05Z

  Request& with(std::string name, std::string value) {
    for (char& c : name) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    headers[name] = std::move(value);
    return *this;
  }

  WebhookRequest view() const {
    WebhookRequest r;
    r.method = method;
    r.target = target;
    r.content_type = content_type;
    r.body = body;
    r.now_unix_s = now;
    r.header = [this](std::string_view name) -> std::string_view {
      std::string key(name);
      for (char& c : key) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      auto it = headers.find(key);
      return it == headers.end() ? std::string_view{} : std::string_view{it->second};
    };
    return r;
  }
};

// An Ed25519 key pair standing in for Telnyx's signing key.
struct KeyPair {
  std::shared_ptr<EVP_PKEY> key;
  std::string public_b64;

  KeyPair() : key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), EVP_PKEY_free) {
    REQUIRE(key);
    unsigned char raw[32];
    std::size_t len = sizeof raw;
    REQUIRE(EVP_PKEY_get_raw_public_key(key.get(), raw, &len) == 1);
    public_b64 = base64_encode({reinterpret_cast<char*>(raw), len});
  }

  std::string sign(std::string_view message) const {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    unsigned char sig[64];
    std::size_t len = sizeof sig;
    REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1);
    REQUIRE(EVP_DigestSign(ctx.get(), sig, &len,
                           reinterpret_cast<const unsigned char*>(message.data()),
                           message.size()) == 1);
    return base64_encode({reinterpret_cast<char*>(sig), len});
  }
};

}  // namespace sb::voice::test
