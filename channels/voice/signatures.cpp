#include "channels/voice/signatures.hpp"

#include <algorithm>
#include <charconv>
#include <memory>

#include <openssl/evp.h>

namespace sb::voice {

namespace {

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

SignatureCheck missing(std::string message) {
  return {401, "missing_signature", std::move(message)};
}
SignatureCheck bad(std::string message) {
  return {403, "bad_signature", std::move(message)};
}
SignatureCheck stale(std::string message) {
  return {403, "stale_timestamp", std::move(message)};
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

}  // namespace

// --- Twilio --------------------------------------------------------------------------------

std::string twilio_signature(std::string_view auth_token, std::string_view url,
                             const FormParams& params) {
  // std::string's operator< compares as unsigned char, i.e. UTF-8 byte order, which is the
  // code point order Python's sorted() uses in the reference implementation.
  // Sorted by key, then value; a repeated identical pair counts once (as the set this was).
  std::vector<std::pair<std::string_view, std::string_view>> sorted(params.begin(), params.end());
  std::sort(sorted.begin(), sorted.end());
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  std::size_t size = url.size();
  for (const auto& [k, v] : sorted) {
    size += k.size() + v.size();
  }
  std::string data;
  data.reserve(size);
  data.append(url);
  for (const auto& [k, v] : sorted) {
    data.append(k).append(v);
  }
  return hmac_sha1_base64(auth_token, data);
}

std::vector<std::string> twilio_url_variants(std::string_view url) {
  std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return {std::string(url)};
  }
  std::string scheme = lower(url.substr(0, scheme_end));
  std::size_t host_start = scheme_end + 3;
  std::size_t host_end = url.find_first_of("/?#", host_start);
  if (host_end == std::string_view::npos) {
    host_end = url.size();
  }
  std::string_view authority = url.substr(host_start, host_end - host_start);
  // A port is the digits after the last ':' that is not inside an IPv6 literal.
  std::size_t colon = authority.rfind(':');
  std::size_t bracket = authority.rfind(']');
  bool has_port =
      colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket);
  std::string_view host = has_port ? authority.substr(0, colon) : authority;
  std::string prefix(url.substr(0, host_start));
  std::string rest(url.substr(host_end));
  std::string without_port = prefix + std::string(host) + rest;
  std::string with_port =
      has_port ? std::string(url)
               : prefix + std::string(host) + (scheme == "https" ? ":443" : ":80") + rest;
  return {without_port, with_port};
}

SignatureCheck verify_twilio_form(std::string_view auth_token, std::string_view url,
                                  const FormParams& params, std::string_view signature_header) {
  if (signature_header.empty()) {
    return missing("the X-Twilio-Signature header is missing");
  }
  bool match = false;
  for (const auto& candidate : twilio_url_variants(url)) {
    // Stopping at the first match only tells which public URL spelling Twilio signed.
    if (constant_time_equal(twilio_signature(auth_token, candidate, params),
                            trim(signature_header))) {
      match = true;
      break;
    }
  }
  if (!match) {
    return bad("X-Twilio-Signature does not match this request and the configured auth token");
  }
  return {};
}

SignatureCheck verify_twilio_body(std::string_view auth_token, std::string_view url,
                                  std::string_view body, std::string_view signature_header) {
  if (signature_header.empty()) {
    return missing("the X-Twilio-Signature header is missing");
  }
  auto expected_hash = query_param(url, "bodySHA256");
  if (!expected_hash) {
    return bad("a JSON request must carry the bodySHA256 query parameter");
  }
  SignatureCheck url_check = verify_twilio_form(auth_token, url, {}, signature_header);
  bool hash_ok = constant_time_equal(sha256_hex(body), lower(*expected_hash));
  if (!url_check.ok()) {
    return url_check;
  }
  if (!hash_ok) {
    return bad("the body does not match the bodySHA256 query parameter");
  }
  return {};
}

// --- Telnyx --------------------------------------------------------------------------------

namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

Pkey ed25519_key(std::string_view public_key_base64) {
  auto raw = base64_decode(trim(public_key_base64));
  if (!raw || raw->size() != 32) {
    return nullptr;
  }
  return Pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, bytes(*raw), raw->size()));
}

}  // namespace

SignatureCheck verify_telnyx(std::string_view public_key_base64, std::string_view signature_b64,
                             std::string_view timestamp, std::string_view body,
                             std::int64_t now_unix_s) {
  if (signature_b64.empty() || timestamp.empty()) {
    return missing("the telnyx-signature-ed25519 and telnyx-timestamp headers are required");
  }
  Pkey key = ed25519_key(public_key_base64);
  if (!key) {
    return {500, "channel_misconfigured",
            "the configured Telnyx public key is not a base64 Ed25519 key"};
  }
  auto t = parse_int(trim(timestamp));
  auto sig = base64_decode(trim(signature_b64));
  if (!t || !sig || sig->size() != 64) {
    return bad("telnyx-signature-ed25519 or telnyx-timestamp is malformed");
  }
  std::string message;
  message.reserve(timestamp.size() + 1 + body.size());
  message.append(trim(timestamp)).append("|").append(body);
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  bool ok =
      ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), bytes(*sig), sig->size(), bytes(message), message.size()) == 1;
  if (!ok) {
    return bad("telnyx-signature-ed25519 does not verify with the configured public key");
  }
  if (*t < now_unix_s - kSignatureToleranceS || *t > now_unix_s + kSignatureToleranceS) {
    return stale("telnyx-timestamp is more than 300 seconds away from the current time");
  }
  return {};
}

// --- generic PBX ---------------------------------------------------------------------------

std::string pbx_signature_header(std::string_view secret, std::int64_t t, std::string_view body) {
  std::string ts = std::to_string(t);
  return "t=" + ts + ",v1=" + hmac_sha256_hex(secret, ts + "." + std::string(body));
}

SignatureCheck verify_pbx(std::string_view secret, std::string_view header, std::string_view body,
                          std::int64_t now_unix_s) {
  if (trim(header).empty()) {
    return missing("the X-Switchboard-Signature header is missing");
  }
  std::string_view t_text;
  std::vector<std::string_view> candidates;
  while (!header.empty()) {
    std::size_t comma = header.find(',');
    std::string_view item = trim(header.substr(0, comma));
    header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
    std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      continue;
    }
    std::string_view key = item.substr(0, eq);
    if (key == "t") {
      t_text = item.substr(eq + 1);
    } else if (key == "v1") {
      candidates.push_back(item.substr(eq + 1));
    }  // other schemes (v0, v2, ...) are ignored, so new ones can be added later
  }
  auto t = parse_int(t_text);
  if (!t || candidates.empty()) {
    return bad("X-Switchboard-Signature must be t=<unix seconds>,v1=<hex HMAC-SHA256>");
  }
  std::string signed_payload(t_text);
  signed_payload.append(".").append(body);
  std::string expected = hmac_sha256_hex(secret, signed_payload);
  bool match = false;
  for (auto candidate : candidates) {
    match |= constant_time_equal(expected, lower(candidate));
  }
  if (!match) {
    return bad("X-Switchboard-Signature does not match the body and the configured secret");
  }
  if (*t < now_unix_s - kSignatureToleranceS || *t > now_unix_s + kSignatureToleranceS) {
    return stale("the X-Switchboard-Signature timestamp is more than 300 seconds away from now");
  }
  return {};
}

}  // namespace sb::voice
