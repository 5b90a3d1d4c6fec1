#include "http/router.hpp"

#include <openssl/crypto.h>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace sb::http {

namespace {
// SPEC section 3: JSON bodies are UTF-8. Error messages echo what the client sent (a path, a
// header value), and Beast lets bytes 0x80-0xFF through there; Boost.JSON serialises them as
// they are. Each byte that does not start a valid sequence becomes U+FFFD.
std::string utf8_or_replaced(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80                 ? 1
                    : c >= 0xC2 && c <= 0xDF ? 2
                    : c >= 0xE0 && c <= 0xEF ? 3
                    : c >= 0xF0 && c <= 0xF4 ? 4
                                             : 0;
    bool ok = n > 0 && i + n <= s.size();
    std::uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (std::size_t k = 1; ok && k < n; ++k) {
      auto b = static_cast<unsigned char>(s[i + k]);
      ok = (b & 0xC0) == 0x80;
      cp = cp << 6 | (b & 0x3F);
    }
    // Overlong three- and four-byte forms, surrogates, and past U+10FFFF are invalid too.
    ok = ok && !(n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) &&
         !(n == 4 && (cp < 0x10000 || cp > 0x10FFFF));
    if (ok) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}
}  // namespace

Response error(int status, std::string_view code, std::string_view message) {
  boost::json::value v = {{"error", {{"code", code}, {"message", utf8_or_replaced(message)}}}};
  return Response{status, "application/json", boost::json::serialize(v), {}};
}

Response unauthorized(std::string_view message) {
  // RFC 9110 section 11.6.1: a 401 MUST carry a challenge naming the scheme.
  auto res = error(401, "unauthorized", message);
  res.headers.emplace_back("WWW-Authenticate", "Bearer");
  return res;
}

Response json(int status, std::string body) {
  return Response{status, "application/json", std::move(body), {}};
}

namespace {
std::vector<std::string> split_path(std::string_view p) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < p.size()) {
    if (p[i] == '/') {
      ++i;
      continue;
    }
    auto j = p.find('/', i);
    if (j == std::string_view::npos) {
      j = p.size();
    }
    out.emplace_back(p.substr(i, j - i));
    i = j;
  }
  return out;
}
}  // namespace

void Router::add(std::string method, std::string pattern, Handler h, Gate gate) {
  auto segs = split_path(pattern);
  routes_.push_back(
      Route{std::move(method), std::move(pattern), std::move(segs), std::move(h), std::move(gate)});
}

Router::Match Router::find(std::string_view method, std::string_view path,
                           std::map<std::string, std::string>& params) const {
  auto segs = split_path(path);
  Match m;
  m.label = "unmatched";
  for (const auto& r : routes_) {
    if (r.segments.size() != segs.size()) {
      continue;
    }
    std::map<std::string, std::string> got;
    bool ok = true;
    for (std::size_t i = 0; i < segs.size() && ok; ++i) {
      const auto& s = r.segments[i];
      if (s.size() > 2 && s.front() == '{' && s.back() == '}') {
        got[s.substr(1, s.size() - 2)] = segs[i];
      } else {
        ok = s == segs[i];
      }
    }
    if (!ok) {
      continue;
    }
    m.path_known = true;
    m.label = r.pattern;
    if (r.method == method) {
      m.handler = &r.handler;
      m.gate = r.gate ? &r.gate : nullptr;
      params = std::move(got);
      return m;
    }
    m.allow += m.allow.empty() ? r.method : ", " + r.method;
  }
  return m;
}

std::string_view bearer_token(const Request& r) {
  auto h = r.header("authorization");
  constexpr std::string_view kPrefix = "Bearer ";
  if (h.size() <= kPrefix.size()) {
    return {};
  }
  for (std::size_t i = 0; i < kPrefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(h[i])) !=
        std::tolower(static_cast<unsigned char>(kPrefix[i]))) {
      return {};
    }
  }
  auto t = h.substr(kPrefix.size());
  while (!t.empty() && t.back() == ' ') {
    t.remove_suffix(1);
  }
  return t;
}

bool secret_equals(std::string_view presented, std::string_view known) {
  if (presented.size() != known.size() || known.empty()) {
    return false;
  }
  return CRYPTO_memcmp(presented.data(), known.data(), known.size()) == 0;
}

bool TokenSet::contains(std::string_view presented) const {
  std::lock_guard lock(mu_);
  bool found = false;
  for (const auto& t : tokens_) {
    found = secret_equals(presented, t) || found;  // every token compared: no early exit
  }
  return found;
}

void TokenSet::replace(std::vector<std::string> tokens) {
  std::lock_guard lock(mu_);
  tokens_ = std::move(tokens);
}

}  // namespace sb::http
