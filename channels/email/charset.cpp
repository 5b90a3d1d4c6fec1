#include "channels/email/charset.hpp"

#include "core/utf8.hpp"

#include <iconv.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <utility>

namespace sb::email {
namespace {

constexpr std::string_view replacement = "\xEF\xBF\xBD";  // U+FFFD

std::string lower_trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '"' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '"' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Label -> the superset glibc iconv knows. Labels not listed go to iconv unchanged.
constexpr std::array<std::pair<std::string_view, std::string_view>, 36> aliases{{
    {"gb2312", "GB18030"},
    {"gb_2312-80", "GB18030"},
    {"csgb2312", "GB18030"},
    {"gbk", "GB18030"},
    {"x-gbk", "GB18030"},
    {"cp936", "GB18030"},
    {"euc-cn", "GB18030"},
    {"chinese", "GB18030"},
    {"gb18030", "GB18030"},
    {"ks_c_5601-1987", "CP949"},
    {"ks_c_5601-1989", "CP949"},
    {"ks_c_5601", "CP949"},
    {"ksc5601", "CP949"},
    {"euc-kr", "CP949"},
    {"cp949", "CP949"},
    {"iso-8859-1", "WINDOWS-1252"},
    {"iso8859-1", "WINDOWS-1252"},
    {"latin1", "WINDOWS-1252"},
    {"l1", "WINDOWS-1252"},
    {"windows-1252", "WINDOWS-1252"},
    {"cp1252", "WINDOWS-1252"},
    {"shift_jis", "CP932"},
    {"shift-jis", "CP932"},
    {"sjis", "CP932"},
    {"x-sjis", "CP932"},
    {"ms_kanji", "CP932"},
    {"windows-31j", "CP932"},
    {"big5", "CP950"},
    {"big-5", "CP950"},
    {"x-big5", "CP950"},
    {"cn-big5", "CP950"},
    {"iso-2022-jp", "ISO-2022-JP-2"},
    {"koi8-r", "KOI8-R"},
    {"utf8", "UTF-8"},
    {"utf-8", "UTF-8"},
    {"iso-8859-9", "WINDOWS-1254"},
}};

// iconv loop that never fails: undecodable bytes become U+FFFD and decoding goes on.
bool convert(std::string_view bytes, const std::string& from, std::string& out, bool& replaced) {
  iconv_t cd = iconv_open("UTF-8", from.c_str());
  if (cd == reinterpret_cast<iconv_t>(-1)) {
    return false;
  }
  out.clear();
  out.reserve(bytes.size() + bytes.size() / 2 + 16);
  char* in = const_cast<char*>(bytes.data());
  std::size_t in_left = bytes.size();
  std::array<char, 8192> buf;
  while (true) {
    char* o = buf.data();
    std::size_t o_left = buf.size();
    std::size_t rc = in_left == 0 ? iconv(cd, nullptr, nullptr, &o, &o_left)
                                  : iconv(cd, &in, &in_left, &o, &o_left);
    out.append(buf.data(), buf.size() - o_left);
    if (rc != static_cast<std::size_t>(-1)) {
      if (in_left == 0) {
        break;
      }
      continue;
    }
    if (errno == E2BIG) {
      continue;
    }
    // EILSEQ (invalid) or EINVAL (truncated at the end): replace one byte and go on.
    out.append(replacement);
    replaced = true;
    if (in_left == 0) {
      break;
    }
    ++in;
    --in_left;
    if (in_left == 0) {
      break;
    }
  }
  iconv_close(cd);
  return true;
}

}  // namespace

std::string iconv_charset(std::string_view label) {
  std::string l = lower_trim(label);
  // RFC 2231 allows a language suffix on the charset ("utf-8*en"); drop it.
  if (auto star = l.find('*'); star != std::string::npos) {
    l.resize(star);
  }
  if (l.empty() || l == "us-ascii" || l == "ascii" || l == "unknown-8bit" || l == "x-unknown" ||
      l == "default" || l == "8bit") {
    return {};
  }
  for (const auto& [name, target] : aliases) {
    if (l == name) {
      return std::string(target);
    }
  }
  return l;
}

std::string sanitize_utf8(std::string_view s) {
  std::size_t bad = first_invalid_utf8(s);
  if (bad == s.size()) {
    return std::string(s);
  }
  std::string out;
  out.reserve(s.size() + 8);
  out.append(s.substr(0, bad));
  for (std::size_t i = bad; i < s.size();) {
    std::size_t n = utf8_sequence_length(s.substr(i));
    if (n == 0) {
      out.append(replacement);
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string_view utf8_prefix(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) {
    return s;
  }
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) {
    --end;
  }
  return s.substr(0, end);
}

std::string to_utf8(std::string_view bytes, std::string_view charset, bool* replaced) {
  bool rep = false;
  std::string out;
  std::string from = iconv_charset(charset);
  if (from == "UTF-8" || (from.empty() && is_valid_utf8(bytes))) {
    // Declared UTF-8 (invalid sequences replaced), or undeclared and valid UTF-8: the result
    // is valid by construction, no second check needed.
    rep = from == "UTF-8" && !is_valid_utf8(bytes);
    out = rep ? sanitize_utf8(bytes) : std::string(bytes);
    if (replaced != nullptr) {
      *replaced = rep;
    }
    return out;
  }
  if (!from.empty() && convert(bytes, from, out, rep)) {
    // converted
  } else if (is_valid_utf8(bytes)) {
    out = std::string(bytes);  // unknown charset, and it is UTF-8
  } else {
    convert(bytes, "WINDOWS-1252", out, rep);  // the de-facto default of 8-bit mail
  }
  if (!is_valid_utf8(out)) {
    out = sanitize_utf8(out);
    rep = true;
  }
  if (replaced != nullptr) {
    *replaced = rep;
  }
  return out;
}

std::string controls_to_spaces(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      c = ' ';
    }
  }
  return out;
}

}  // namespace sb::email
