// libFuzzer target for the IMAP response parser. The input is fed in pieces whose sizes come
// from the first byte, so split points are fuzzed too; small limits make the limit paths hot.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "channels/email/imap_parser.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) {
    return 0;
  }
  std::size_t step = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  sb::email::imap::ParserLimits limits;
  limits.max_literal = 1 << 16;
  limits.max_line = 1 << 16;
  limits.max_depth = 16;
  sb::email::imap::ResponseParser p(limits);
  for (std::size_t i = 0; i < in.size(); i += step) {
    p.feed(in.substr(i, step));
    while (auto r = p.next()) {
      (void)sb::email::imap::as_fetch(*r);
      (void)sb::email::imap::capabilities(*r);
    }
    if (p.error()) {
      break;
    }
  }
  return 0;
}
