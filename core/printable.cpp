#include "core/printable.hpp"

#include "core/utf8.hpp"

namespace sb {

std::string printable(std::string_view text, std::size_t max_chars) {
  std::string out;
  out.reserve(text.size() < 256 ? text.size() : 256);
  std::size_t chars = 0;
  while (!text.empty()) {
    if (chars == max_chars) {
      out += "...";
      break;
    }
    ++chars;
    const std::size_t n = utf8_sequence_length(text);
    const auto c = static_cast<unsigned char>(text[0]);
    if (n == 0) {
      out.push_back('?');  // one byte that is not UTF-8
      text.remove_prefix(1);
      continue;
    }
    if (c == '\t' || c == '\n' || c == '\r') {
      out.push_back(' ');
    } else if (c < 0x20 || c == 0x7F) {
      out.push_back('?');
    } else if (c == 0xC2 && static_cast<unsigned char>(text[1]) <= 0x9F) {
      out.push_back('?');  // C1: U+0080-U+009F are C2 80 - C2 9F
    } else {
      out.append(text.substr(0, n));
    }
    text.remove_prefix(n);
  }
  return out;
}

}  // namespace sb
