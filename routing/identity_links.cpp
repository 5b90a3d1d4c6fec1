#include "routing/identity_links.hpp"

#include <array>

#include "routing/identity_internal.hpp"

namespace sb {
namespace {

// Messenger has no usernames in its webhooks (page-scoped ids only) and Mastodon's identity is
// already the account, so neither has a link. Instagram messages from Meta carry no username
// today; the ingest API can send one.
constexpr std::array<IdentityLink, 4> kLinks{{
    {"x", "x_handle", true},
    {"telegram", "telegram_handle", true},
    {"instagram", "instagram_handle", true},
    // A WhatsApp id is the sender's E.164 number (issue 6).
    {"whatsapp", "phone", false},
}};

}  // namespace

const IdentityLink* link_from(std::string_view type) {
  for (const auto& l : kLinks) {
    if (l.type == type) {
      return &l;
    }
  }
  return nullptr;
}

const IdentityLink* link_to(std::string_view linked_type) {
  for (const auto& l : kLinks) {
    if (l.linked_type == linked_type) {
      return &l;
    }
  }
  return nullptr;
}

std::string username_key(std::string_view handle) {
  while (!handle.empty() && handle.front() == '@') {
    handle.remove_prefix(1);
  }
  return identity_detail::lower(handle);
}

std::string message_username(const Identity& from) {
  const IdentityLink* link = link_from(from.type);
  if (link == nullptr || !link->by_username) {
    return {};
  }
  std::string key = username_key(from.handle);
  if (identity_detail::all_digits(key)) {
    return {};
  }
  for (char c : key) {
    if (!identity_detail::is_alnum(c) && c != '_' && c != '.') {
      return {};
    }
  }
  return key;
}

}  // namespace sb
