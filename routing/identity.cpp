#include "routing/identity.hpp"

#include <array>
#include <string>
#include <unordered_map>
#include <utility>

#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

namespace sb {
namespace {

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_space(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

// ASCII-only lower-casing: non-ASCII UTF-8 bytes pass through untouched, so the result stays
// valid UTF-8 and the rule is the same on every locale.
std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = to_lower(c);
  }
  return out;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (to_lower(s[i]) != prefix[i]) {
      return false;
    }
  }
  return true;
}

bool all_digits(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!is_digit(c)) {
      return false;
    }
  }
  return true;
}

Canonical ok(std::string_view type, std::string value) {
  return Canonical{Canonical::Status::ok, std::string(type), std::move(value), {}};
}
Canonical invalid(std::string_view type, std::string error) {
  return Canonical{Canonical::Status::invalid, std::string(type), {}, std::move(error)};
}

// A hostname as it appears after '@' in an email or fediverse address: no empty labels.
bool plausible_domain(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.' ||
      d.find("..") != std::string_view::npos) {
    return false;
  }
  return true;
}

// ---- phone ----------------------------------------------------------------------------------

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

using detail::phone_to_e164;

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
  const bool good = phone_to_e164(raw, region, out, error);
  if (memo.results.size() >= PhoneMemo::max_entries) {
    memo.results.clear();
  }
  memo.results.emplace(std::move(key), std::make_pair(good, good ? out : error));
  return good;
}

Canonical canonical_phone_identity(std::string_view type, std::string_view raw,
                                   std::string_view region) {
  raw = trim(raw);
  if (is_withheld_number(raw)) {
    return Canonical{Canonical::Status::withheld, std::string(type), {}, "withheld number"};
  }
  std::string e164;
  std::string error;
  if (!phone_to_e164_memo(raw, region, e164, error)) {
    return invalid(type, std::move(error));
  }
  return ok(type, std::move(e164));
}

// WhatsApp Cloud API sends the sender as `wa_id`, the full international number in digits
// without '+' (e.g. "16505551234"); the default region must not apply to it.
// https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components (contacts.wa_id)
Canonical canonical_whatsapp(std::string_view raw) {
  raw = trim(raw);
  std::string international;
  if (!raw.empty() && is_digit(raw.front())) {
    international = "+";
  }
  international.append(raw);
  std::string e164;
  std::string error;
  if (!phone_to_e164_memo(international, "", e164, error)) {
    return invalid("whatsapp", std::move(error));
  }
  return ok("whatsapp", std::move(e164));
}

// ---- mastodon -------------------------------------------------------------------------------

bool valid_fediverse_user(std::string_view u) {
  // Mastodon allows [A-Za-z0-9_]; other fediverse servers (Pleroma, Misskey, GoToSocial) also
  // use '.' and '-', and their users mention us too.
  if (u.empty() || u.size() > 100) {
    return false;
  }
  for (char c : u) {
    if (!is_alnum(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

bool valid_host(std::string_view h) {
  if (!plausible_domain(h)) {
    return false;
  }
  for (char c : h) {
    if (!is_alnum(c) && c != '.' && c != '-' && c != ':') {
      return false;
    }
  }
  return true;
}

// "https://mastodon.example/" -> "mastodon.example"; a plain host passes through.
std::string_view strip_url(std::string_view s) {
  if (starts_with_nocase(s, "https://")) {
    s.remove_prefix(8);
  } else if (starts_with_nocase(s, "http://")) {
    s.remove_prefix(7);
  }
  while (!s.empty() && s.back() == '/') {
    s.remove_suffix(1);
  }
  return s;
}

// Accepts "@user@domain", "user@domain", "acct:user@domain", the profile URL
// "https://domain/@user", and "@user" / "user" when the instance domain is known.
Canonical canonical_mastodon(std::string_view raw, std::string_view default_domain) {
  std::string_view s = trim(raw);
  std::string_view user;
  std::string_view domain;
  if (starts_with_nocase(s, "https://") || starts_with_nocase(s, "http://")) {
    std::string_view rest = strip_url(s);
    const auto slash = rest.find("/@");
    if (slash == std::string_view::npos) {
      return invalid("mastodon", "not a Mastodon address (expected https://domain/@user)");
    }
    domain = rest.substr(0, slash);
    user = rest.substr(slash + 2);
  } else {
    if (starts_with_nocase(s, "acct:")) {
      s.remove_prefix(5);
    }
    if (!s.empty() && s.front() == '@') {
      s.remove_prefix(1);
    }
    const auto at = s.find('@');
    if (at == std::string_view::npos) {
      user = s;
      domain = strip_url(trim(default_domain));
      if (domain.empty()) {
        return invalid("mastodon", "not a Mastodon address (expected user@domain)");
      }
    } else {
      user = s.substr(0, at);
      domain = s.substr(at + 1);
    }
  }
  if (!valid_fediverse_user(user) || !valid_host(domain)) {
    return invalid("mastodon", "not a Mastodon address (expected user@domain)");
  }
  // Mastodon resolves usernames case-insensitively (accounts are unique on lower(username)),
  // and domains are case-insensitive by DNS rules, so both are lower-cased.
  std::string value = lower(user);
  value += '@';
  value += lower(domain);
  return ok("mastodon", std::move(value));
}

// ---- platform ids and handles ---------------------------------------------------------------

bool valid_handle(std::string_view h, bool allow_dot) {
  if (h.empty() || h.size() > 64) {
    return false;
  }
  for (char c : h) {
    if (!is_alnum(c) && c != '_' && !(allow_dot && c == '.')) {
      return false;
    }
  }
  return true;
}

// `x_handle` etc.: one optional leading '@', then the platform's username characters.
// X: [A-Za-z0-9_]{1,15}; Telegram: [A-Za-z0-9_]{5,32}; Instagram also allows '.'. The checks
// are looser on length so an old or unusual name is kept rather than rejected.
Canonical canonical_handle(std::string_view handle_type, std::string_view raw) {
  std::string_view s = trim(raw);
  if (!s.empty() && s.front() == '@') {
    s.remove_prefix(1);
  }
  const bool allow_dot = handle_type == "instagram_handle";
  if (!valid_handle(s, allow_dot)) {
    return invalid(handle_type, "not a valid username");
  }
  return ok(handle_type, lower(s));
}

// x, telegram, instagram: digits are the stable user id; anything else is read as a username
// and stored under `<type>_handle` (see identity.hpp for why). messenger: ids only.
Canonical canonical_platform(std::string_view type, std::string_view raw) {
  std::string_view s = trim(raw);
  if (all_digits(s)) {
    if (s.size() > 30) {
      return invalid(type, "not a valid user id (too long)");
    }
    return ok(type, std::string(s));
  }
  if (type == "messenger") {
    return invalid(type, "not a valid user id (expected digits)");
  }
  return canonical_handle(std::string(type) + "_handle", s);
}

constexpr std::array<std::string_view, 7> kWithheldWords = {
    "anonymous", "restricted", "unknown", "private", "withheld", "unavailable", "blocked"};

// Twilio (and some carriers) put the caller-id-blocked reason into `From` spelled on a phone
// keypad: ANONYMOUS, RESTRICTED, UNKNOWN, BLOCKED, UNAVAILABLE. They are sentinels, not
// subscriber numbers (only +86282452253 even has a possible length, and no Chengdu line has
// a 7-digit subscriber part), so treating them as withheld cannot hide a real caller.
constexpr std::array<std::string_view, 5> kWithheldKeypad = {"266696687", "7378742833", "8656696",
                                                             "2562533", "86282452253"};

}  // namespace

std::optional<Identity> Canonical::identity() const {
  if (!ok()) {
    return std::nullopt;
  }
  Identity id;
  id.type = type;
  id.value = value;
  return id;
}

bool is_withheld_number(std::string_view raw) {
  std::string_view s = trim(raw);
  if (s.empty()) {
    return true;
  }
  for (std::string_view prefix : {std::string_view("tel:"), std::string_view("sip:")}) {
    if (starts_with_nocase(s, prefix)) {
      s.remove_prefix(prefix.size());
    }
  }
  // RFC 3323 section 4.1.1.3: a withheld SIP From is "anonymous@anonymous.invalid".
  if (starts_with_nocase(s, "anonymous@")) {
    return true;
  }
  if (s.size() > 12) {  // longer than "+86282452253" and every word above
    return false;
  }
  const std::string l = lower(s);
  for (std::string_view w : kWithheldWords) {
    if (l == w) {
      return true;
    }
  }
  std::string_view digits = l;
  if (!digits.empty() && digits.front() == '+') {
    digits.remove_prefix(1);
  }
  for (std::string_view k : kWithheldKeypad) {
    if (digits == k) {
      return true;
    }
  }
  return false;
}

std::optional<std::string> canonical_email(std::string_view raw) {
  std::string_view s = trim(raw);
  if (starts_with_nocase(s, "mailto:")) {
    s.remove_prefix(7);
  }
  const auto at = s.find('@');
  if (at == std::string_view::npos || at == 0 || at > 64 || s.size() > 254 ||
      s.find('@', at + 1) != std::string_view::npos) {
    return std::nullopt;
  }
  // Raw addresses only: whitespace, controls and the RFC 5322 specials that only appear in
  // display names, quoted local parts or lists ("Ann <a@x>", "a@x, b@x") are refused.
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return std::nullopt;
    }
    switch (c) {
      case '<':
      case '>':
      case '(':
      case ')':
      case ',':
      case ';':
      case ':':
      case '"':
      case '[':
      case ']':
      case '\\':
        return std::nullopt;
      default:
        break;
    }
  }
  if (!plausible_domain(s.substr(at + 1))) {
    return std::nullopt;
  }
  // The SPEC canonical form is the lower-cased address. RFC 5321 lets a server treat the local
  // part case-sensitively, but no real provider does, and matching must not split Ann@ / ann@.
  return lower(s);
}

std::optional<std::string> canonical_phone(std::string_view raw, std::string_view default_region) {
  Canonical c = canonical_phone_identity("phone", raw, default_region);
  if (!c.ok()) {
    return std::nullopt;
  }
  return std::move(c.value);
}

Canonical canonicalize(std::string_view type, std::string_view raw,
                       std::string_view default_region) {
  return canonicalize(type, raw, default_region, {});
}

Canonical canonicalize(std::string_view type, std::string_view raw, std::string_view default_region,
                       std::string_view mastodon_domain) {
  if (type == "email") {
    auto v = canonical_email(raw);
    if (!v) {
      return invalid(type, "not a valid email address");
    }
    return ok(type, std::move(*v));
  }
  if (type == "phone") {
    return canonical_phone_identity(type, raw, default_region);
  }
  if (type == "whatsapp") {
    return canonical_whatsapp(raw);
  }
  if (type == "mastodon") {
    return canonical_mastodon(raw, mastodon_domain);
  }
  if (type == "x" || type == "telegram" || type == "instagram" || type == "messenger") {
    return canonical_platform(type, raw);
  }
  if (type == "x_handle" || type == "telegram_handle" || type == "instagram_handle") {
    return canonical_handle(type, raw);
  }
  return invalid(type, "unknown identity type");
}

}  // namespace sb
