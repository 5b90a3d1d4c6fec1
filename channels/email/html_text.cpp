#include "channels/email/html_text.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <utility>

namespace sb::email {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    cp = 0xFFFD;
  }
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

constexpr std::array<std::pair<std::string_view, std::uint32_t>, 32> named{{
    {"amp", '&'},      {"lt", '<'},       {"gt", '>'},       {"quot", '"'},     {"apos", '\''},
    {"nbsp", 0xA0},    {"copy", 0xA9},    {"reg", 0xAE},     {"trade", 0x2122}, {"hellip", 0x2026},
    {"mdash", 0x2014}, {"ndash", 0x2013}, {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201C},
    {"rdquo", 0x201D}, {"laquo", 0xAB},   {"raquo", 0xBB},   {"bull", 0x2022},  {"middot", 0xB7},
    {"euro", 0x20AC},  {"pound", 0xA3},   {"yen", 0xA5},     {"cent", 0xA2},    {"deg", 0xB0},
    {"times", 0xD7},   {"auml", 0xE4},    {"ouml", 0xF6},    {"uuml", 0xFC},    {"szlig", 0xDF},
    {"eacute", 0xE9},  {"egrave", 0xE8},
}};

// Decodes the character reference at html[i] == '&'; returns the bytes consumed (0: not one).
std::size_t decode_entity(std::string_view html, std::size_t i, std::string& out) {
  // The ';' is looked for within the longest reference taken (12 bytes), not in the rest of the
  // text: a part of 4 MiB of '&' made that search quadratic (minutes per message).
  std::size_t semi = html.substr(0, i + 13).find(';', i);
  if (semi == std::string_view::npos || semi == i + 1) {
    return 0;
  }
  std::string_view body = html.substr(i + 1, semi - i - 1);
  if (body[0] == '#') {
    std::uint32_t cp = 0;
    bool hex = body.size() > 1 && (body[1] == 'x' || body[1] == 'X');
    std::string_view digits = body.substr(hex ? 2 : 1);
    if (digits.empty() || digits.size() > 7) {
      return 0;
    }
    for (char c : digits) {
      int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
              : hex && std::isxdigit(static_cast<unsigned char>(c))
                  ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10
                  : -1;
      if (v < 0) {
        return 0;
      }
      cp = cp * (hex ? 16 : 10) + static_cast<std::uint32_t>(v);
    }
    append_utf8(out, cp);
    return semi - i + 1;
  }
  for (const auto& [name, cp] : named) {
    if (body == name) {
      append_utf8(out, cp);
      return semi - i + 1;
    }
  }
  return 0;
}

bool is_block(const std::string& t) {
  static constexpr std::array<std::string_view, 28> blocks{
      "p",   "div", "br",      "tr",      "table",  "ul",     "ol",
      "h1",  "h2",  "h3",      "h4",      "h5",     "h6",     "blockquote",
      "pre", "hr",  "section", "article", "header", "footer", "address",
      "dd",  "dt",  "dl",      "form",    "center", "tbody",  "body"};
  return std::find(blocks.begin(), blocks.end(), t) != blocks.end();
}

class renderer {
 public:
  void text(std::string_view s) {
    for (char c : s) {
      if (pre_depth_ == 0 && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f')) {
        pending_space_ = true;
        continue;
      }
      if (pre_depth_ > 0 && c == '\n') {
        newline();
        continue;
      }
      if (pending_space_ && !out_.empty() && out_.back() != '\n' && out_.back() != ' ') {
        out_ += ' ';
      }
      pending_space_ = false;
      out_ += c;
    }
  }
  // <br>: always a new line.
  void newline() {
    pending_space_ = false;
    while (!out_.empty() && out_.back() == ' ') {
      out_.pop_back();
    }
    out_ += '\n';
  }
  // Block boundary: start a new line unless already at the start of one.
  void block() {
    if (!out_.empty() && out_.back() != '\n') {
      newline();
    }
    pending_space_ = false;
  }
  // Paragraph boundary: one blank line.
  void paragraph() {
    block();
    if (out_.size() >= 2 && out_[out_.size() - 2] != '\n') {
      newline();
    }
  }
  void space() { pending_space_ = true; }
  void pre(bool open) { pre_depth_ = open ? pre_depth_ + 1 : std::max(0, pre_depth_ - 1); }

  std::string finish() {
    std::string result;
    int newlines = 0;
    for (char c : out_) {
      if (c == '\n') {
        if (++newlines <= 2) {
          result += c;
        }
      } else {
        newlines = 0;
        result += c;
      }
    }
    std::size_t b = result.find_first_not_of(" \n");
    std::size_t e = result.find_last_not_of(" \n");
    return b == std::string::npos ? std::string() : result.substr(b, e - b + 1);
  }

 private:
  std::string out_;
  bool pending_space_ = false;
  int pre_depth_ = 0;
};

}  // namespace

std::string html_to_text(std::string_view html) {
  renderer r;
  std::size_t i = 0;
  std::string decoded;
  while (i < html.size()) {
    char c = html[i];
    if (c == '&') {
      decoded.clear();
      if (std::size_t n = decode_entity(html, i, decoded); n > 0) {
        // A decoded &nbsp; is kept as U+00A0 so it does not collapse, like a browser shows it.
        r.text(decoded);
        i += n;
        continue;
      }
      r.text("&");
      ++i;
      continue;
    }
    if (c != '<') {
      std::size_t next = html.find_first_of("<&", i);
      if (next == std::string_view::npos) {
        next = html.size();
      }
      r.text(html.substr(i, next - i));
      i = next;
      continue;
    }
    if (html.substr(i, 4) == "<!--") {
      std::size_t end = html.find("-->", i + 4);
      i = end == std::string_view::npos ? html.size() : end + 3;
      continue;
    }
    std::size_t close = html.find('>', i);
    if (close == std::string_view::npos) {
      r.text(html.substr(i));  // a lone '<' in text
      break;
    }
    std::string_view tag = html.substr(i + 1, close - i - 1);
    bool end_tag = !tag.empty() && tag[0] == '/';
    if (end_tag) {
      tag.remove_prefix(1);
    }
    std::size_t name_end = 0;
    while (name_end < tag.size() &&
           (std::isalnum(static_cast<unsigned char>(tag[name_end])) != 0)) {
      ++name_end;
    }
    if (name_end == 0) {
      // "<!DOCTYPE", "<?xml", "< 3" ... : a declaration is dropped, text is kept.
      if (!tag.empty() && (tag[0] == '!' || tag[0] == '?')) {
        i = close + 1;
      } else {
        r.text("<");
        ++i;
      }
      continue;
    }
    std::string name = lower(tag.substr(0, name_end));
    i = close + 1;
    if (!end_tag && (name == "script" || name == "style" || name == "title")) {
      // Skip to the matching end tag; when there is none, only the tag itself is dropped, so
      // that a broken message loses markup, not the customer's words.
      std::string lowered_end = "</" + name;
      std::size_t pos = i;
      while (pos < html.size()) {
        std::size_t lt = html.find("</", pos);
        if (lt == std::string_view::npos) {
          pos = html.size();
          break;
        }
        if (lower(html.substr(lt, lowered_end.size())) == lowered_end) {
          break;
        }
        pos = lt + 2;
      }
      if (pos < html.size()) {
        std::size_t gt = html.find('>', pos);
        i = gt == std::string_view::npos ? html.size() : gt + 1;
      }
      continue;
    }
    if (name == "pre") {
      r.block();
      r.pre(!end_tag);
      continue;
    }
    if (name == "li") {
      r.block();
      if (!end_tag) {
        r.text("- ");
      }
      continue;
    }
    if (name == "td" || name == "th") {
      r.space();
      continue;
    }
    if (name == "p" || name == "blockquote" ||
        (name.size() == 2 && name[0] == 'h' && name[1] >= '1' && name[1] <= '6')) {
      r.paragraph();
      continue;
    }
    if (name == "br") {
      r.newline();
    } else if (is_block(name)) {
      r.block();
    }
  }
  return r.finish();
}

}  // namespace sb::email
