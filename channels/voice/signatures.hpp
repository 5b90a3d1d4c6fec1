#pragma once
// Webhook signature checks of the three telephony routes (SPEC section 3). Every comparison of
// secret-derived bytes is constant-time (CRYPTO_memcmp, DESIGN-NOTES invariant 5).
//
// Failure statuses: a request without the signature header(s) gets 401 `missing_signature`
// (the caller did not authenticate at all); one whose signature does not verify gets 403
// `bad_signature`; a correct signature over a timestamp more than 300 s from now gets 403
// `stale_timestamp` (authenticated, but refused: a replay or a badly wrong clock).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "channels/voice/crypto.hpp"
#include "core/form.hpp"

namespace sb::voice {

inline constexpr std::int64_t kSignatureToleranceS = 300;

struct SignatureCheck {
  int status = 0;  // 0: verified; else 401, 403 or 500
  std::string code;
  std::string message;
  bool ok() const { return status == 0; }
};

// --- Twilio (https://www.twilio.com/docs/usage/webhooks/webhooks-security) -------------------
// base64(HMAC-SHA1(auth token, url + for each name in sorted order, each of its distinct values
// in sorted order: name + value)). Sorting and de-duplication as in twilio-python
// RequestValidator.compute_signature (`sorted(set(values))`).
std::string twilio_signature(std::string_view auth_token, std::string_view url,
                             const FormParams& params);
// The URLs Twilio may have signed: without any port, and with the port (the scheme's default
// port when the URL has none). Twilio's helper libraries try both "since sig generation on back
// end is inconsistent" (twilio-python request_validator.py).
std::vector<std::string> twilio_url_variants(std::string_view url);
// Form posts: the signature covers the URL and every POST parameter.
SignatureCheck verify_twilio_form(std::string_view auth_token, std::string_view url,
                                  const FormParams& params, std::string_view signature_header);
// JSON posts: the signature covers the URL only, and the URL's `bodySHA256` query parameter
// must be the hex SHA-256 of the raw body.
SignatureCheck verify_twilio_body(std::string_view auth_token, std::string_view url,
                                  std::string_view body, std::string_view signature_header);

// --- Telnyx (Ed25519 over "{telnyx-timestamp}|{raw body}") ----------------------------------
SignatureCheck verify_telnyx(std::string_view public_key_base64, std::string_view signature_b64,
                             std::string_view timestamp, std::string_view body,
                             std::int64_t now_unix_s);

// --- generic PBX ---------------------------------------------------------------------------
// X-Switchboard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>.
// Several v1= entries may be given (one per secret while a secret is being rotated); one
// matching entry is enough.
std::string pbx_signature_header(std::string_view secret, std::int64_t t, std::string_view body);
SignatureCheck verify_pbx(std::string_view secret, std::string_view header, std::string_view body,
                          std::int64_t now_unix_s);

}  // namespace sb::voice
