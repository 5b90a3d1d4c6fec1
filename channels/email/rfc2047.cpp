#include "channels/email/rfc2047.hpp"

#include <cctype>
#include <optional>

#include "channels/email/charset.hpp"

namespace sb::email {
namespace {

struct encoded_word {
  std::size_t end = 0;  // one past "?="
  std::string charset;
  std::string bytes;  // decoded, still in `charset`
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

std::string decode_b(std::string_view s) {
  static constexpr std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  unsigned bits = 0;
  int nbits = 0;
  for (char c : s) {
    auto pos = alphabet.find(c);
    if (pos == std::string_view::npos) {
      if (c == '=') {
        break;  // padding: the rest is ignored
      }
      continue;  // lenient: stray characters are skipped
    }
    bits = (bits << 6) | static_cast<unsigned>(pos);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out += static_cast<char>((bits >> nbits) & 0xFF);
    }
  }
  return out;
}

std::string decode_q(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      out += ' ';
    } else if (s[i] == '=' && i + 2 < s.size() + 0 && hex_value(s[i + 1]) >= 0 &&
               hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Parses "=?charset?B|Q?text?=" at s[pos].
std::optional<encoded_word> parse_word(std::string_view s, std::size_t pos) {
  if (s.compare(pos, 2, "=?") != 0) {
    return std::nullopt;
  }
  std::size_t q1 = s.find('?', pos + 2);
  if (q1 == std::string_view::npos || q1 == pos + 2 || q1 - pos > 80 || q1 + 2 >= s.size() ||
      s[q1 + 2] != '?') {
    return std::nullopt;
  }
  char enc = static_cast<char>(std::toupper(static_cast<unsigned char>(s[q1 + 1])));
  if (enc != 'B' && enc != 'Q') {
    return std::nullopt;
  }
  std::size_t text_start = q1 + 3;
  // encoded-text has no '?' (RFC 2047 section 2), so the word ends at the next '?', which must
  // be followed by '='. Looking for "?=" anywhere further made a header of many unterminated
  // "=?x?B?" quadratic; the next '?' is never further than the next "=?".
  std::size_t close = s.find('?', text_start);
  if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != '=') {
    return std::nullopt;
  }
  std::string_view text = s.substr(text_start, close - text_start);
  for (char c : text) {
    if (c == ' ' || c == '\t') {
      return std::nullopt;
    }
  }
  encoded_word w;
  w.end = close + 2;
  w.charset = std::string(s.substr(pos + 2, q1 - pos - 2));
  w.bytes = enc == 'B' ? decode_b(text) : decode_q(text);
  return w;
}

// Walks `s`, calling on_text(raw) for plain stretches and on_run(decoded_utf8) for each run of
// adjacent encoded words.
template <typename Text, typename Run>
void scan(std::string_view s, Text on_text, Run on_run) {
  std::size_t i = 0;
  std::size_t text_start = 0;
  while (i < s.size()) {
    auto first = s[i] == '=' ? parse_word(s, i) : std::nullopt;
    if (!first) {
      ++i;
      continue;
    }
    on_text(s.substr(text_start, i - text_start));
    std::string decoded;
    std::string charset = first->charset;
    std::string bytes = first->bytes;
    std::size_t end = first->end;
    while (true) {
      std::size_t j = end;
      while (j < s.size() && (s[j] == ' ' || s[j] == '\t')) {
        ++j;
      }
      auto next = j < s.size() ? parse_word(s, j) : std::nullopt;
      if (!next) {
        break;
      }
      if (iconv_charset(next->charset) != iconv_charset(charset)) {
        decoded += to_utf8(bytes, charset);
        bytes.clear();
        charset = next->charset;
      }
      bytes += next->bytes;
      end = next->end;
    }
    decoded += to_utf8(bytes, charset);
    on_run(decoded);
    i = end;
    text_start = end;
  }
  on_text(s.substr(text_start));
}

}  // namespace

std::string decode_rfc2047(std::string_view value) {
  std::string out;
  scan(
      value, [&](std::string_view text) { out += to_utf8(text, ""); },
      [&](const std::string& decoded) { out += decoded; });
  return sanitize_utf8(out);
}

std::string predecode_address_header(std::string_view value) {
  std::string out;
  // Context at the point where a run starts: inside "..." or (...) or bare phrase.
  bool in_quote = false;
  int comment_depth = 0;
  auto track = [&](std::string_view text) {
    for (std::size_t i = 0; i < text.size(); ++i) {
      char c = text[i];
      if (c == '\\' && i + 1 < text.size()) {
        ++i;
      } else if (in_quote) {
        in_quote = c != '"';
      } else if (c == '"' && comment_depth == 0) {
        in_quote = true;
      } else if (c == '(') {
        ++comment_depth;
      } else if (c == ')' && comment_depth > 0) {
        --comment_depth;
      }
    }
    out += text;
  };
  auto escape = [](const std::string& s, bool for_comment) {
    std::string e;
    for (char c : s) {
      if (c == '\\' || c == '"' || (for_comment && (c == '(' || c == ')'))) {
        e += '\\';
      }
      if (c == '\r' || c == '\n') {
        c = ' ';
      }
      e += c;
    }
    return e;
  };
  scan(value, track, [&](const std::string& decoded) {
    if (in_quote) {
      out += escape(decoded, false);
    } else if (comment_depth > 0) {
      out += escape(decoded, true);
    } else {
      out += '"' + escape(decoded, false) + '"';
    }
  });
  return out;
}

}  // namespace sb::email
