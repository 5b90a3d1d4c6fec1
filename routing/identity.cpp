#include "routing/identity.hpp"

#include <idn2.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "routing/identity_internal.hpp"

namespace sb {
namespace {

using namespace identity_detail;

// A hostname as it appears after '@' in an email or fediverse address: no empty labels.
bool plausible_domain(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.' ||
      d.find("..") != std::string_view::npos) {
    return false;
  }
  return true;
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

// ---- email ----------------------------------------------------------------------------------

// "U+00A0": how an error names a character nobody can see.
std::string code_point_name(char32_t c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(c));
  return buf;
}

// The scripts in which ZWNJ and ZWJ join letters of a word: Arabic (with Persian and Urdu),
// Syriac, Thaana, N'Ko (U+0600-U+08FF) and the Indic scripts, Devanagari to Sinhala
// (U+0900-U+0DFF).
bool joins(char32_t c) {
  return (c >= 0x0600 && c <= 0x08FF) || (c >= 0x0900 && c <= 0x0DFF);
}

Canonical canonical_email_identity(std::string_view raw);

// What to write instead, for the two mistakes a bare "not a valid email address" left people to
// guess: a display name ("Ann Lee <ann@example.com>", as a mail client copies an address) and
// a list ("a@x.com, b@x.com"). "" for anything else.
std::string email_hint(std::string_view s) {
  const auto lt = s.find('<');
  const auto gt = lt == std::string_view::npos ? lt : s.find('>', lt);
  if (gt != std::string_view::npos) {
    const Canonical inner = canonical_email_identity(s.substr(lt + 1, gt - lt - 1));
    if (inner.ok()) {
      return " (give the address alone: " + inner.value + ")";
    }
    return " (give the address alone, without a name or <>)";
  }
  // Two '@'s with a separator: "ann@@x.com" is a typo, "ann,lee@x.com" one odd address.
  const auto at = s.find('@');
  if (at != std::string_view::npos && s.find('@', at + 1) != std::string_view::npos &&
      s.find_first_of(",; \t") != std::string_view::npos) {
    return " (one address only)";
  }
  return "";
}

Canonical canonical_email_identity(std::string_view raw) {
  // trim() drops invisible padding at both ends (the NBSP a web form's paste leaves): what is
  // left inside is refused below, as it makes a different address that looks the same.
  std::string_view s = trim(raw);
  if (starts_with_nocase(s, "mailto:")) {
    s.remove_prefix(7);
  }
  const auto at = s.find('@');
  if (at == std::string_view::npos || at == 0 || at > 64 || s.size() > 254 ||
      s.find('@', at + 1) != std::string_view::npos) {
    return invalid("email", "not a valid email address" + email_hint(s));
  }
  // Internationalised addresses (RFC 6531: UTF-8 local parts, IDN domains) are kept, but not
  // the invisible characters inside one: C1 controls, Unicode spaces, zero-width and bidi
  // format characters.
  char32_t prev = 0;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = decode_utf8(s.substr(i));
    // ZWNJ and ZWJ belong inside words of some scripts (Persian, the Indic ones with a virama):
    // IDNA's CONTEXTJ rules (RFC 5892 appendix A.1, A.2) allow them there, and a UTF-8 local
    // part may hold them as well. Kept between two letters of those scripts (joins(): a
    // looser test than the RFC's joining types and virama, which would need Unicode tables);
    // anywhere else (Latin, at an end, doubled) they only hide a look-alike.
    bool joiner = false;
    if ((c.cp == 0x200C || c.cp == 0x200D) && joins(prev)) {
      const auto next = decode_utf8(s.substr(i + c.len));
      joiner = next.len > 0 && joins(next.cp);
    }
    prev = c.len > 0 ? c.cp : 0;
    if (c.len > 1 && !joiner) {
      if (is_control_or_format(c.cp)) {
        return invalid("email", "not a valid email address (it contains the invisible " +
                                    std::string(c.cp <= 0x9F ? "control" : "format") +
                                    " character " + code_point_name(c.cp) + ")");
      }
      if (is_invisible_padding(c.cp)) {
        return invalid("email", "not a valid email address (it contains the space character " +
                                    code_point_name(c.cp) + ")");
      }
    }
    i += c.len > 0 ? c.len : 1;
  }
  // Raw addresses only: whitespace, controls and the RFC 5322 specials that only appear in
  // display names, quoted local parts or lists ("Ann <a@x>", "a@x, b@x") are refused.
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return invalid("email", "not a valid email address" + email_hint(s));
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
        return invalid("email", "not a valid email address" + email_hint(s));
      default:
        break;
    }
  }
  if (!plausible_domain(s.substr(at + 1))) {
    return invalid("email", "not a valid email address");
  }
  // The SPEC canonical form is the lower-cased address. RFC 5321 lets a server treat the local
  // part case-sensitively, but no real provider does, and matching must not split Ann@ / ann@.
  // Only ASCII letters are lower-cased in the local part: a UTF-8 one (RFC 6531) is compared
  // as the server compares it, which no RFC defines, and folding Unicode case there could
  // make one customer of two mailboxes.
  //
  // The domain is one name however it is written, so it gets one form: ASCII, as DNS has it
  // (IDNA2008 A-labels, "xn--bcher-kva.de" for "Bücher.de"). A customer file and the ingest
  // API keep what they were given, while GMime (with libidn2) decodes a From domain to Unicode:
  // without one form, one person became two customers.
  const std::string_view domain = s.substr(at + 1);
  std::string out = lower(s.substr(0, at + 1));
  if (std::all_of(domain.begin(), domain.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x80; })) {
    return ok("email", out + lower(domain));
  }
  // UTS #46 non-transitional processing: upper case (any script) and full-width forms are
  // mapped first, so "BÜCHER.de" is the same domain; NFC input, as a file may be decomposed.
  char* ascii = nullptr;
  const std::string d(domain);
  const int rc =
      idn2_lookup_u8(reinterpret_cast<const uint8_t*>(d.c_str()),
                     reinterpret_cast<uint8_t**>(&ascii), IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
  std::unique_ptr<char, decltype(&idn2_free)> owned(ascii, &idn2_free);
  if (rc != IDN2_OK || ascii == nullptr) {
    return invalid("email", std::string("not a valid email address (its domain is no valid "
                                        "internationalised domain name: ") +
                                idn2_strerror(rc) + ")");
  }
  return ok("email", out + lower(ascii));
}

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

std::string_view trim_invisible_padding(std::string_view s) {
  return trim(s);
}

bool has_visible_character(std::string_view s) {
  while (!s.empty()) {
    auto c = decode_utf8(s);
    if (c.len == 0) {
      return true;
    }
    const char32_t cp = c.cp;
    const bool blank = is_invisible_padding(cp) || is_control_or_format(cp) || cp == 0x115F ||
                       cp == 0x1160 || cp == 0x3164 || cp == 0xFFA0 || cp == 0x2800;
    if (!blank) {
      return true;
    }
    s.remove_prefix(c.len);
  }
  return false;
}

std::string code_point_names(std::string_view s) {
  std::string out;
  while (!s.empty()) {
    const auto c = decode_utf8(s);
    if (!out.empty()) {
      out += ' ';
    }
    if (c.len == 0) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned char>(s[0]));
      out += buf;
      s.remove_prefix(1);
    } else {
      out += code_point_name(c.cp);
      s.remove_prefix(c.len);
    }
  }
  return out;
}

std::optional<std::string> canonical_email(std::string_view raw) {
  auto c = canonical_email_identity(raw);
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
    return canonical_email_identity(raw);
  }
  if (type == "phone") {
    return canonical_phone_identity(type, raw, default_region);
  }
  if (type == "whatsapp") {
    return canonical_whatsapp(raw, default_region);
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
