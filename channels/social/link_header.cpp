#include "channels/social/link_header.hpp"

#include <boost/url/parse.hpp>

#include "channels/social/common.hpp"

namespace sb::social {

std::map<std::string, std::string> parse_link_header(std::string_view header) {
  std::map<std::string, std::string> links;
  std::size_t i = 0;
  while (i < header.size()) {
    std::size_t lt = header.find('<', i);
    if (lt == std::string_view::npos) {
      break;
    }
    std::size_t gt = header.find('>', lt);
    if (gt == std::string_view::npos) {
      break;
    }
    std::string url(header.substr(lt + 1, gt - lt - 1));
    // Parameters run to the next link: a ',' followed (after spaces) by '<'. A quoted value may
    // itself hold commas, so skip quoted strings while looking.
    std::size_t end = gt + 1;
    bool quoted = false;
    for (; end < header.size(); ++end) {
      if (header[end] == '"') {
        quoted = !quoted;
      } else if (header[end] == ',' && !quoted) {
        break;
      }
    }
    std::string_view params = header.substr(gt + 1, end - gt - 1);
    std::size_t rel = params.find("rel=");
    if (rel != std::string_view::npos) {
      std::string_view v = params.substr(rel + 4);
      std::string value;
      if (!v.empty() && v[0] == '"') {
        std::size_t q = v.find('"', 1);
        value = v.substr(1, q == std::string_view::npos ? std::string_view::npos : q - 1);
      } else {
        value = v.substr(0, v.find_first_of("; \t"));
      }
      // rel may hold several space-separated relation types.
      std::size_t p = 0;
      while (p < value.size()) {
        std::size_t sp = value.find(' ', p);
        std::string one = ascii_lower(value.substr(p, sp == std::string::npos ? sp : sp - p));
        if (!one.empty()) {
          links.emplace(one, url);
        }
        p = sp == std::string::npos ? value.size() : sp + 1;
      }
    }
    i = end + 1;
  }
  return links;
}

std::optional<std::string> query_param(std::string_view url, std::string_view name) {
  auto parsed = boost::urls::parse_uri_reference(url);
  if (!parsed) {
    return std::nullopt;
  }
  for (auto param : parsed->params()) {
    if (param.key == name) {
      return std::string(param.value);
    }
  }
  return std::nullopt;
}

}  // namespace sb::social
