#pragma once
// IMAP mailbox names travel in "modified UTF-7" (RFC 3501 5.1.3): printable ASCII as is, "&"
// as "&-", everything else as UTF-16 in modified base64 between "&" and "-". Config files name
// folders in UTF-8 ("Entwürfe", "已发送"); this converts them for SELECT / MOVE.
#include <optional>
#include <string>
#include <string_view>

namespace sb::email::imap {

// nullopt when `utf8` is not valid UTF-8.
std::optional<std::string> encode_mailbox_name(std::string_view utf8);

}  // namespace sb::email::imap
