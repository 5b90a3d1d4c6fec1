#pragma once
// Mastodon: mention notifications in, threaded replies out (issue 6; docs.joinmastodon.org
// methods/notifications and methods/statuses).
//
// Polling protocol, for the poller built on this: the cursor is the newest committed
// notification id. Ask `mastodon_notifications_target(cursor)` (min_id = cursor): Mastodon then
// returns the page of notifications *immediately newer* than min_id (newest first inside the
// page). parse_mastodon_notifications returns them oldest first with the page's newest id;
// submit items + cursor in one transaction, then ask again with the new cursor until a page
// comes back empty, or with a Link header that names no newer page (caught up). A short page
// is not the end: a server may cap `limit` below what was asked (Mastodon documents a maximum
// of 80; compatible servers such as Pleroma, Akkoma and GoToSocial cap lower). No gap, no
// duplicate, oldest first; a crash replays one page and dedupe absorbs it. Pace with
// rate_pacing.hpp. Ids are not made visible in order (a notification is numbered before its
// insert commits): the poller starts each poll one advance behind (from the cursor before its
// last advance) and leaves out what its last poll read.
//
// First start with a bounded look-back (config `backfill`, no cursor yet): min_id=0 would read
// the account's whole history. Instead `mastodon_backfill_target` reads newest first (no min_id,
// then max_id = the page's oldest id) until a page reaches past the look-back, or the history
// ends (an empty page, or a Link header without rel="next"); the mentions inside it are stored
// oldest first with the newest id as the cursor, in one transaction.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "channels/social/common.hpp"
#include "config/config.hpp"
#include "core/interaction.hpp"

namespace sb::social {

inline constexpr int kMastodonPageLimit = 40;  // the API default (maximum 80)

struct MastodonPage {
  bool ok = false;
  std::string error;              // when !ok: why the body was rejected
  std::vector<Inbound> items;     // mentions and direct messages, oldest first
  std::string newest_id;          // highest notification id in the page (any type): the new cursor
  std::string oldest_id;          // lowest one: max_id of the next older page
  std::int64_t oldest_at_ms = 0;  // the earliest notification created_at (Unix ms); 0: none given
  std::size_t notifications = 0;  // notifications in the page, of every type
  // The response's Link header (RFC 8288), set by the poller: whether there was one, and whether
  // it named an older page (rel="next") and a newer one (rel="prev").
  bool link_header = false;
  bool link_next = false;
  bool link_prev = false;
};

// The stored cursor (scope "mentions" of account "mastodon:<name>"): "<min_id>:<instance>".
// Notification ids are the instance's own: a min_id sent to another instance (base_url changed)
// names nothing there, and skips or replays whatever its ids happen to be. The instance is
// mastodon_instance_key(base_url). A row written before the instance was stored is the bare
// min_id (instance empty): it is taken for the configured instance's, as it was.
struct MastodonCursor {
  std::string min_id;
  std::string instance;
};
MastodonCursor parse_mastodon_cursor(std::string_view value);
std::string format_mastodon_cursor(const MastodonCursor& c);

// base_url's host, with its port when not the scheme's default and its path ("mastodon.example",
// "127.0.0.1:8443/masto"): what tells one instance from another, whatever the spelling of the
// URL (case, a trailing slash). base_url itself when it does not parse.
std::string mastodon_instance_key(std::string_view base_url);

// "/api/v1/notifications?types[]=mention&limit=40&min_id=<cursor or 0>" (append to base_url's
// path). An empty cursor reads from the beginning (min_id=0), oldest first.
std::string mastodon_notifications_target(std::string_view min_id, int limit = kMastodonPageLimit);

// The same without min_id: the newest page, or with `max_id` the page just older than it.
std::string mastodon_backfill_target(std::string_view max_id, int limit = kMastodonPageLimit);

// The conversation key of a status in one customer's thread: "mastodon:<account>:<status id>:
// <customer user@domain>". Public threads are shared: another customer answering in it (which
// mentions us too) starts a conversation of his own instead of joining this customer's.
std::string mastodon_thread_key(const config::Mastodon& cfg, std::string_view status_id,
                                std::string_view customer);

// The instance's domain from base_url ("mastodon.example"), for local accounts' identities:
// the fallback when the instance does not tell its own (below).
std::string mastodon_instance_domain(std::string_view base_url);

// The domain local accounts belong to, from a GET /api/v2/instance (`domain`) or
// /api/v1/instance (`uri`) body; "" when the body names none. Both are the server's LOCAL_DOMAIN,
// which is not always the host of base_url (WEB_DOMAIN): users of social.example.com may be
// user@example.com. A full URL (some non-Mastodon servers put one in `uri`) gives its host.
std::string parse_mastodon_instance_domain(std::string_view body);

// A MIME family for a MediaAttachment `type` ("image" -> "image/*", "gifv" -> "video/*"; else
// "application/octet-stream"): Mastodon names no MIME type of its own.
std::string mastodon_media_type(std::string_view type);

// Parses a GET /api/v1/notifications response body. `local_domain` completes local accounts'
// acct ("user" -> "user@<local_domain>"); empty: base_url's host.
MastodonPage parse_mastodon_notifications(const config::Mastodon& cfg, std::string_view body,
                                          std::string_view local_domain = {});

// The visibility of a reply to the mention an interaction came from (kept in its flags as
// "visibility:<v>"): the mention's own, except that a followers-only ("private") mention is
// answered "direct" (a private reply would reach the support account's followers); without that
// flag, "direct" for a direct message (never answered in public), else "public".
std::string mastodon_visibility(const std::vector<std::string>& flags, std::string_view kind);

struct MastodonReply {
  std::string acct;             // the customer's acct, "user" or "user@domain" (no leading @)
  std::string text;             // the agent's answer
  std::string in_reply_to_id;   // the customer's status id (the interaction's external_id)
  std::string visibility;       // mastodon_visibility(): the mention's, "private" made "direct"
  std::string idempotency_key;  // the outbound interaction id: a retried POST never posts twice
};

// POST /api/v1/statuses with status = "@acct text", in_reply_to_id, visibility, and the
// Idempotency-Key header (Mastodon keeps keys for one hour).
HttpRequestSpec mastodon_reply(const config::Mastodon& cfg, const MastodonReply& reply);

// The new status id of a successful reply (the outbound interaction's external id).
std::string parse_mastodon_status_id(std::string_view body);

}  // namespace sb::social
