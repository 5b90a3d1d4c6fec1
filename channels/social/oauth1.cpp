#include "channels/social/oauth1.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>

#include <boost/url/parse.hpp>

#include "channels/social/common.hpp"
#include "core/crypto.hpp"
#include "core/form.hpp"
#include "core/hex.hpp"

namespace sb::social {

namespace {

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return out;
}

}  // namespace

std::string oauth1_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (unreserved(c)) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0x0f];
    }
  }
  return out;
}

std::optional<std::string> oauth1_base_string(std::string_view method, std::string_view url,
                                              const OAuth1Params& params) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || !parsed->has_authority()) {
    return std::nullopt;
  }
  // Section 3.4.1.2: scheme and host in lower case, the port only when it is not the scheme's
  // default, the path as sent ("/" when empty), no query, no fragment.
  const std::string scheme = ascii_lower(parsed->scheme());
  if (scheme != "http" && scheme != "https") {
    return std::nullopt;
  }
  std::string uri = scheme + "://" + ascii_lower(parsed->encoded_host());
  if (!parsed->port().empty()) {
    const std::uint16_t port = parsed->port_number();
    if (port != (scheme == "https" ? 443 : 80)) {
      uri += ":" + std::string(parsed->port());
    }
  }
  const std::string_view path = parsed->encoded_path();
  uri += path.empty() ? std::string_view("/") : path;

  // Section 3.4.1.3.2: every name and value encoded, sorted by name then value (byte order),
  // joined as name=value with '&'.
  std::vector<std::pair<std::string, std::string>> encoded;
  if (parsed->has_query()) {
    for (const auto& [name, value] : parse_form(parsed->encoded_query())) {
      encoded.emplace_back(oauth1_encode(name), oauth1_encode(value));
    }
  }
  for (const auto& [name, value] : params) {
    encoded.emplace_back(oauth1_encode(name), oauth1_encode(value));
  }
  std::sort(encoded.begin(), encoded.end());
  std::string normalised;
  for (const auto& [name, value] : encoded) {
    normalised += normalised.empty() ? "" : "&";
    normalised += name + "=" + value;
  }
  std::string base(method);
  std::transform(base.begin(), base.end(), base.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return base + "&" + oauth1_encode(uri) + "&" + oauth1_encode(normalised);
}

std::string oauth1_hmac_sha1(std::string_view base_string, std::string_view consumer_secret,
                             std::string_view token_secret) {
  const std::string key = oauth1_encode(consumer_secret) + "&" + oauth1_encode(token_secret);
  const std::string mac = sb::hmac_sha1(key, base_string);
  return mac.empty() ? std::string() : base64(mac);  // "" (OpenSSL failed) never verifies
}

std::optional<std::string> oauth1_authorization(std::string_view method, std::string_view url,
                                                const OAuth1Keys& keys, std::string_view nonce,
                                                std::int64_t timestamp, const OAuth1Params& form) {
  // Sorted by name, as X's examples show them (the order is free in the header).
  OAuth1Params oauth{
      {"oauth_consumer_key", std::string(keys.consumer_key)},
      {"oauth_nonce", std::string(nonce)},
      {"oauth_signature_method", "HMAC-SHA1"},
      {"oauth_timestamp", std::to_string(timestamp)},
      {"oauth_token", std::string(keys.token)},
      {"oauth_version", "1.0"},
  };
  OAuth1Params signed_params = oauth;
  signed_params.insert(signed_params.end(), form.begin(), form.end());
  auto base = oauth1_base_string(method, url, signed_params);
  if (!base) {
    return std::nullopt;
  }
  oauth.emplace(oauth.begin() + 2, "oauth_signature",
                oauth1_hmac_sha1(*base, keys.consumer_secret, keys.token_secret));
  std::string header = "OAuth ";
  for (std::size_t i = 0; i < oauth.size(); ++i) {
    header += i == 0 ? "" : ", ";
    header += oauth1_encode(oauth[i].first) + "=\"" + oauth1_encode(oauth[i].second) + "\"";
  }
  return header;
}

std::string oauth1_nonce() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) == 1) {
    return hex_lower(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  static std::atomic<std::uint64_t> counter{0};
  const auto ns = std::chrono::system_clock::now().time_since_epoch().count();
  return std::to_string(ns) + "x" + std::to_string(counter.fetch_add(1));
}

}  // namespace sb::social
