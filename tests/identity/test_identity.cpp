#include <cstdint>
#include <utility>

#include <doctest/doctest.h>

#include "core/regex.hpp"

#include "routing/identity.hpp"
#include "routing/identity_internal.hpp"
#include "routing/identity_links.hpp"

namespace {

// "type:value" of an ok result, "withheld", or "invalid: <error>": one string to compare.
std::string canon(std::string_view type, std::string_view raw, std::string_view region = "US",
                  std::string_view mastodon_domain = {}) {
  const sb::Canonical c = sb::canonicalize(type, raw, region, mastodon_domain);
  if (c.withheld()) {
    return "withheld";
  }
  if (!c.ok()) {
    return "invalid: " + c.error;
  }
  return c.type + ":" + c.value;
}

}  // namespace

TEST_CASE("email: trimmed and lower-cased") {
  CHECK(canon("email", "ann@example.com") == "email:ann@example.com");
  CHECK(canon("email", "  Ann.Lee@Example.COM \t") == "email:ann.lee@example.com");
  CHECK(canon("email", "mailto:ann@example.com") == "email:ann@example.com");
  CHECK(canon("email", "ann+tag@sub.example.co.uk") == "email:ann+tag@sub.example.co.uk");
  // Non-ASCII passes through unchanged (only ASCII is case-folded).
  CHECK(canon("email", "J\xC3\xBCrgen@Example.de") == "email:j\xC3\xBCrgen@example.de");
}

TEST_CASE("email: anything but a raw address is refused") {
  for (const char* bad : {"", "ann", "@example.com", "ann@", "ann@@example.com", "a@b@c.com",
                          "ann @example.com", "ann,lee@example.com", "ann@.example.com",
                          "ann@example..com", "ann@example.com.", "a\x01@example.com"}) {
    CAPTURE(std::string(bad));
    CHECK(canon("email", bad) == "invalid: not a valid email address");
  }
  // A display name, or a list: refused too, saying what to give instead.
  CHECK(canon("email", "Ann Lee <Ann@Example.com>") ==
        "invalid: not a valid email address (give the address alone: ann@example.com)");
  CHECK(canon("email", "<ann@example.com>") ==
        "invalid: not a valid email address (give the address alone: ann@example.com)");
  CHECK(canon("email", "\"Lee, Ann\" <ann@>") ==
        "invalid: not a valid email address (give the address alone, without a name or <>)");
  for (const char* list : {"ann@example.com, bob@example.com", "ann@example.com;bob@example.com",
                           "ann@example.com bob@example.com"}) {
    CAPTURE(std::string(list));
    CHECK(canon("email", list) == "invalid: not a valid email address (one address only)");
  }
  CHECK_FALSE(sb::canonical_email(std::string(65, 'a') + "@example.com"));
  CHECK(sb::canonical_email("BOB@EXAMPLE.COM") == "bob@example.com");
}

TEST_CASE("email: invisible padding a paste leaves is trimmed at both ends") {
  // NBSP (web forms, spreadsheets), zero-width space, BOM, NEL, ideographic space, narrow NBSP.
  for (const char* pad : {"\xC2\xA0", "\xE2\x80\x8B", "\xEF\xBB\xBF", "\xC2\x85", "\xE3\x80\x80",
                          "\xE2\x80\xAF", " \xC2\xA0\t"}) {
    CAPTURE(std::string(pad));
    CHECK(canon("email", std::string("Ann@Example.com") + pad) == "email:ann@example.com");
    CHECK(canon("email", std::string(pad) + "ann@example.com") == "email:ann@example.com");
    CHECK(canon("email", std::string(pad) + "ann@example.com" + pad + pad) ==
          "email:ann@example.com");
    CHECK(sb::canonical_email(std::string("ann@example.com") + pad) == "ann@example.com");
  }
  // Internationalised addresses keep their UTF-8 local part; the domain takes its ASCII form.
  CHECK(canon("email", "\xC2\xA0J\xC3\xBCrgen@B\xC3\xBC\x63her.de\xE2\x80\x8B") ==
        "email:j\xC3\xBCrgen@xn--bcher-kva.de");
  CHECK(canon("email",
              "\xE7\x94\xA8\xE6\x88\xB7@\xE4\xBE\x8B\xE5\xAD\x90.\xE5\x85\xAC\xE5\x8F\xB8") ==
        "email:\xE7\x94\xA8\xE6\x88\xB7@xn--fsqu00a.xn--55qx5d");
}

TEST_CASE("email: an internationalised domain has one form, its ASCII one") {
  // As a file gives it, as GMime decodes it, in upper case (Unicode and ASCII).
  for (const char* raw : {"ann@xn--bcher-kva.de", "ann@b\xC3\xBC\x63her.de",
                          "Ann@B\xC3\x9C\x43HER.DE", "ann@XN--BCHER-KVA.DE"}) {
    CAPTURE(raw);
    CHECK(canon("email", raw) == "email:ann@xn--bcher-kva.de");
  }
  // A UTF-8 local part keeps its case: only ASCII letters are lower-cased.
  CHECK(canon("email", "\xC3\x9C\x62\x65r@B\xC3\xBC\x63her.de") ==
        "email:\xC3\x9C\x62\x65r@xn--bcher-kva.de");
  // A domain IDNA has no form for (an emoji) is refused, saying why.
  CHECK(canon("email", "ann@\xF0\x9F\x98\x80.com")
            .starts_with("invalid: not a valid email address (its domain is no valid "
                         "internationalised domain name: "));
}

TEST_CASE("email: ZWNJ and ZWJ inside a word of a non-Latin script are kept") {
  // Persian "mi-shavad" with its ZWNJ, in an IDN domain and in a UTF-8 local part.
  const std::string word = "\xD9\x85\xDB\x8C\xE2\x80\x8C\xD8\xB4\xD9\x88\xD8\xAF";
  CHECK(canon("email", "info@" + word + ".ir") == "email:info@xn--ugbj4cn27d652j.ir");
  CHECK(canon("email", word + "@example.ir") == "email:" + word + "@example.ir");
  // Devanagari KA, VIRAMA, ZWJ, SSA.
  const std::string ksha = "\xE0\xA4\x95\xE0\xA5\x8D\xE2\x80\x8D\xE0\xA4\xB7";
  CHECK(canon("email", ksha + "@example.in") == "email:" + ksha + "@example.in");
  // Next to a Latin letter, at an end of a word, or doubled, they only hide a look-alike.
  for (const std::string bad :
       {"jos\xC3\xA9\xE2\x80\x8D@example.com", "m\xC3\xBCl\xE2\x80\x8Cler@example.de",
        "info@\xD9\x85\xDB\x8C\xE2\x80\x8C.ir",
        "\xD9\x85\xE2\x80\x8C\xE2\x80\x8C\xD8\xB4@example.ir"}) {
    CAPTURE(bad);
    CHECK(canon("email", bad).starts_with("invalid: "));
  }
}

TEST_CASE("identity: bytes that start no UTF-8 sequence are not decoded as one") {
  // FF BB BF is not a BOM (EF BB BF is): nothing to trim, and no format character inside.
  CHECK(sb::identity_detail::decode_utf8("\xFF\xBB\xBF").len == 0);
  CHECK(sb::identity_detail::decode_utf8("\xED\xA0\x80").len == 0);  // a surrogate
  CHECK(sb::identity_detail::decode_utf8("\xEF\xBB\xBF").cp == 0xFEFF);
}

TEST_CASE("email: controls and invisible format characters inside are refused, named") {
  const std::pair<const char*, const char*> cases[] = {
      {"ann\xE2\x80\x8B@example.com", "invisible format character U+200B"},  // zero-width space
      {"ann@exa\xE2\x80\x8Cmple.com", "invisible format character U+200C"},  // ZWNJ
      {"ann@exa\xE2\x80\x8Dmple.com", "invisible format character U+200D"},  // ZWJ
      {"ann\xE2\x81\xA0@example.com", "invisible format character U+2060"},  // word joiner
      {"ann\xEF\xBB\xBF@example.com", "invisible format character U+FEFF"},  // BOM
      {"\xE2\x80\xAE"
       "ann@example.com",
       "invisible format character U+202E"},  // RLO
      {"ann@example.com\xE2\x80\xAA", "invisible format character U+202A"},
      {"ann\xE2\x81\xA6@example.com", "invisible format character U+2066"},
      {"ann@example.com\xE2\x81\xA9", "invisible format character U+2069"},
      {"an\xC2\xADn@example.com", "invisible format character U+00AD"},   // soft hyphen
      {"ann\xC2\x85@example.com", "invisible control character U+0085"},  // NEL, C1
      {"ann\xC2\x9B@example.com", "invisible control character U+009B"},  // CSI, C1
      {"ann@example.com\xC2\x80", "invisible control character U+0080"},
      {"ann\xC2\xA0@example.com", "space character U+00A0"},
      {"ann@example\xE3\x80\x80.com", "space character U+3000"},
  };
  for (const auto& [raw, what] : cases) {
    CAPTURE(std::string(raw));
    CHECK(canon("email", raw) ==
          std::string("invalid: not a valid email address (it contains the ") + what + ")");
    CHECK_FALSE(sb::canonical_email(raw));
  }
}

TEST_CASE("phone and handle: invisible padding a paste leaves is trimmed too") {
  CHECK(canon("phone", "\xC2\xA0+1 415 555 0100\xC2\xA0") == "phone:+14155550100");
  CHECK(canon("phone", "\xEF\xBB\xBF(415) 555-0100\xE2\x80\x8B") == "phone:+14155550100");
  CHECK(canon("whatsapp", "14155550100\xC2\xA0") == "whatsapp:+14155550100");
  CHECK(canon("x", "\xC2\xA0@AnnLee\xC2\xA0") == "x_handle:annlee");
  CHECK(canon("x", "2244994999\xE2\x80\x8B") == "x:2244994999");
  CHECK(canon("telegram_handle", "\xEF\xBB\xBF@ann_lee") == "telegram_handle:ann_lee");
  CHECK(canon("mastodon", "\xC2\xA0@ann@mastodon.example\xC2\xA0") ==
        "mastodon:ann@mastodon.example");
  // Inside a handle an invisible character is no username character, as before.
  CHECK(canon("x_handle", "ann\xE2\x80\x8Blee") == "invalid: not a valid username");
}

TEST_CASE("phone: national and international forms with a US default") {
  CHECK(canon("phone", "+14155550100") == "phone:+14155550100");
  CHECK(canon("phone", "+1 (415) 555-0100") == "phone:+14155550100");
  CHECK(canon("phone", "(415) 555-0100") == "phone:+14155550100");
  CHECK(canon("phone", "415.555.0100") == "phone:+14155550100");
  CHECK(canon("phone", "1-415-555-0100") == "phone:+14155550100");
  CHECK(canon("phone", "011 44 20 7946 0958") == "phone:+442079460958");  // US exit code
  CHECK(canon("phone", "tel:+1-415-555-0100") == "phone:+14155550100");
  CHECK(canon("phone", "+1 415 555 0100 ext. 12") == "phone:+14155550100");
  CHECK(canon("phone", "+44 20 7946 0958") == "phone:+442079460958");
}

TEST_CASE("phone: national forms read in GB and DE") {
  CHECK(canon("phone", "020 7946 0958", "GB") == "phone:+442079460958");
  CHECK(canon("phone", "07700 900123", "GB") == "phone:+447700900123");
  CHECK(canon("phone", "00 1 415 555 0100", "GB") == "phone:+14155550100");
  CHECK(canon("phone", "030 1234567", "DE") == "phone:+49301234567");
  CHECK(canon("phone", "+49 (0)30 1234567", "DE") == "phone:+49301234567");
  CHECK(canon("phone", "0151 23456789", "DE") == "phone:+4915123456789");
  // The same digits mean different numbers in different regions.
  CHECK(canon("phone", "(415) 555-0100", "GB") != canon("phone", "(415) 555-0100", "US"));
}

TEST_CASE("phone: garbage, wrong lengths and missing regions are invalid") {
  CHECK(canon("phone", "12ab").rfind("invalid: not a valid phone number", 0) == 0);
  CHECK(canon("phone", "hello").rfind("invalid: not a valid phone number", 0) == 0);
  CHECK(canon("phone", "555-0100") ==
        "invalid: not a valid phone number (a local number without area code)");
  CHECK(canon("phone", "+1 415 555 01000") == "invalid: not a valid phone number (too long)");
  CHECK(canon("phone", "+1 415 55") == "invalid: not a valid phone number (too short)");
  CHECK(canon("phone", "+999 123456789").rfind("invalid: not a valid phone number", 0) == 0);
  // No default region: only international forms work.
  CHECK(canon("phone", "(415) 555-0100", "") ==
        "invalid: not a valid phone number (unknown country code, or no country code and no "
        "default region)");
  CHECK(canon("phone", "+14155550100", "") == "phone:+14155550100");
  CHECK(sb::canonical_phone("0044 20 7946 0958", "GB") == "+442079460958");
  CHECK_FALSE(sb::canonical_phone("anonymous", "US"));
}

TEST_CASE("phone: withheld callers are a distinct result") {
  for (const char* w :
       {"", "  ", "anonymous", "Anonymous", "RESTRICTED", "unknown", "private", "withheld",
        "unavailable", "blocked", "+266696687", "266696687", "+7378742833", "+8656696", "+2562533",
        "+86282452253", "sip:anonymous@anonymous.invalid", "anonymous@anonymous.invalid"}) {
    CAPTURE(std::string(w));
    CHECK(sb::is_withheld_number(w));
    CHECK(canon("phone", w) == "withheld");
    CHECK_FALSE(sb::canonicalize("phone", w, "US").identity());
  }
  for (const char* real : {"+14155550100", "+2666966870", "266696688", "anonymously"}) {
    CAPTURE(std::string(real));
    CHECK_FALSE(sb::is_withheld_number(real));
  }
}

TEST_CASE("phone: keypad sentinels without '+' are read as national numbers where possible") {
  // The digits of Twilio's sentinels can be a real subscriber's national number: only the
  // '+' form is always withheld.
  CHECK(canon("phone", "7378742833", "US") == "phone:+17378742833");
  CHECK(canon("phone", "(737) 874-2833", "US") == "phone:+17378742833");
  CHECK(canon("phone", "266696687", "PT") == "phone:+351266696687");
  CHECK(canon("phone", "tel:266696687", "PT") == "phone:+351266696687");
  CHECK_FALSE(sb::is_withheld_number("7378742833", "US"));
  CHECK_FALSE(sb::is_withheld_number("266696687", "PT"));
  for (const char* region : {"US", "PT", "GB", "CN"}) {
    CAPTURE(region);
    for (const char* sentinel :
         {"+266696687", "+7378742833", "+8656696", "+2562533", "+86282452253", "tel:+266696687"}) {
      CAPTURE(sentinel);
      CHECK(canon("phone", sentinel, region) == "withheld");
      CHECK(sb::is_withheld_number(sentinel, region));
    }
  }
  // Where the bare digits cannot be a number of the region, they are still the sentinel.
  CHECK(canon("phone", "266696687", "US") == "withheld");
  CHECK(canon("phone", "2562533", "US") == "withheld");
}

TEST_CASE("whatsapp: wa_id digits that are no number of the default region are international") {
  CHECK(canon("whatsapp", "16505551234", "GB") == "whatsapp:+16505551234");
  CHECK(canon("whatsapp", "447700900123", "US") == "whatsapp:+447700900123");
  CHECK(canon("whatsapp", "+49 151 23456789", "US") == "whatsapp:+4915123456789");
  CHECK(canon("whatsapp", "12ab").rfind("invalid: not a valid phone number", 0) == 0);
  CHECK(canon("whatsapp", "447700900123", "") == "whatsapp:+447700900123");
}

TEST_CASE("whatsapp: a number without '+' in a file or the API is read as a phone of the region") {
  // Not +31 25550100: written as people write phone numbers, in the default region.
  CHECK(canon("whatsapp", "312-555-0100", "US") == "whatsapp:+13125550100");
  CHECK(canon("whatsapp", "(312) 555-0100", "US") == "whatsapp:+13125550100");
  CHECK(canon("whatsapp", "07700 900123", "GB") == "whatsapp:+447700900123");
  CHECK(canon("whatsapp", "14155550100", "US") == "whatsapp:+14155550100");
  // Digits that are a number of the region and a valid international one: refused, both named.
  CHECK(canon("whatsapp", "6591234567", "US") ==
        "invalid: ambiguous WhatsApp number without '+': +16591234567 as a number of US, or "
        "+6591234567 as an international one (a wa_id); write it with '+' and the country code");
  CHECK(canon("whatsapp", "+65 9123 4567", "US") == "whatsapp:+6591234567");
  // No default region: a national form names no number.
  CHECK(canon("whatsapp", "312-555-0100", "") ==
        "invalid: not a valid phone number (unknown country code, or no country code and no "
        "default region); write a WhatsApp number with '+' and the country code");
}

TEST_CASE("mastodon: every written form becomes user@domain") {
  CHECK(canon("mastodon", "@ann@social.example") == "mastodon:ann@social.example");
  CHECK(canon("mastodon", "ann@social.example") == "mastodon:ann@social.example");
  CHECK(canon("mastodon", " @Ann_Lee@Social.Example ") == "mastodon:ann_lee@social.example");
  CHECK(canon("mastodon", "acct:ann@social.example") == "mastodon:ann@social.example");
  CHECK(canon("mastodon", "https://social.example/@Ann") == "mastodon:ann@social.example");
  CHECK(canon("mastodon", "@ann", "US", "mastodon.example") == "mastodon:ann@mastodon.example");
  CHECK(canon("mastodon", "ann", "US", "https://Mastodon.example/") ==
        "mastodon:ann@mastodon.example");
  // A bare username needs the instance domain.
  CHECK(canon("mastodon", "@ann").rfind("invalid: not a Mastodon address", 0) == 0);
  for (const char* bad : {"", "@", "ann@", "@ann@", "a b@social.example", "ann@social.example@x",
                          "ann@bad_host", "https://social.example/ann"}) {
    CAPTURE(std::string(bad));
    CHECK(canon("mastodon", bad).rfind("invalid: ", 0) == 0);
  }
}

TEST_CASE("x, telegram, instagram: digits are ids, anything else a handle") {
  CHECK(canon("x", "2244994945") == "x:2244994945");
  CHECK(canon("x", "annlee") == "x_handle:annlee");
  CHECK(canon("x", "@AnnLee") == "x_handle:annlee");
  CHECK(canon("x_handle", "@AnnLee") == "x_handle:annlee");
  CHECK(canon("telegram", "123456789") == "telegram:123456789");
  CHECK(canon("telegram", "@Ann_Lee") == "telegram_handle:ann_lee");
  CHECK(canon("instagram", "ann.lee") == "instagram_handle:ann.lee");
  CHECK(canon("instagram", "17841400000000000") == "instagram:17841400000000000");
  CHECK(canon("x", "ann.lee") == "invalid: not a valid username");  // '.' is not allowed on X
  CHECK(canon("x", "ann lee") == "invalid: not a valid username");
  CHECK(canon("x", "@") == "invalid: not a valid username");
  CHECK(canon("messenger", "6543210987654321") == "messenger:6543210987654321");
  CHECK(canon("messenger", "annlee") == "invalid: not a valid user id (expected digits)");
}

TEST_CASE("linked identities: a platform's username as sent is the handle a file gives") {
  // What the X and Telegram channels store beside the id, and what an import canonicalises.
  const std::pair<const char*, const char*> sent_usernames[] = {
      {"x", "AnnLee"}, {"x", "@AnnLee"}, {"telegram", "Ann_Lee"}, {"instagram", "ann.lee"}};
  for (const auto& sent_by : sent_usernames) {
    const char* platform = sent_by.first;
    const char* sent = sent_by.second;
    CAPTURE(sent);
    const sb::IdentityLink* link = sb::link_from(platform);
    REQUIRE(link != nullptr);
    CHECK(link->by_username);
    CHECK(sb::link_to(link->linked_type) == link);
    CHECK(canon(platform, sent) == std::string(link->linked_type) + ":" + sb::username_key(sent));
  }
  // A WhatsApp id is the number itself.
  const sb::IdentityLink* wa = sb::link_from("whatsapp");
  REQUIRE(wa != nullptr);
  CHECK(wa->linked_type == "phone");
  CHECK_FALSE(wa->by_username);
  CHECK(sb::link_to("phone") == wa);
  CHECK(canon("whatsapp", "14155550111") == "whatsapp:+14155550111");
  CHECK(canon("phone", "+1 415 555 0111") == "phone:+14155550111");
  // No link: e-mail, Mastodon (its identity is the account), Messenger (no usernames).
  for (const char* t : {"email", "mastodon", "messenger", "x_handle"}) {
    CAPTURE(t);
    CHECK(sb::link_from(t) == nullptr);
  }
}

TEST_CASE("unknown types are invalid, and identity() carries the canonical pair") {
  CHECK(canon("fax", "123") == "invalid: unknown identity type");
  const auto id = sb::canonicalize("email", "Ann@Example.com", "US").identity();
  REQUIRE(id);
  CHECK(id->type == "email");
  CHECK(id->value == "ann@example.com");
}

TEST_CASE("phone: the North American fast path agrees with libphonenumber") {
  // Shapes around the fast path's edges: 9-12 digits, any first digit, a '+' or not, random
  // punctuation, four default regions. Deterministic, so a failure reproduces.
  std::uint32_t seed = 12345;
  auto rnd = [&](std::uint32_t n) {
    seed = seed * 1664525u + 1013904223u;
    return (seed >> 8) % n;
  };
  const char* regions[] = {"US", "CA", "GB", ""};
  const char punct[] = {' ', '-', '.', '(', ')'};
  int fast_shaped = 0;
  for (int i = 0; i < 4000; ++i) {
    std::string raw = rnd(3) == 0 ? "+" : "";
    const int digits = 9 + static_cast<int>(rnd(4));
    for (int d = 0; d < digits; ++d) {
      if (rnd(4) == 0) {
        raw.push_back(punct[rnd(5)]);
      }
      raw.push_back(static_cast<char>('0' + (d == 0 && rnd(2) ? 1 : rnd(10))));
    }
    const std::string region = regions[rnd(4)];
    std::string expected;
    std::string error;
    const bool good = sb::detail::phone_to_e164(raw, region, expected, error);
    const auto got = sb::canonical_phone(raw, region);
    CAPTURE(raw);
    CAPTURE(region);
    CHECK(got.has_value() == good);
    if (good && got) {
      CHECK(*got == expected);
      fast_shaped += expected.rfind("+1", 0) == 0 ? 1 : 0;
    }
  }
  CHECK(fast_shaped > 500);  // the generator really exercised North American numbers
}

TEST_CASE("rule regexes: case-insensitive PCRE2, ECMAScript escapes, limits as a value") {
  CHECK(sb::Regex("refund|chargeback").search("I want a REFUND") == true);
  CHECK(sb::Regex("^escalate").search("please escalate") == false);
  CHECK(sb::Regex("caf\\u00e9").search("Caf\xC3\xA9 au lait") == true);  // \uhhhh as before
  CHECK(sb::Regex("[^]").search("x") == true);
  CHECK(sb::Regex("order").search("\xFF\xFE order") == true);  // broken UTF-8 is skipped over
  std::string why;
  CHECK_FALSE(sb::Regex("(a+)+b").search(std::string(40, 'a') + "!b", &why).has_value());
  CHECK(why.find("limit") != std::string::npos);
  CHECK(sb::Regex("order.*late").search("order " + std::string(1 << 20, 'a') + " late") == true);
  // A group repeated once per character nests a backtracking frame each time: stopped by the
  // 16 MiB heap limit, not after hundreds of MiB kept by the thread's match data.
  why.clear();
  CHECK_FALSE(
      sb::Regex("(.|\\n)*late").search(std::string(1 << 20, 'a') + "late", &why).has_value());
  CHECK(why.find("heap") != std::string::npos);
  CHECK_THROWS_AS(sb::Regex("refund("), std::invalid_argument);
}
