#include "core/html_entities.hpp"

#include "core/utf8.hpp"

#include <array>
#include <utility>

namespace sb {
namespace {

constexpr std::array<std::pair<std::string_view, std::uint32_t>, 32> kNamed{{
    {"amp", '&'},      {"lt", '<'},       {"gt", '>'},       {"quot", '"'},     {"apos", '\''},
    {"nbsp", 0xA0},    {"copy", 0xA9},    {"reg", 0xAE},     {"trade", 0x2122}, {"hellip", 0x2026},
    {"mdash", 0x2014}, {"ndash", 0x2013}, {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201C},
    {"rdquo", 0x201D}, {"laquo", 0xAB},   {"raquo", 0xBB},   {"bull", 0x2022},  {"middot", 0xB7},
    {"euro", 0x20AC},  {"pound", 0xA3},   {"yen", 0xA5},     {"cent", 0xA2},    {"deg", 0xB0},
    {"times", 0xD7},   {"auml", 0xE4},    {"ouml", 0xF6},    {"uuml", 0xFC},    {"szlig", 0xDF},
    {"eacute", 0xE9},  {"egrave", 0xE8},
}};

int digit_value(char c, bool hex) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (hex && c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (hex && c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

}  // namespace

std::size_t decode_html_entity(std::string_view s, std::size_t i, std::string& out,
                               std::uint32_t nbsp) {
  // The ';' is looked for within the longest reference taken ("&#x10FFFF;" and "&hellip;" fit
  // in 12 bytes), not in the rest of the text: a 4 MiB mail part of '&' made that search
  // quadratic (minutes per message).
  std::size_t semi = s.substr(0, i + 13).find(';', i);
  if (semi == std::string_view::npos || semi == i + 1) {
    return 0;
  }
  std::string_view body = s.substr(i + 1, semi - i - 1);
  if (body[0] == '#') {
    bool hex = body.size() > 1 && (body[1] == 'x' || body[1] == 'X');
    std::string_view digits = body.substr(hex ? 2 : 1);
    if (digits.empty() || digits.size() > 7) {
      return 0;
    }
    std::uint32_t cp = 0;
    for (char c : digits) {
      int v = digit_value(c, hex);
      if (v < 0) {
        return 0;
      }
      cp = cp * (hex ? 16 : 10) + static_cast<std::uint32_t>(v);
    }
    append_utf8(out, cp);  // out of range: U+FFFD
    return semi - i + 1;
  }
  for (const auto& [name, cp] : kNamed) {
    if (body == name) {
      append_utf8(out, name == "nbsp" ? nbsp : cp);
      return semi - i + 1;
    }
  }
  return 0;
}

}  // namespace sb
