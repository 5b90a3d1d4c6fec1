#include "channels/social/common.hpp"

#include <charconv>

#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

namespace sb::social {

namespace json = boost::json;

std::string str_at(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) {
    return {};
  }
  if (const json::string* s = v->if_string()) {
    return std::string(*s);
  }
  if (v->is_int64()) {
    return std::to_string(v->get_int64());
  }
  if (v->is_uint64()) {
    return std::to_string(v->get_uint64());
  }
  return {};
}

const json::object* obj_at(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v == nullptr ? nullptr : v->if_object();
}

const json::array* arr_at(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v == nullptr ? nullptr : v->if_array();
}

std::optional<std::int64_t> int_at(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v == nullptr) {
    return std::nullopt;
  }
  if (v->is_int64()) {
    return v->get_int64();
  }
  if (v->is_uint64()) {
    return static_cast<std::int64_t>(v->get_uint64());
  }
  if (v->is_double()) {
    return static_cast<std::int64_t>(v->get_double());
  }
  if (const json::string* s = v->if_string()) {
    std::int64_t out = 0;
    auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), out);
    if (ec == std::errc{} && p == s->data() + s->size()) {
      return out;
    }
  }
  return std::nullopt;
}

bool bool_at(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  return v != nullptr && v->is_bool() && v->get_bool();
}

bool id_less(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return a.size() < b.size();
  }
  return a < b;
}

std::string held_back_id(std::string_view id, int shift, std::int64_t min_time) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(id.data(), id.data() + id.size(), v);
  if (ec != std::errc{} || p != id.data() + id.size() || v <= 0 || (v >> shift) < min_time ||
      (v >> shift) <= kCursorOverlapMs) {
    return std::string(id);
  }
  return std::to_string(v - (kCursorOverlapMs << shift));
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

std::optional<BaseUrl> parse_base_url(std::string_view url) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || !parsed->has_authority()) {
    return std::nullopt;
  }
  BaseUrl out;
  out.scheme = ascii_lower(parsed->scheme());
  if (out.scheme != "http" && out.scheme != "https") {
    return std::nullopt;
  }
  out.host = ascii_lower(parsed->host());
  if (out.host.empty()) {
    return std::nullopt;
  }
  out.port = parsed->has_port() ? parsed->port_number() : (out.scheme == "https" ? 443 : 80);
  out.path = parsed->encoded_path();
  while (!out.path.empty() && out.path.back() == '/') {
    out.path.pop_back();
  }
  return out;
}

std::string url_file_name(std::string_view url) {
  url = url.substr(0, url.find_first_of("?#"));
  std::size_t scheme = url.find("://");
  if (scheme != std::string_view::npos) {
    url.remove_prefix(scheme + 3);
    std::size_t path = url.find('/');
    url.remove_prefix(path == std::string_view::npos ? url.size() : path);
  }
  return std::string(url.substr(url.find_last_of('/') + 1));
}

std::string error_body(std::string_view code, std::string_view message) {
  json::object err;
  err["code"] = code;
  err["message"] = message;
  json::object root;
  root["error"] = std::move(err);
  return json::serialize(root);
}

}  // namespace sb::social
