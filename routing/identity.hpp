#pragma once
// Canonical identities (SPEC section 5): the one place that decides how a raw address, number
// or handle becomes the (type, value) pair that customer matching compares byte for byte.
// Pure functions, no I/O, thread-safe; libphonenumber stays inside identity.cpp.
//
// Types and canonical values:
//   email      trimmed `local@domain`, the local part ASCII lower-cased, the domain in ASCII
//              form (an IDN as xn--, libidn2), lower-cased
//   phone      E.164 (`+14155550100`) via libphonenumber, national forms read in the default
//              region; withheld callers ("anonymous", "+266696687", ...) are `withheld`
//   whatsapp   E.164; without '+' read as a phone of the default region, else (digits that
//              are no number there) as a wa_id; refused when both readings are numbers
//   mastodon   `user@domain`, both lower-cased (Mastodon matches usernames case-insensitively)
//   x, telegram, messenger, instagram
//              the platform's stable numeric user id (digits)
//   x_handle, telegram_handle, instagram_handle
//              a username, lower-cased, without '@'. Handles are NOT ids: people rename
//              themselves and the platforms recycle names. They exist because customer files
//              and the ingest API carry usernames ("annlee", "@annlee"), not ids. So
//              canonicalize("x", "annlee") yields type `x_handle`, and a channel that sees a
//              post by user id 123 with username "AnnLee" should look up both `x`:"123" and
//              `x_handle`:"annlee" (and then add the id to the customer it found).
//   messenger has no public usernames in webhooks (page-scoped ids only), so only digits.
#include <optional>
#include <string>
#include <string_view>

#include "core/interaction.hpp"

namespace sb {

struct Canonical {
  enum class Status { ok, withheld, invalid };
  Status status = Status::invalid;
  std::string type;   // canonical type; may differ from the requested one (x -> x_handle)
  std::string value;  // canonical value when ok
  std::string error;  // why it is invalid, e.g. "not a valid phone number (too short)"
  // When ok: what of `raw` the value leaves out, for a message to say, else "". A phone or
  // WhatsApp number's extension: "extension 12 dropped" (E.164 has none; the line, not the
  // desk, names the caller).
  std::string note;

  bool ok() const { return status == Status::ok; }
  bool withheld() const { return status == Status::withheld; }
  // The identity to store or match; nullopt unless ok().
  std::optional<Identity> identity() const;
};

// Canonicalises `raw` as identity `type` (one of the types above). `default_region` is the
// ISO 3166 region for phone numbers written without a country code (config
// matching.default_region, e.g. "US"); an empty or unknown region makes such numbers invalid.
// An unknown type is invalid.
Canonical canonicalize(std::string_view type, std::string_view raw,
                       std::string_view default_region);

// Same, with the instance domain a bare Mastodon `@user` belongs to (the configured channel's
// host, e.g. "mastodon.example"); without it a bare username is invalid.
Canonical canonicalize(std::string_view type, std::string_view raw, std::string_view default_region,
                       std::string_view mastodon_domain);

// True for the caller ids that telephony providers send when the number is hidden: empty,
// "anonymous", "restricted", "unknown", "private", "withheld", "unavailable", "blocked", SIP
// anonymous URIs, and Twilio's keypad spellings such as "+266696687" (A-N-O-N-Y-M-O-U-S).
// The keypad digits without '+' count only when they are not a possible number in
// `default_region` ("" reads no national numbers): "7378742833" in the US is a caller.
// A withheld caller is never matched and never creates a customer.
bool is_withheld_number(std::string_view raw, std::string_view default_region = {});

// Whether libphonenumber has numbering data for `region`, an upper-case ISO 3166-1 alpha-2
// code ("GB"; "UK" is not one): a default region it does not know makes every national
// number invalid.
bool is_phone_region(std::string_view region);

// `s` without the invisible padding that canonicalize trims off both ends of every identity
// (identity_internal.hpp is_invisible_padding: Unicode white space, zero-width characters,
// BOM). The schema upgrade that rewrites identities stored before that trimming
// (storage/padded_identities.hpp) calls this one, so both drop the same characters.
std::string_view trim_invisible_padding(std::string_view s);

// Whether `s` (UTF-8) has a character a reader sees: not white space, not a control or format
// character (identity_internal.hpp: zero-width, directional marks, soft hyphen, BOM), not one
// of the blank letters that render as space (Hangul fillers U+115F, U+1160, U+3164, U+FFA0;
// the blank Braille pattern U+2800). A malformed sequence counts as seen.
bool has_visible_character(std::string_view s);

// The code points of `s` as "U+00A0 U+FEFF", each byte of a malformed sequence as "0xNN": how a
// log line names characters that cannot be seen.
std::string code_point_names(std::string_view s);

// Building blocks, exposed for callers that know the type already. nullopt when invalid.
std::optional<std::string> canonical_email(std::string_view raw);
std::optional<std::string> canonical_phone(std::string_view raw, std::string_view default_region);

namespace detail {
// libphonenumber alone (no fast path, no memo): tests compare the fast path against it.
bool phone_to_e164(std::string_view raw, std::string_view region, std::string& out,
                   std::string& error);
}  // namespace detail

}  // namespace sb
