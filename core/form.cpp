#include "core/form.hpp"

namespace sb {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

}  // namespace

// Runs of plain bytes are copied whole (a signed Twilio callback is about 25 parameters).
std::string form_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t special = s.find_first_of("+%", i);
    out.append(s.substr(i, special == std::string_view::npos ? s.size() - i : special - i));
    if (special == std::string_view::npos) {
      break;
    }
    i = special;
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else {
      out.push_back('%');  // not an escape: kept as written
    }
    ++i;
  }
  return out;
}

FormParams parse_form(std::string_view body) {
  FormParams out;
  while (!body.empty()) {
    std::size_t amp = body.find('&');
    std::string_view pair = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      out.emplace_back(form_decode(pair), std::string{});
    } else {
      out.emplace_back(form_decode(pair.substr(0, eq)), form_decode(pair.substr(eq + 1)));
    }
  }
  return out;
}

std::optional<std::string_view> form_get(const FormParams& params, std::string_view name) {
  for (const auto& [k, v] : params) {
    if (k == name) {
      return std::string_view{v};
    }
  }
  return std::nullopt;
}

std::string_view query_of(std::string_view target) {
  std::size_t q = target.find('?');
  if (q == std::string_view::npos) {
    return {};
  }
  std::string_view query = target.substr(q + 1);
  std::size_t hash = query.find('#');
  return hash == std::string_view::npos ? query : query.substr(0, hash);
}

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
  for (auto& [k, v] : parse_form(query_of(target))) {
    if (k == name) {
      return std::move(v);
    }
  }
  return std::nullopt;
}

}  // namespace sb
