#include "channels/voice/webhook.hpp"

#include <cctype>

namespace sb::voice {

WebhookResult webhook_error(int status, std::string code, std::string message) {
  WebhookResult r;
  r.status = status;
  r.error_code = std::move(code);
  r.error_message = std::move(message);
  return r;
}

std::string media_type(std::string_view content_type) {
  std::string_view s = content_type.substr(0, content_type.find(';'));
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace sb::voice
