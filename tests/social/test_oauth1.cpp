// OAuth 1.0a signing (RFC 5849, HMAC-SHA1) against the published examples, and the X reply's
// Authorization with and without user context.
#include <string>

#include <doctest/doctest.h>

#include "channels/social/oauth1.hpp"
#include "channels/social/x.hpp"

using namespace sb::social;

namespace {

// docs.x.com "Creating a signature" and "Authorizing a request": the credentials, nonce and
// timestamp of the example.
constexpr const char* kConsumerKey = "xvz1evFS4wEEPTGEFPHBog";
constexpr const char* kConsumerSecret = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw";
constexpr const char* kToken = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb";
constexpr const char* kTokenSecret = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";
constexpr const char* kNonce = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg";
constexpr std::int64_t kTimestamp = 1318622958;

const OAuth1Keys kDocsKeys{kConsumerKey, kConsumerSecret, kToken, kTokenSecret};

// The value of one parameter of an `OAuth ...` header, still encoded.
std::string header_param(const std::string& header, const std::string& name) {
  const std::string key = name + "=\"";
  const std::size_t at = header.find(key);
  if (at == std::string::npos) {
    return {};
  }
  const std::size_t from = at + key.size();
  return header.substr(from, header.find('"', from) - from);
}

sb::config::X x_user_cfg() {
  sb::config::X cfg;
  cfg.name = "x";
  cfg.user_id = "2244994945";
  cfg.bearer_token = "x-token";
  cfg.user_context = sb::config::XUserContext{kConsumerKey, kConsumerSecret, kToken, kTokenSecret};
  return cfg;
}

}  // namespace

TEST_CASE("oauth1: percent-encoding is RFC 3986's unreserved set only, upper-case hex") {
  CHECK(oauth1_encode("Hello Ladies + Gentlemen, a signed OAuth request!") ==
        "Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21");
  CHECK(oauth1_encode("Az09-._~") == "Az09-._~");
  // What form encoding or encodeURIComponent would leave alone, or write as '+'.
  CHECK(oauth1_encode("*'() /?&=") == "%2A%27%28%29%20%2F%3F%26%3D");
  CHECK(oauth1_encode("\xe2\x98\x83") == "%E2%98%83");  // UTF-8 bytes, each escaped
  CHECK(oauth1_encode("") == "");
}

TEST_CASE("oauth1: the X docs example, status update with a query and a form body") {
  const OAuth1Params form{{"status", "Hello Ladies + Gentlemen, a signed OAuth request!"}};
  // The example as first published, on the /1/ path: base string and signature as shown.
  {
    OAuth1Params params = form;
    params.insert(params.end(), {{"oauth_consumer_key", kConsumerKey},
                                 {"oauth_nonce", kNonce},
                                 {"oauth_signature_method", "HMAC-SHA1"},
                                 {"oauth_timestamp", "1318622958"},
                                 {"oauth_token", kToken},
                                 {"oauth_version", "1.0"}});
    auto base = oauth1_base_string(
        "POST", "https://api.twitter.com/1/statuses/update.json?include_entities=true", params);
    REQUIRE(base);
    CHECK(*base ==
          "POST&https%3A%2F%2Fapi.twitter.com%2F1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%"
          "26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog%26oauth_nonce%"
          "3DkYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg%26oauth_signature_method%3DHMAC-SHA1%"
          "26oauth_timestamp%3D1318622958%26oauth_token%3D370773112-"
          "GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb%26oauth_version%3D1.0%26status%3DHello%"
          "2520Ladies%2520%252B%2520Gentlemen%252C%2520a%2520signed%2520OAuth%2520request%2521");
    CHECK(oauth1_hmac_sha1(*base, kConsumerSecret, kTokenSecret) == "tnnArxj06cWHq44gCs1OSKk/jLY=");
  }
  // The same on the 1.1 path, as the whole header.
  auto header = oauth1_authorization(
      "POST", "https://api.twitter.com/1.1/statuses/update.json?include_entities=true", kDocsKeys,
      kNonce, kTimestamp, form);
  REQUIRE(header);
  CHECK(*header ==
        "OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\", "
        "oauth_nonce=\"kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg\", "
        "oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\", "
        "oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"1318622958\", "
        "oauth_token=\"370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb\", "
        "oauth_version=\"1.0\"");
}

TEST_CASE("oauth1: RFC 5849 examples, the signed request and the base string's normalisation") {
  // Section 1.2: GET with query parameters, no oauth_version.
  auto base =
      oauth1_base_string("GET", "http://photos.example.net/photos?file=vacation.jpg&size=original",
                         {{"oauth_consumer_key", "dpf43f3p2l4k3l03"},
                          {"oauth_token", "nnch734d00sl2jdk"},
                          {"oauth_signature_method", "HMAC-SHA1"},
                          {"oauth_timestamp", "137131202"},
                          {"oauth_nonce", "chapoH"}});
  REQUIRE(base);
  CHECK(oauth1_hmac_sha1(*base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00") ==
        "MdpQcU8iPSUjWoN/UDMsK2sui9I=");

  // Section 3.4.1.1: the query decoded ('+' and %20 both a space, %253D stays "%3D" once
  // decoded), a name without '=', repeated names sorted by value, the default port dropped and
  // scheme and host lower-cased; the form body's parameters given decoded.
  auto normalised =
      oauth1_base_string("post", "HTTP://EXAMPLE.com:80/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b",
                         {{"c2", ""},
                          {"a3", "2 q"},
                          {"oauth_consumer_key", "9djdj82h48djs9d2"},
                          {"oauth_token", "kkk9d7dh3k39sjv7"},
                          {"oauth_signature_method", "HMAC-SHA1"},
                          {"oauth_timestamp", "137131201"},
                          {"oauth_nonce", "7d8f3e4a"}});
  REQUIRE(normalised);
  CHECK(*normalised ==
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%"
        "253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%"
        "3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_"
        "token%3Dkkk9d7dh3k39sjv7");

  // A port that is not the scheme's default stays; an empty path is "/".
  CHECK(oauth1_base_string("GET", "https://api.example:8443", {}) ==
        "GET&https%3A%2F%2Fapi.example%3A8443%2F&");
  CHECK(oauth1_base_string("GET", "http://127.0.0.1:443/x", {}) ==
        "GET&http%3A%2F%2F127.0.0.1%3A443%2Fx&");
  CHECK_FALSE(oauth1_base_string("GET", "/2/tweets", {}));
}

TEST_CASE("oauth1: a fresh nonce each time, 32 hex digits") {
  const std::string a = oauth1_nonce();
  const std::string b = oauth1_nonce();
  CHECK(a.size() == 32);
  CHECK(a.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(a != b);
}

TEST_CASE("x: a reply with user context is signed with OAuth 1.0a, its JSON body unsigned") {
  sb::config::X cfg = x_user_cfg();
  HttpRequestSpec a{"POST", "/2/tweets", "application/json", R"({"text":"one"})", {}};
  x_authorize_user(cfg, a, kNonce, kTimestamp);
  REQUIRE(a.headers.size() == 1);
  CHECK(a.headers[0].first == "Authorization");
  // POST https://api.x.com/2/tweets with the docs' credentials, nonce and timestamp: only the
  // oauth_* parameters are signed.
  CHECK(a.headers[0].second ==
        "OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\", "
        "oauth_nonce=\"kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg\", "
        "oauth_signature=\"lr%2BtV%2FDKclEvXKVjG6tgaSSLV0k%3D\", "
        "oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"1318622958\", "
        "oauth_token=\"370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb\", "
        "oauth_version=\"1.0\"");
  HttpRequestSpec b{"POST", "/2/tweets", "application/json", R"({"text":"two"})", {}};
  x_authorize_user(cfg, b, kNonce, kTimestamp);
  CHECK(b.headers.at(0).second == a.headers[0].second);

  // A base_url with a trailing '/' signs the URL the request goes to.
  cfg.base_url = "https://api.x.com/";
  HttpRequestSpec c{"POST", "/2/tweets", "application/json", "{}", {}};
  x_authorize_user(cfg, c, kNonce, kTimestamp);
  CHECK(c.headers.at(0).second == a.headers[0].second);

  // x_reply signs with a nonce of its own and the current time.
  auto r = x_reply(x_user_cfg(), "Thanks!", "1375152449595338752");
  REQUIRE(r.headers.size() == 1);
  const std::string& h = r.headers[0].second;
  CHECK(h.rfind("OAuth ", 0) == 0);
  CHECK(header_param(h, "oauth_consumer_key") == kConsumerKey);
  CHECK(header_param(h, "oauth_token") == kToken);
  CHECK(header_param(h, "oauth_nonce").size() == 32);
  CHECK(header_param(h, "oauth_nonce") != kNonce);
  CHECK_FALSE(header_param(h, "oauth_signature").empty());
  CHECK(h.find("x-token") == std::string::npos);  // never the bearer token as well
}
