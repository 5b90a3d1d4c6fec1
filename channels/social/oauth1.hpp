#pragma once
// OAuth 1.0a request signing (RFC 5849) with HMAC-SHA1, as X requires for the calls it accepts
// only in user context (docs.x.com "Authorizing a request", "Creating a signature").
//
// What is signed (section 3.4.1): the method, the URL without its query (scheme and host
// lower-cased, a default port dropped), and the parameters: the query's, the oauth_* ones and
// those of a form-encoded body. Any other body is not signed: POST /2/tweets sends JSON, so its
// text is not part of the signature, only the URL and the oauth_* parameters are.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sb::social {

// The client's and the token's credentials (X: API key and secret, access token and secret).
struct OAuth1Keys {
  std::string_view consumer_key;
  std::string_view consumer_secret;
  std::string_view token;
  std::string_view token_secret;
};

// Decoded name/value pairs, repeats and order kept.
using OAuth1Params = std::vector<std::pair<std::string, std::string>>;

// Section 3.6: every byte outside ALPHA, DIGIT, '-', '.', '_', '~' as "%XX" (upper-case hex).
// Not form encoding: a space is "%20", never '+'.
std::string oauth1_encode(std::string_view s);

// Section 3.4.1: "METHOD&" encode(base string URI) "&" encode(normalised parameters), where the
// parameters are the query's of `url` (decoded, '+' as a space) and `params`. nullopt when `url`
// is not an absolute http(s) URL.
std::optional<std::string> oauth1_base_string(std::string_view method, std::string_view url,
                                              const OAuth1Params& params);

// Section 3.4.2: base64(HMAC-SHA1(encode(consumer secret) "&" encode(token secret), base)).
std::string oauth1_hmac_sha1(std::string_view base_string, std::string_view consumer_secret,
                             std::string_view token_secret);

// The Authorization header's value for a request (section 3.5.1):
//   OAuth oauth_consumer_key="...", oauth_nonce="...", oauth_signature="...",
//   oauth_signature_method="HMAC-SHA1", oauth_timestamp="...", oauth_token="...",
//   oauth_version="1.0"
// `form` holds the parameters of a form-encoded body (none for a JSON one); `timestamp` is Unix
// seconds. nullopt when `url` is not an absolute http(s) URL.
std::optional<std::string> oauth1_authorization(std::string_view method, std::string_view url,
                                                const OAuth1Keys& keys, std::string_view nonce,
                                                std::int64_t timestamp,
                                                const OAuth1Params& form = {});

// A fresh oauth_nonce: 32 hex digits of OpenSSL RAND_bytes. The RFC asks only that a nonce be
// unique for its timestamp and credentials, so when OpenSSL has no randomness to give (a broken
// installation) it falls back to the clock and a counter rather than fail the request.
std::string oauth1_nonce();

}  // namespace sb::social
