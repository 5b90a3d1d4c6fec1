#pragma once
// Test doubles for the voice tests: a fake phone canonicaliser (the real one is libphonenumber,
// routing/identity.hpp) and an owning request builder.
#include <cctype>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "channels/voice/webhook.hpp"

namespace sb::voice::test {

// E.164 for "+<digits>" (punctuation allowed) and for 10-digit US national numbers.
inline std::optional<std::string> fake_canon(std::string_view raw, std::string_view region) {
  std::string digits;
  bool plus = !raw.empty() && raw.front() == '+';
  for (char c : raw.substr(plus ? 1 : 0)) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      digits.push_back(c);
    } else if (c != ' ' && c != '-' && c != '(' && c != ')' && c != '.') {
      return std::nullopt;
    }
  }
  if (plus && digits.size() >= 8) {
    return "+" + digits;
  }
  if (!plus && region == "US" && digits.size() == 10) {
    return "+1" + digits;
  }
  return std::nullopt;
}

inline const PhoneCanonicalizer kCanon = fake_canon;

struct Request {
  std::string method = "POST";
  std::string target;
  std::string content_type;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::int64_t now = 1767323045;               // 2026-01-02T03:04:05Z

  Request& with(std::string name, std::string value) {
    for (char& c : name) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    headers[name] = std::move(value);
    return *this;
  }

  WebhookRequest view() const {
    WebhookRequest r;
    r.method = method;
    r.target = target;
    r.content_type = content_type;
    r.body = body;
    r.now_unix_s = now;
    r.header = [this](std::string_view name) -> std::string_view {
      std::string key(name);
      for (char& c : key) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      auto it = headers.find(key);
      return it == headers.end() ? std::string_view{} : std::string_view{it->second};
    };
    return r;
  }
};

}  // namespace sb::voice::test
