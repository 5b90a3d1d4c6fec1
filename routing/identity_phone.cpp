// Phone numbers and WhatsApp ids to E.164 (libphonenumber), and withheld caller ids.
#include <algorithm>
#include <array>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

#include "routing/identity_internal.hpp"

namespace sb {
namespace {

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;
using namespace identity_detail;

// Why IsPossibleNumber and not IsValidNumber: the runtime is Debian's libphonenumber 8.12
// (metadata from 2022) and will stay that old for the life of the release. IsValidNumber
// rejects numbers from ranges allocated after that (new mobile prefixes appear every month),
// and a customer whose real number is rejected can never be matched. IsPossibleNumber checks
// the country code and the lengths used in that country, which catches typos and garbage
// ("12ab", a missing digit) without depending on fresh range data. It also accepts fictional
// numbers such as +1 415 555 0100, which tests and demos rely on.
const char* phone_reason(PhoneNumberUtil::ErrorType e) {
  switch (e) {
    case PhoneNumberUtil::INVALID_COUNTRY_CODE_ERROR:
      return "unknown country code, or no country code and no default region";
    case PhoneNumberUtil::TOO_SHORT_AFTER_IDD:
    case PhoneNumberUtil::TOO_SHORT_NSN:
      return "too short";
    case PhoneNumberUtil::TOO_LONG_NSN:
      return "too long";
    default:
      return "not a number";
  }
}

const char* phone_reason(PhoneNumberUtil::ValidationResult r) {
  switch (r) {
    case PhoneNumberUtil::IS_POSSIBLE_LOCAL_ONLY:
      return "a local number without area code";
    case PhoneNumberUtil::INVALID_COUNTRY_CODE:
      return "unknown country code";
    case PhoneNumberUtil::TOO_SHORT:
      return "too short";
    case PhoneNumberUtil::TOO_LONG:
      return "too long";
    default:
      return "wrong length for its country";
  }
}

constexpr std::array<std::string_view, 7> kWithheldWords = {
    "anonymous", "restricted", "unknown", "private", "withheld", "unavailable", "blocked"};

// Twilio (and some carriers) put the caller-id-blocked reason into `From` spelled on a phone
// keypad: ANONYMOUS, RESTRICTED, UNKNOWN, BLOCKED, UNAVAILABLE, as "+266696687" and so on.
// With the '+' they are sentinels, not subscriber numbers (only +86282452253 even has a
// possible length, and no Chengdu line has a 7-digit subscriber part). Without it the same
// digits can be a real national number: "7378742833" in the US is (737) 874-2833 and
// "266696687" in Portugal is +351 266 696 687. See classify_withheld.
constexpr std::array<std::string_view, 5> kWithheldKeypad = {"266696687", "7378742833", "8656696",
                                                             "2562533", "86282452253"};

enum class WithheldForm {
  no,
  yes,
  // A keypad sentinel without '+': withheld only when it is not a possible number in the
  // default region (a US "266696687" is 9 digits, so Twilio's sentinel; a Portuguese one is
  // a caller).
  bare_sentinel,
};

WithheldForm classify_withheld(std::string_view raw) {
  std::string_view s = trim(raw);
  if (s.empty()) {
    return WithheldForm::yes;
  }
  for (std::string_view prefix : {std::string_view("tel:"), std::string_view("sip:")}) {
    if (starts_with_nocase(s, prefix)) {
      s.remove_prefix(prefix.size());
    }
  }
  // RFC 3323 section 4.1.1.3: a withheld SIP From is "anonymous@anonymous.invalid".
  if (starts_with_nocase(s, "anonymous@")) {
    return WithheldForm::yes;
  }
  if (s.size() > 12) {  // longer than "+86282452253" and every word above
    return WithheldForm::no;
  }
  const std::string l = lower(s);
  for (std::string_view w : kWithheldWords) {
    if (l == w) {
      return WithheldForm::yes;
    }
  }
  std::string_view digits = l;
  const bool plus = !digits.empty() && digits.front() == '+';
  if (plus) {
    digits.remove_prefix(1);
  }
  for (std::string_view k : kWithheldKeypad) {
    if (digits == k) {
      return plus ? WithheldForm::yes : WithheldForm::bare_sentinel;
    }
  }
  return WithheldForm::no;
}

}  // namespace

// E.164 or an error text; `region` "" means "international only".
bool detail::phone_to_e164(std::string_view raw, std::string_view region, std::string& out,
                           std::string& error) {
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  PhoneNumber number;
  const std::string region_code = region.empty() ? std::string("ZZ") : std::string(region);
  const auto parsed = util.Parse(std::string(raw), region_code, &number);
  if (parsed != PhoneNumberUtil::NO_PARSING_ERROR) {
    error = std::string("not a valid phone number (") + phone_reason(parsed) + ")";
    return false;
  }
  const auto possible = util.IsPossibleNumberWithReason(number);
  if (possible != PhoneNumberUtil::IS_POSSIBLE) {
    error = std::string("not a valid phone number (") + phone_reason(possible) + ")";
    return false;
  }
  // E.164 drops any extension ("ext. 12"): the line, not the desk, identifies the caller.
  util.Format(number, PhoneNumberUtil::E164, &out);
  return true;
}

namespace {

// libphonenumber's Parse spends most of its time in ICU regular expressions (several µs per
// number). The same callers come back again and again, so each thread remembers its recent
// results: a bounded map, emptied when full, so memory stays small and no lock is taken.
struct PhoneMemo {
  static constexpr std::size_t max_entries = 8192;
  std::unordered_map<std::string, std::pair<bool, std::string>> results;  // ok, e164 or error
};

// Fast path for the commonest input, a North American number: "+1 415 555 0100",
// "+14155550100", or with the US default "(415) 555-0100" / "1-415-555-0100". Parse gives the
// same answer for these by its own rules: after dropping punctuation, the '+1' or the US
// national prefix '1' is the country code, US national_prefix_for_parsing ("1") cannot match
// an area code (NANP area codes start with 2-9), nothing else can be an extension or an IDD
// (US: "011"), and 10 digits is the NANP possible length. tests/identity checks the two paths
// agree. Anything else returns false and goes through libphonenumber.
bool nanp_fast_path(std::string_view raw, std::string_view region, std::string& out) {
  char digits[16];
  std::size_t n = 0;
  bool plus = false;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const char c = raw[i];
    if (is_digit(c)) {
      if (n == sizeof digits) {
        return false;
      }
      digits[n++] = c;
    } else if (c == '+' && i == 0) {
      plus = true;
    } else if (c != ' ' && c != '-' && c != '.' && c != '(' && c != ')') {
      return false;
    }
  }
  std::size_t start = 0;
  if (plus || n == 11) {
    if (n != 11 || digits[0] != '1') {
      return false;
    }
    if (!plus && region != "US") {
      return false;
    }
    start = 1;
  } else if (n != 10 || region != "US") {
    return false;
  }
  if (digits[start] < '2') {
    return false;
  }
  out.assign("+1");
  out.append(digits + start, 10);
  return true;
}

bool phone_to_e164_memo(std::string_view raw, std::string_view region, std::string& out,
                        std::string& error) {
  if (nanp_fast_path(raw, region, out)) {
    return true;
  }
  thread_local PhoneMemo memo;
  std::string key;
  key.reserve(region.size() + 1 + raw.size());
  key.append(region).push_back('\x1f');
  key.append(raw);
  if (auto it = memo.results.find(key); it != memo.results.end()) {
    (it->second.first ? out : error) = it->second.second;
    return it->second.first;
  }
  const bool good = detail::phone_to_e164(raw, region, out, error);
  if (memo.results.size() >= PhoneMemo::max_entries) {
    memo.results.clear();
  }
  memo.results.emplace(std::move(key), std::make_pair(good, good ? out : error));
  return good;
}

// The extension `raw` gives ("+1 415 555 0100 ext. 12", "... x12", "...;ext=12"), "" when
// none. A number with one holds a letter, '#', ',' or ';': anything else is not parsed again.
std::string phone_extension(std::string_view raw, std::string_view region) {
  if (std::all_of(raw.begin(), raw.end(), [](char c) {
        return is_digit(c) || c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' ||
               c == '+' || c == '/';
      })) {
    return "";
  }
  const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
  PhoneNumber number;
  if (util.Parse(std::string(raw), region.empty() ? std::string("ZZ") : std::string(region),
                 &number) != PhoneNumberUtil::NO_PARSING_ERROR) {
    return "";
  }
  return number.extension();
}

// `c` (ok) with the note of the extension `raw` gave, if any.
Canonical with_extension_note(Canonical c, std::string_view raw, std::string_view region) {
  if (std::string ext = phone_extension(raw, region); !ext.empty()) {
    c.note = "extension " + ext + " dropped";
  }
  return c;
}

}  // namespace

namespace identity_detail {

Canonical canonical_phone_identity(std::string_view type, std::string_view raw,
                                   std::string_view region) {
  raw = trim(raw);
  const WithheldForm form = classify_withheld(raw);
  if (form == WithheldForm::yes) {
    return Canonical{Canonical::Status::withheld, std::string(type), {}, "withheld number", {}};
  }
  std::string e164;
  std::string error;
  if (!phone_to_e164_memo(raw, region, e164, error)) {
    if (form == WithheldForm::bare_sentinel) {
      return Canonical{Canonical::Status::withheld, std::string(type), {}, "withheld number", {}};
    }
    return invalid(type, std::move(error));
  }
  return with_extension_note(ok(type, std::move(e164)), raw, region);
}

// A WhatsApp number as a customer file, the ingest API or `customers show` gives it. Meta's
// webhook sends the sender as `wa_id`, the international number in digits without '+'
// ("16505551234"), but channels/social/meta.cpp puts the '+' back itself and never comes here.
// People write numbers the way they write phone numbers: "312-555-0100" in a US file is
// +13125550100, not +31 25550100, so a value without '+' is read as a phone of the default
// region. A value of digits only may still be a wa_id copied from Meta ("447700900123" in a US
// file): read as international when it is no number of the region, and refused when it is a
// number of the region and a valid international one too (the two readings name different
// lines, and nothing tells which was meant).
// https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components (contacts.wa_id)
Canonical canonical_whatsapp(std::string_view raw, std::string_view region) {
  raw = trim(raw);
  std::string e164;
  std::string error;
  if (!raw.empty() && raw.front() == '+') {
    if (!phone_to_e164_memo(raw, "", e164, error)) {
      return invalid("whatsapp", std::move(error));
    }
    return with_extension_note(ok("whatsapp", std::move(e164)), raw, "");
  }
  // Region "" reads no national number: the error says there is no default region.
  const bool national = phone_to_e164_memo(raw, region, e164, error);
  if (all_digits(raw)) {
    const std::string plus = "+" + std::string(raw);
    if (!national) {
      // As before for a wa_id: a possible international number is taken.
      std::string international, ignored;
      if (phone_to_e164_memo(plus, "", international, ignored)) {
        return ok("whatsapp", std::move(international));
      }
    } else {
      // Valid, not merely of a possible length, to be called ambiguous: a possible length is
      // all many ten-digit national numbers need to read as some country's.
      const PhoneNumberUtil& util = *PhoneNumberUtil::GetInstance();
      PhoneNumber number;
      std::string international;
      if (util.Parse(plus, "ZZ", &number) == PhoneNumberUtil::NO_PARSING_ERROR &&
          util.IsValidNumber(number)) {
        util.Format(number, PhoneNumberUtil::E164, &international);
      }
      if (!international.empty() && international != e164) {
        return invalid("whatsapp", "ambiguous WhatsApp number without '+': " + e164 +
                                       " as a number of " + std::string(region) + ", or " +
                                       international +
                                       " as an international one (a wa_id); write it with '+' "
                                       "and the country code");
      }
    }
  }
  if (national) {
    return with_extension_note(ok("whatsapp", std::move(e164)), raw, region);
  }
  return invalid("whatsapp",
                 std::move(error) + "; write a WhatsApp number with '+' and the country code");
}
}  // namespace identity_detail

bool is_withheld_number(std::string_view raw, std::string_view default_region) {
  switch (classify_withheld(raw)) {
    case WithheldForm::yes:
      return true;
    case WithheldForm::bare_sentinel: {
      std::string e164;
      std::string error;
      return !phone_to_e164_memo(trim(raw), default_region, e164, error);
    }
    case WithheldForm::no:
      break;
  }
  return false;
}

bool is_phone_region(std::string_view region) {
  static const std::set<std::string> regions = [] {
    std::set<std::string> out;
    PhoneNumberUtil::GetInstance()->GetSupportedRegions(&out);
    return out;
  }();
  return regions.find(std::string(region)) != regions.end();
}

std::optional<std::string> canonical_phone(std::string_view raw, std::string_view default_region) {
  Canonical c = canonical_phone_identity("phone", raw, default_region);
  if (!c.ok()) {
    return std::nullopt;
  }
  return std::move(c.value);
}

}  // namespace sb
