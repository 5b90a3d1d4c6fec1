#pragma once
// Base64 for SASL (IMAP AUTHENTICATE, SMTP AUTH), via OpenSSL.
#include <openssl/evp.h>

#include <string>
#include <string_view>

namespace sb::email {

inline std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

}  // namespace sb::email
