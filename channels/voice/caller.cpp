#include "channels/voice/caller.hpp"

#include <cctype>

#include "routing/identity.hpp"

namespace sb::voice {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

}  // namespace

std::string_view phone_part(std::string_view raw) {
  std::string_view s = trim(raw);
  for (std::string_view scheme : {"sips:", "sip:", "tel:"}) {
    if (istarts_with(s, scheme)) {
      s.remove_prefix(scheme.size());
      s = s.substr(0, s.find_first_of("@;?"));
      break;
    }
  }
  return s;
}

std::optional<Identity> phone_identity(std::string_view raw, std::string_view region,
                                       const PhoneCanonicalizer& canon) {
  // One list of withheld caller ids for every channel (routing/identity.hpp): words such as
  // "anonymous", and Twilio's keypad digits, which without '+' may be a real national number.
  if (is_withheld_number(phone_part(raw), region) || !canon) {
    return std::nullopt;
  }
  auto e164 = canon(phone_part(raw), region);
  if (!e164 || e164->empty() || is_withheld_number(*e164, region)) {
    return std::nullopt;
  }
  Identity id;
  id.type = "phone";
  id.value = std::move(*e164);
  return id;
}

void set_parties(Inbound& in, std::string_view from, std::string_view to,
                 std::string_view direction, std::string_view region,
                 const PhoneCanonicalizer& canon) {
  bool outbound = direction == "outbound";
  std::string_view customer = outbound ? to : from;
  std::string_view line = outbound ? from : to;
  in.from = phone_identity(customer, region, canon);
  in.to.clear();
  if (auto ours = phone_identity(line, region, canon)) {
    in.to.push_back(std::move(*ours));
  }
}

}  // namespace sb::voice
