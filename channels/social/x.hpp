#pragma once
// X (API v2): mentions timeline in, threaded replies out (issue 6; docs.x.com
// "GET /2/users/:id/mentions", "POST /2/tweets", "Rate limits", "Usage caps").
//
// Polling protocol: the cursor is the newest committed tweet id. The first page is asked with
// since_id = cursor; further pages add pagination_token = meta.next_token. X pages newest first,
// so committing a page's newest_id before the older pages are in would lose them after a crash.
// XMentionsPager therefore gathers a whole backlog (at most 800 tweets: the endpoint's reach) and
// hands it over oldest first with the new cursor, for one transaction.
//
// First start (no cursor yet) with a bounded look-back (config `backfill`): the requests add
// start_time (the look-back's start, "YYYY-MM-DDTHH:mm:ssZ", inclusive, second granularity) so X
// returns only those mentions; what is older all the same (a server that ignores it) is dropped
// here, and paging stops at the first page that reaches past it. The cursor is the newest id.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "channels/social/common.hpp"
#include "channels/social/rate_pacing.hpp"
#include "config/config.hpp"
#include "core/interaction.hpp"

namespace sb::social {

struct XMentionsPage {
  bool ok = false;
  std::string error;
  std::vector<Inbound> items;  // oldest first within the page
  std::string newest_id;       // meta.newest_id
  std::string oldest_id;       // meta.oldest_id
  std::string next_token;      // meta.next_token: more (older) results exist
  int result_count = 0;
};

// "/2/users/{id}/mentions?max_results=100&expansions=author_id&tweet.fields=...[&since_id=]
// [&start_time=][&pagination_token=]".
std::string x_mentions_target(const config::X& cfg, std::string_view since_id,
                              std::string_view pagination_token, std::string_view start_time = {});

// Parses a 200 response of the mentions endpoint.
XMentionsPage parse_x_mentions(const config::X& cfg, std::string_view body);

// A non-2xx answer, classified for the poller and the sender.
struct XError {
  enum class Kind { none, rate_limited, usage_capped, unauthorized, server, other };
  Kind kind = Kind::none;
  std::optional<Clock::time_point> reset;  // x-rate-limit-reset, when given
  std::string title;
  std::string detail;
  // A 403 refusing a post as a repeat of one the account made recently (see x.cpp).
  bool duplicate_content = false;
  // A 429 of a used-up 24-hour posting limit (see x.cpp): `scope` "user" (the account's) or
  // "app" (the developer app's, shared by every account it posts for), and the limit's reset.
  // No reset when the header is not a time (garbage, or too large for the clock): the reply is
  // then retried as a 429 of the 15-minute window.
  struct DailyCap {
    std::string scope;
    std::optional<Clock::time_point> reset;
    std::string reset_header;  // the header's name and value as X sent them, for the log
  };
  std::optional<DailyCap> daily_cap;
  // 429 and 5xx are worth retrying later; a usage cap, bad credentials and 4xx are not (a usage
  // cap lasts until the billing period ends: pause the account and say so).
  bool retryable() const { return kind == Kind::rate_limited || kind == Kind::server; }
};

// Reads the status, the problem body ({"title","detail","type": ".../problems/usage-capped"}),
// the x-rate-limit-reset header (Unix seconds) and, on a 429, the 24-hour limits' headers
// (x-user-limit-24hour-* and x-app-limit-24hour-*).
XError classify_x_response(int http_status, std::string_view body, const HeaderLookup& header);

// Gathers the pages of one poll (see the file comment).
class XMentionsPager {
 public:
  // `since_ms` (Unix ms, 0: none): the look-back of a first start; used only without since_id.
  explicit XMentionsPager(std::string since_id, std::size_t max_items = 800,
                          std::int64_t since_ms = 0);

  // Asks from `id` (below the cursor: held_back_id) instead, to read a short overlap again; the
  // cursor still moves only past since_id.
  void read_again_from(std::string id) { request_since_ = std::move(id); }
  // The target of the next request.
  std::string next_target(const config::X& cfg) const;
  // Adds one parsed page; returns true when the backlog is complete.
  bool add(XMentionsPage page);
  bool done() const { return done_; }
  // The gathered items oldest first, and the cursor to commit with them (nullopt: unchanged).
  std::vector<Inbound> take_items();
  // The ids of the posts read but left out as older than the look-back (a first start's).
  const std::vector<std::string>& skipped() const { return skipped_; }
  std::optional<std::string> cursor() const;

 private:
  std::string since_id_;
  std::string request_since_;  // read_again_from(); empty: since_id_
  std::size_t max_items_;
  std::int64_t since_ms_ = 0;
  std::string start_time_;  // since_ms_ as X's start_time
  std::string next_token_;
  std::string newest_id_;
  std::vector<std::vector<Inbound>> pages_;  // newest page first
  std::size_t count_ = 0;
  std::vector<std::string> skipped_;
  bool done_ = false;
};

// Direct messages (docs.x.com "Direct Messages lookup", GET /2/dm_events; "Manage Direct
// Messages", POST /2/dm_conversations/...). Both take user context only (OAuth 1.0a here).
//
// Polling protocol: GET /2/dm_events lists the account's DM events, sent and received, newest
// first, from the last 30 days, with no since_id and no start_time: the cursor is the newest
// event id committed, and XDmPager pages with pagination_token until an event at or below it
// appears (ids are snowflakes: compared numerically, as digit strings), or, on a first start,
// one older than the look-back (created_at). As for mentions, a later poll pages a little
// further, to kCursorOverlapMs of snowflake time below the cursor (read_again_from). The whole
// backlog is stored in one transaction, oldest first, with the newest id seen (the account's own
// events too) as the new cursor.
//
// A DM is stored as kind direct_message with external_id "dm:<event id>": dedupe is per
// (channel, account, external_id), and tweet ids and DM event ids are both snowflakes, so the
// prefix keeps a DM from ever being taken for a duplicate of a mention (or the reverse). One
// conversation per DM conversation (thread key "x:<account>:dm:<dm_conversation_id>"), whose id
// rides along as the flag "dm_conversation_id:<id>" for the reply.
inline constexpr std::string_view kXDmPrefix = "dm:";

// One event of a dm_events page: its id and date (for the pager's stops) and, when it is a
// message from someone else, the interaction.
struct XDmEvent {
  std::string id;
  std::int64_t created_at_ms = 0;  // 0: not given
  std::optional<Inbound> in;
};

struct XDmPage {
  bool ok = false;
  std::string error;
  std::vector<XDmEvent> events;  // as X sent them (newest first)
  std::string next_token;        // meta.next_token: more (older) events exist
};

// "/2/dm_events?max_results=100&event_types=MessageCreate&dm_event.fields=...&expansions=
// sender_id,attachments.media_keys&media.fields=...[&pagination_token=]".
std::string x_dm_events_target(std::string_view pagination_token);

// Parses a 200 response of GET /2/dm_events. Events other than MessageCreate, and those the
// account sent itself (sender_id == user_id: our replies, or someone answering in the X app),
// make no interaction.
XDmPage parse_x_dm_events(const config::X& cfg, std::string_view body);

// Gathers the pages of one DM poll (see above).
class XDmPager {
 public:
  // `cursor`: the committed newest event id ("" on a first start); `since_ms` (Unix ms, 0: none):
  // a first start's look-back.
  explicit XDmPager(std::string cursor, std::int64_t since_ms = 0);
  // Pages down to `id` (below the cursor: held_back_id) instead, to read a short overlap again
  // (event ids are only roughly in time order); the cursor still moves only past `cursor`.
  void read_again_from(std::string id) { stop_ = std::move(id); }
  std::string next_target() const { return x_dm_events_target(next_token_); }
  // Adds one parsed page; returns true when the backlog is complete.
  bool add(XDmPage page);
  bool done() const { return done_; }
  // The gathered DMs oldest first, and the cursor to commit with them (nullopt: unchanged).
  std::vector<Inbound> take_items();
  std::optional<std::string> cursor() const;

 private:
  std::string cursor_;
  std::string stop_;  // read_again_from(); empty: cursor_
  std::int64_t since_ms_ = 0;
  std::string next_token_;
  std::string newest_;                                  // the newest event id seen
  std::vector<std::pair<std::string, Inbound>> items_;  // (event id, DM)
  bool done_ = false;
};

// A reply by DM: POST /2/dm_conversations/{dm_conversation_id}/messages {"text": ...} when the
// conversation is known (one-to-one and group alike), else POST
// /2/dm_conversations/with/{participant_id}/messages (one-to-one), authorised by
// x_authorize_user. nullopt when neither id is usable in a path (digits, and '-' in a
// one-to-one conversation id).
std::optional<HttpRequestSpec> x_dm_reply(const config::X& cfg, std::string_view text,
                                          std::string_view dm_conversation_id,
                                          std::string_view participant_id);

// The new event's id from a 201 response ({"data":{"dm_conversation_id":...,"dm_event_id":...}}).
std::string parse_x_dm_event_id(std::string_view body);

// POST /2/tweets {"text": ..., "reply": {"in_reply_to_tweet_id": ...}}, authorised by
// x_authorize_user with a fresh nonce and the current time.
HttpRequestSpec x_reply(const config::X& cfg, std::string_view text,
                        std::string_view in_reply_to_tweet_id);

// Adds the Authorization of a call X accepts only in user context (POST /2/tweets) to `spec`,
// whose target is relative to cfg.base_url: OAuth 1.0a (HMAC-SHA1) with `nonce` and `timestamp`
// (Unix seconds) when cfg.user_context is set; else the bearer token, which X refuses there with
// 403 "Unsupported Authentication" (config warns). Reads keep the bearer token: the mentions
// timeline takes it.
void x_authorize_user(const config::X& cfg, HttpRequestSpec& spec, std::string_view nonce,
                      std::int64_t timestamp);

// The new tweet's id from a 201 response ({"data":{"id":...,"text":...}}).
std::string parse_x_tweet_id(std::string_view body);

}  // namespace sb::social
