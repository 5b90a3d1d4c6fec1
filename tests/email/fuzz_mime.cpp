// libFuzzer target for the MIME parser. Properties checked on every input: parsing returns
// (no crash, no exception), all strings are valid UTF-8, the text respects its cap.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "channels/email/charset.hpp"
#include "channels/email/mime.hpp"
#include "channels/email/threading.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view raw(reinterpret_cast<const char*>(data), size);
  sb::email::ParseLimits limits;
  limits.max_text_bytes = 64 * 1024;
  auto parsed = sb::email::parse_email(raw, limits);
  auto in = sb::email::to_inbound(parsed, "fuzz", "INBOX");
  using sb::email::is_valid_utf8;
  bool ok = is_valid_utf8(in.subject) && is_valid_utf8(in.text) && is_valid_utf8(in.external_id) &&
            in.text.size() <= limits.max_text_bytes && !in.external_id.empty();
  for (const auto& a : in.attachments) {
    ok = ok && is_valid_utf8(a.filename) && is_valid_utf8(a.content_type) && a.size >= 0;
  }
  for (const auto& id : in.to) {
    ok = ok && is_valid_utf8(id.value) && is_valid_utf8(id.name);
  }
  if (in.from) {
    ok = ok && is_valid_utf8(in.from->value) && is_valid_utf8(in.from->name);
  }
  ok = ok && is_valid_utf8(sb::email::normalize_subject(in.subject));
  if (!ok) {
    std::abort();
  }
  return 0;
}
