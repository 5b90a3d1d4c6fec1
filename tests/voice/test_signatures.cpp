// Signature primitives and the Twilio published vectors. The expected values are copied from
// Twilio's helper libraries' own tests (twilio-python tests/unit/test_request_validator.py,
// twilio-php RequestValidatorTest, twilio-csharp RequestValidatorTest): auth token "12345".
#include <doctest/doctest.h>

#include "channels/voice/signatures.hpp"

using namespace sb;
using namespace sb::voice;

// Named per file: the test programs are unity builds (helpers such as kAnn or config() would
namespace signatures_test {

namespace {

const std::string kToken = "12345";
const std::string kUrl = "https://mycompany.com/myapp.php?foo=1&bar=2";
const FormParams kParams = {{"CallSid", "CA1234567890ABCDE"},
                            {"Caller", "+14158675309"},
                            {"Digits", "1234"},
                            {"From", "+14158675309"},
                            {"To", "+18005551212"}};
const std::string kBody = R"({"property": "value", "boolean": true})";
const std::string kBodyHash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

std::string replace(std::string s, std::string_view from, std::string_view to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

}  // namespace

TEST_CASE("twilio: the published signature vector") {
  CHECK(twilio_signature(kToken, kUrl, kParams) == "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
  // Parameter order on the wire does not matter.
  FormParams reversed(kParams.rbegin(), kParams.rend());
  CHECK(twilio_signature(kToken, kUrl, reversed) == "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
  CHECK(verify_twilio_form(kToken, kUrl, kParams, "RSOYDt4T1cUTdK1PDd93/VVr8B8=").ok());
}

TEST_CASE("twilio: repeated keys are sorted by value and de-duplicated (published vector)") {
  // twilio-python test_compute_signature_duplicate_query_dict: the same form body.
  FormParams params = parse_form("Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234");
  REQUIRE(params.size() == 5);
  CHECK(twilio_signature(kToken, kUrl, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU=");
  CHECK(verify_twilio_form(kToken, kUrl, params, "IK+Dwps556ElfBT0I3Rgjkr1wJU=").ok());
}

TEST_CASE("twilio: URL port variants (published vectors)") {
  SUBCASE("a non-default port in the URL is removed (https)") {
    auto url = replace(kUrl, ".com", ".com:1234");
    CHECK(verify_twilio_form(kToken, url, kParams, "RSOYDt4T1cUTdK1PDd93/VVr8B8=").ok());
  }
  SUBCASE("or kept (http, signed with :1234)") {
    auto url = replace(replace(kUrl, ".com", ".com:1234"), "https", "http");
    CHECK(verify_twilio_form(kToken, url, kParams, "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=").ok());
  }
  SUBCASE("the default port is added (https, signed with :443)") {
    CHECK(verify_twilio_form(kToken, kUrl, kParams, "kvajT1Ptam85bY51eRf/AJRuM3w=").ok());
  }
  SUBCASE("the default port is added (http, signed with :80)") {
    auto url = replace(kUrl, "https", "http");
    CHECK(verify_twilio_form(kToken, url, kParams, "0ZXoZLH/DfblKGATFgpif+LLRf4=").ok());
  }
  SUBCASE("a URL with :443 accepts the signature over the URL without it") {
    auto url = replace(kUrl, ".com", ".com:443");
    CHECK(verify_twilio_form(kToken, url, kParams, "RSOYDt4T1cUTdK1PDd93/VVr8B8=").ok());
  }
  SUBCASE("the variants") {
    auto v = twilio_url_variants("https://h.example/p?q=1");
    REQUIRE(v.size() == 2);
    CHECK(v[0] == "https://h.example/p?q=1");
    CHECK(v[1] == "https://h.example:443/p?q=1");
    v = twilio_url_variants("http://h.example:8080/p");
    CHECK(v[0] == "http://h.example/p");
    CHECK(v[1] == "http://h.example:8080/p");
    v = twilio_url_variants("https://[::1]/p");
    CHECK(v[0] == "https://[::1]/p");
    CHECK(v[1] == "https://[::1]:443/p");
  }
}

TEST_CASE("twilio: JSON bodies are covered by bodySHA256 (published vectors)") {
  CHECK(sha256_hex(kBody) == kBodyHash);
  std::string url = kUrl + "&bodySHA256=" + kBodyHash;
  CHECK(verify_twilio_body(kToken, url, kBody, "a9nBmqA0ju/hNViExpshrM61xv4=").ok());
  // twilio-csharp TestValidateWithOnlyHash.
  std::string only_hash = "https://mycompany.com/myapp.php?bodySHA256=" + kBodyHash;
  CHECK(verify_twilio_body(kToken, only_hash, kBody, "y77kIzt2vzLz71DgmJGsen2scGs=").ok());

  SUBCASE("a changed body fails even with the right URL signature") {
    auto r = verify_twilio_body(kToken, url, R"({"property": "evil", "boolean": true})",
                                "a9nBmqA0ju/hNViExpshrM61xv4=");
    CHECK(r.status == 403);
    CHECK(r.code == "bad_signature");
    CHECK(r.message.find("bodySHA256") != std::string::npos);
  }
  SUBCASE("a JSON body without bodySHA256 is refused") {
    auto r = verify_twilio_body(kToken, kUrl, kBody, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    CHECK(r.status == 403);
  }
}

TEST_CASE("twilio: forged and missing signatures") {
  auto r = verify_twilio_form(kToken, kUrl, kParams, "");
  CHECK(r.status == 401);
  CHECK(r.code == "missing_signature");
  r = verify_twilio_form(kToken, kUrl, kParams, "RSOYDt4T1cUTdK1PDd93/VVr8B9=");
  CHECK(r.status == 403);
  CHECK(r.code == "bad_signature");
  r = verify_twilio_form("54321", kUrl, kParams, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
  CHECK(r.status == 403);
  FormParams tampered = kParams;
  tampered[2].second = "9999";
  CHECK(verify_twilio_form(kToken, kUrl, tampered, "RSOYDt4T1cUTdK1PDd93/VVr8B8=").status == 403);
  CHECK(verify_twilio_form(kToken, kUrl + "&extra=1", kParams, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            .status == 403);
}

TEST_CASE("primitives") {
  CHECK(base64_encode("hello") == "aGVsbG8=");
  CHECK(base64_decode("aGVsbG8=") == std::optional<std::string>("hello"));
  CHECK(base64_decode("aGVsbG8") == std::optional<std::string>("hello"));
  CHECK_FALSE(base64_decode("aGV*bG8=").has_value());
  CHECK_FALSE(base64_decode("a").has_value());
  CHECK(constant_time_equal("abc", "abc"));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "abcd"));
  // RFC 4231 test case 2.
  CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST_CASE("HMAC contexts keep their key: the same key again, another one, then the first") {
  // RFC 2202 test cases 2 and 3 for HMAC-SHA1, RFC 4231 test case 2 for HMAC-SHA256; a context
  // restarts from the key it holds when the next call brings the same one (crypto.cpp).
  const std::string jefe1 = base64_encode(std::string(
      "\xef\xfc\xdf\x6a\xe5\xeb\x2f\xa2\xd2\x74\x16\xd5\xf1\x84\xdf\x9c\x25\x9a\x7c\x79", 20));
  const std::string aa1 = base64_encode(std::string(
      "\x12\x5d\x73\x42\xb9\xac\x11\xcd\x91\xa3\x9a\xf4\x8a\xa1\x7b\x4f\x63\xf1\x75\xd3", 20));
  const std::string dd(50, '\xdd');
  const std::string aa(20, '\xaa');
  for (int round = 0; round < 2; ++round) {
    CHECK(hmac_sha1_base64("Jefe", "what do ya want for nothing?") == jefe1);
    CHECK(hmac_sha1_base64("Jefe", "what do ya want for nothing?") == jefe1);
    CHECK(hmac_sha1_base64(aa, dd) == aa1);
    CHECK(hmac_sha1_base64(aa, dd) == aa1);
    CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  }
  CHECK(hmac_sha1_base64("", "") == "+9sdGxiqbAgyS31ktx+3Y3BpDh0=");  // empty key and message
  CHECK(hmac_sha1_base64("", "") == "+9sdGxiqbAgyS31ktx+3Y3BpDh0=");
}

TEST_CASE("form decoding") {
  auto p = parse_form("a=1+2&b=%2B14155550100&c&=x&d=%zz&e=caf%C3%A9&&a=3");
  REQUIRE(p.size() == 7);
  CHECK(p[0] == std::pair<std::string, std::string>{"a", "1 2"});
  CHECK(p[1].second == "+14155550100");
  CHECK(p[2] == std::pair<std::string, std::string>{"c", ""});
  CHECK(p[3] == std::pair<std::string, std::string>{"", "x"});
  CHECK(p[4].second == "%zz");  // not a valid escape: kept literally
  CHECK(p[5].second == "caf\xC3\xA9");
  CHECK(p[6] == std::pair<std::string, std::string>{"a", "3"});
  CHECK(form_get(p, "a") == std::optional<std::string_view>("1 2"));
  // Escapes cut short at the end, and escapes and '+' back to back.
  CHECK(form_decode("50%") == "50%");
  CHECK(form_decode("%4") == "%4");
  CHECK(form_decode("a%2") == "a%2");
  CHECK(form_decode("%41%42++%43") == "AB  C");
  CHECK(form_decode("plain") == "plain");
  CHECK(form_decode("") == "");
  CHECK(query_param("/x?bodySHA256=ab%63&y=1", "bodySHA256") == std::optional<std::string>("abc"));
  CHECK_FALSE(query_param("/x", "y").has_value());
}

}  // namespace signatures_test
