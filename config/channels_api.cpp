// Telephony webhooks (Twilio, Telnyx, generic PBX) and social APIs (Mastodon, X, Meta,
// Telegram).
#include <algorithm>
#include <iterator>
#include <map>
#include <string_view>
#include <utility>
#include <vector>

#include "config/channels_common.hpp"
#include "config/validate.hpp"
#include "core/time.hpp"

namespace sb::config::detail {

void read_twilio(TableReader& r, ChannelNames& names, Twilio& out) {
  names.read(r, "twilio", out.name);
  r.secret("auth_token", out.auth_token);
  read_url(r, "public_url", out.public_url, true);
  r.finish();
}

void read_telnyx(TableReader& r, ChannelNames& names, Telnyx& out) {
  names.read(r, "telnyx", out.name);
  if (r.str("public_key", out.public_key, true)) {
    // Telnyx shows the account's Ed25519 public key base64-encoded in the portal; a raw
    // Ed25519 key is exactly 32 bytes.
    const auto key = decode_base64(out.public_key);
    if (!key || key->size() != 32) {
      r.ctx().add(r.line_of_key("public_key"),
                  "channels.telnyx.public_key must be a base64 Ed25519 public key (32 bytes)");
    }
  }
  r.finish();
}

void read_call_webhook(TableReader& r, ChannelNames& names, CallWebhook& out) {
  names.read(r, "call_webhook", out.name);
  r.secret("secret", out.secret);
  r.finish();
}

void read_mastodon(TableReader& r, ChannelNames& names, Mastodon& out) {
  names.read(r, "mastodon", out.name);
  read_api_url(r, "base_url", out.base_url, true);
  r.secret("access_token", out.access_token);
  r.duration("poll_interval", out.poll_interval);
  read_backfill(r, out.backfill);
  r.finish();
}

namespace {

// The four secrets of OAuth 1.0a User Context: all or none. X refuses the app-only bearer token
// on POST /2/tweets ("Unsupported Authentication", 403), so an account without them polls but
// cannot reply: loaded, with a warning.
void read_x_user_context(TableReader& r, X& out) {
  XUserContext keys;
  const std::pair<const char*, std::string*> fields[] = {
      {"consumer_key", &keys.consumer_key},
      {"consumer_secret", &keys.consumer_secret},
      {"access_token", &keys.access_token},
      {"access_token_secret", &keys.access_token_secret},
  };
  std::vector<std::string> missing;
  for (const auto& [key, value] : fields) {
    const std::string env_key = std::string(key) + "_env";
    if (!r.has(key) && !r.has(env_key)) {
      missing.push_back(r.dotted(env_key));
    }
    r.secret(key, *value, false);
  }
  if (missing.empty()) {
    out.user_context = std::move(keys);
    return;
  }
  if (missing.size() == std::size(fields)) {
    r.ctx().warn(r.line(), "channels.x account \"" + out.name +
                               "\" cannot reply: X takes POST /2/tweets only in user context, "
                               "not with the app-only bearer token; set consumer_key_env, "
                               "consumer_secret_env, access_token_env and "
                               "access_token_secret_env (OAuth 1.0a) to reply");
    return;
  }
  std::string list;
  for (std::size_t i = 0; i < missing.size(); ++i) {
    list += i == 0 ? "" : (i + 1 == missing.size() ? " and " : ", ");
    list += missing[i];
  }
  r.ctx().add(r.line(), "missing " + list +
                            ": OAuth 1.0a user context needs all four of consumer_key_env, "
                            "consumer_secret_env, access_token_env and access_token_secret_env");
}

}  // namespace

void read_x(TableReader& r, ChannelNames& names, X& out) {
  names.read(r, "x", out.name);
  read_api_url(r, "base_url", out.base_url, false);
  r.secret("bearer_token", out.bearer_token);
  r.str("user_id", out.user_id, true);
  r.duration("poll_interval", out.poll_interval);
  read_backfill(r, out.backfill);
  read_x_user_context(r, out);
  r.boolean("direct_messages", out.direct_messages);
  if (out.direct_messages.value_or(false) && !out.user_context) {
    // X lists DMs in user context only: the bearer token is refused on GET /2/dm_events.
    r.ctx().add(r.line(), "channels.x account \"" + out.name +
                              "\": direct_messages = true needs OAuth 1.0a user context "
                              "(consumer_key_env, consumer_secret_env, access_token_env and "
                              "access_token_secret_env): X lists direct messages only in it");
  }
  // An OAuth 1.0a access token is "<numeric id of the user who granted it>-<random>": one of
  // another account than user_id would post replies as that account while the mentions are
  // user_id's. Named by the two ids (public), never by the token. A token without that prefix
  // (another format, a proxy's) says nothing and passes.
  if (out.user_context && !out.user_id.empty()) {
    std::string_view prefix = x_token_user(out.user_context->access_token);
    if (!prefix.empty() && prefix != out.user_id) {
      r.ctx().add(r.line(), "channels.x account \"" + out.name +
                                "\": access_token belongs to the X user " + std::string(prefix) +
                                ", not to user_id " + out.user_id +
                                ": replies would be posted as another account than the one "
                                "whose mentions are read");
    }
  }
  r.finish();
}

namespace {

// [[channels.meta.pages]]: one app serves every Page subscribed to it, and the webhook takes
// their messages alike, but Meta's Send API answers a Page's customers only with that Page's
// access token ("Send API Reference": POST /PAGE-ID/messages with a Page access token; a PSID
// is specific to its Page, "Messenger Platform > Get Started").
void read_meta_pages(TableReader& r, Meta& out) {
  std::map<std::string, int> seen;  // id -> line of its first entry
  for (const toml::table* table : r.tables("pages")) {
    TableReader p(r.ctx(), *table, "channels.meta.pages");
    MetaPage page;
    if (p.str("id", page.id, true)) {
      // Meta's ids (Page, Instagram account) are numbers written as strings.
      if (page.id.empty() || page.id.find_first_not_of("0123456789") != std::string::npos) {
        p.ctx().add(p.line_of_key("id"),
                    "channels.meta.pages.id must be the numeric Page or "
                    "Instagram account id the webhook's entry.id names (got \"" +
                        page.id + "\")");
      } else if (auto [it, fresh] = seen.emplace(page.id, p.line_of_key("id")); !fresh) {
        p.ctx().add(p.line_of_key("id"),
                    "duplicate page id \"" + page.id + "\" in channels.meta \"" + out.name +
                        "\" (first at line " + std::to_string(it->second) + ")");
      }
    }
    p.secret("access_token", page.access_token);
    p.finish();
    out.pages.push_back(std::move(page));
  }
}

}  // namespace

void read_meta(TableReader& r, ChannelNames& names, Meta& out) {
  names.read(r, "meta", out.name);
  r.secret("app_secret", out.app_secret);
  // The verify token is only compared with hub.verify_token, but it is still a shared secret.
  r.secret("verify_token", out.verify_token);
  read_meta_pages(r, out);
  // With pages, the account's token is only the fallback (and WhatsApp's): it may be left out.
  r.secret("access_token", out.access_token, out.pages.empty());
  read_api_url(r, "base_url", out.base_url, false);
  r.finish();
}

void read_telegram(TableReader& r, ChannelNames& names, Telegram& out) {
  names.read(r, "telegram", out.name);
  read_api_url(r, "base_url", out.base_url, false);
  r.secret("bot_token", out.bot_token);
  r.finish();
}

}  // namespace sb::config::detail
