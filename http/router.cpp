#include "http/router.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <openssl/crypto.h>

namespace sb::http {

Response error(int status, std::string_view code, std::string_view message) {
  boost::json::value v = {{"error", {{"code", code}, {"message", message}}}};
  return Response{status, "application/json", boost::json::serialize(v), {}};
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

void Router::add(std::string method, std::string pattern, Handler h) {
  auto segs = split_path(pattern);
  routes_.push_back(Route{std::move(method), std::move(pattern), std::move(segs), std::move(h)});
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

}  // namespace sb::http
