#include <doctest/doctest.h>

#include <chrono>

#include "channels/email/charset.hpp"
#include "channels/email/rfc2047.hpp"

using namespace sb::email;

TEST_CASE("charset labels map to the vendor supersets") {
  CHECK(iconv_charset("gb2312") == "GB18030");
  CHECK(iconv_charset("\"GB2312\"") == "GB18030");
  CHECK(iconv_charset("ks_c_5601-1987") == "CP949");
  CHECK(iconv_charset("ISO-8859-1") == "WINDOWS-1252");
  CHECK(iconv_charset("Shift_JIS") == "CP932");
  CHECK(iconv_charset("big5") == "CP950");
  CHECK(iconv_charset("us-ascii").empty());
  CHECK(iconv_charset("utf-8*en") == "UTF-8");
}

TEST_CASE("to_utf8 converts and never returns invalid UTF-8") {
  CHECK(to_utf8("\xD6\xD0\xCE\xC4", "gb2312") == "中文");
  CHECK(to_utf8("\x80", "iso-8859-1") == "€");  // windows-1252, not C1 control
  CHECK(to_utf8("\xc3\xa9", "") == "é");        // undeclared, valid UTF-8
  CHECK(to_utf8("\xe9t\xe9", "") == "été");     // undeclared, not UTF-8 -> windows-1252
  CHECK(to_utf8("abc", "x-no-such-charset") == "abc");
  bool replaced = false;
  std::string s = to_utf8("a\xD6", "gb2312", &replaced);  // truncated double-byte char
  CHECK(replaced);
  CHECK(is_valid_utf8(s));
  CHECK(s == "a\xEF\xBF\xBD");
}

TEST_CASE("utf8 validation and sanitising") {
  CHECK(is_valid_utf8("héllo 中文 😀"));
  CHECK_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong
  CHECK_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  CHECK_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // > U+10FFFF
  CHECK(sanitize_utf8("a\xFFz") == "a\xEF\xBF\xBDz");
  CHECK(utf8_prefix("中文", 4) == "中");
}

// The validator skips eight ASCII bytes at a time: a bad byte must be found wherever it sits
// relative to those words, including in the tail shorter than a word.
TEST_CASE("utf8 validation finds a bad byte at every offset of a long ASCII run") {
  const std::string ascii(37, 'a');
  for (std::size_t pos = 0; pos <= ascii.size(); ++pos) {
    CAPTURE(pos);
    std::string good = ascii;
    good.insert(pos, "\xE2\x82\xAC");  // U+20AC, valid
    CHECK(is_valid_utf8(good));
    CHECK(sanitize_utf8(good) == good);
    for (std::string bad : {"\xFF", "\xC3", "\xE2\x82", "\xED\xA0\x80"}) {
      std::string s = ascii;
      s.insert(pos, bad);
      CHECK_FALSE(is_valid_utf8(s));
      std::string clean = sanitize_utf8(s);
      CHECK(is_valid_utf8(clean));
      CHECK(clean.substr(0, pos) == ascii.substr(0, pos));
      CHECK(clean.substr(pos, 3) == "\xEF\xBF\xBD");
      CHECK(to_utf8(s, "utf-8") == clean);
    }
  }
}

TEST_CASE("RFC 2047 decoding") {
  CHECK(decode_rfc2047("=?UTF-8?Q?Caf=C3=A9_au_lait?=") == "Café au lait");
  CHECK(decode_rfc2047("=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=") ==
        "éé");  // space between words dropped
  CHECK(decode_rfc2047("Re: =?utf-8?q?a?= and =?utf-8?q?b?=") == "Re: a and b");
  CHECK(decode_rfc2047("=?koi8-r?B?8NLJ18XU?=") == "Привет");
  CHECK(decode_rfc2047("=?ISO-2022-JP?B?GyRCMnE1RCRON28bKEI=?=") == "会議の件");
  CHECK(decode_rfc2047("=?utf-8?B?not closed") == "=?utf-8?B?not closed");
  CHECK(decode_rfc2047("=?bogus-charset?Q?abc?=") == "abc");
  CHECK(decode_rfc2047("=?utf-8?B?5Lg=?==?utf-8?B?reaWhw==?=") == "中文");  // no space at all
}

TEST_CASE("address header pre-decoding keeps the grammar") {
  CHECK(predecode_address_header("=?utf-8?Q?Doe=2C_Jane?= <j@x>") == "\"Doe, Jane\" <j@x>");
  CHECK(predecode_address_header("\"=?utf-8?Q?a=22b?=\" <j@x>") == "\"a\\\"b\" <j@x>");
  CHECK(predecode_address_header("j@x (=?utf-8?Q?(c)?=)") == "j@x (\\(c\\))");
}

TEST_CASE("decode_rfc2047: many unterminated encoded words take linear time") {
  std::string header;
  for (int i = 0; i < 50000; ++i) {
    header += "=?x?B?a";
  }
  auto t0 = std::chrono::steady_clock::now();
  CHECK(decode_rfc2047(header) == header);  // nothing to decode: kept as written
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  // encoded-text has no '?': a word ends at its first one
  CHECK(decode_rfc2047("=?utf-8?q?a?b?= x") == "=?utf-8?q?a?b?= x");
  CHECK(decode_rfc2047("=?utf-8?q?a?=") == "a");
}
