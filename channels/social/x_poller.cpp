// X mentions and direct messages pollers: see x.hpp for why a backlog is gathered whole before
// it is stored.

// GCC 12 false positive inside Asio's awaitable frame allocator (see imap_client.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <algorithm>
#include <charconv>
#include <set>
#include <utility>

#include "channels/social/oauth1.hpp"
#include "channels/social/pollers.hpp"
#include "channels/social/rate_pacing.hpp"
#include "channels/social/x.hpp"
#include "core/log.hpp"
#include "core/time.hpp"

namespace sb::social {

namespace asio = boost::asio;
using std::chrono::milliseconds;

namespace {

// The id of the post version read (an edit is stored under its original's id: x.cpp).
std::string x_post_id(const Inbound& in) {
  for (const std::string& f : in.flags) {
    if (f.rfind("x_post_id:", 0) == 0) {
      return f.substr(10);
    }
  }
  return in.external_id;
}

// The event id of a DM read (its external id is "dm:<event id>", x.hpp).
std::string dm_event_id(const Inbound& in) {
  return in.external_id.substr(std::min(in.external_id.size(), kXDmPrefix.size()));
}

// The overlap's rule, mentions' and DMs' alike: takes out of `items` what the poll before read
// (`read_before`, by `id_of`), and, at or below `cursor`, what is older than a first start's
// look-back (`since_ms`, 0: none). Returns what this poll read (and `skipped`, read but left
// out by the pager): the next poll's `read_before`, once this poll's commit succeeded. Not
// before: after a failed commit the cursor stays, and the next poll, reading the same ids
// again, would leave them all out as read and commit the newer cursor past them.
std::set<std::string> leave_out_read(std::vector<Inbound>& items,
                                     const std::set<std::string>& read_before,
                                     std::int64_t since_ms, const std::string& cursor,
                                     std::string (*id_of)(const Inbound&),
                                     const std::vector<std::string>& skipped = {}) {
  std::set<std::string> read(skipped.begin(), skipped.end());
  std::erase_if(items, [&](const Inbound& in) {
    std::string id = id_of(in);
    read.insert(id);
    return read_before.contains(id) || (since_ms > 0 && !id_less(cursor, id) &&
                                        in.occurred_at_ms != 0 && in.occurred_at_ms < since_ms);
  });
  return read;
}

// x-rate-limit-remaining / -reset (Unix seconds) with the same rule as Mastodon's pacing.
milliseconds x_pace(const net::HttpResponse& res) {
  auto rem = res.header("x-rate-limit-remaining");
  auto reset = res.header("x-rate-limit-reset");
  if (!rem || !reset) {
    return milliseconds(0);
  }
  int remaining = 0;
  auto at = parse_unix_seconds_reset(*reset);
  if (std::from_chars(rem->data(), rem->data() + rem->size(), remaining).ec != std::errc{} || !at) {
    return milliseconds(0);
  }
  PacingPolicy policy;
  policy.reserve = 2;  // X windows are small (e.g. 10 or 180 per 15 min)
  return next_delay(remaining, *at, Clock::now(), policy);
}

// The wait after a 429 of a read (mentions, DMs), before asking for the same page again.
// x-rate-limit-reset is the server's clock: when ours is ahead, the reset looks past
// already, and "reset - now" would retry at once, every second, for as long as the
// window lasts. As for Mastodon, a 429 never leads to a quick retry: without a reset
// ahead of us, wait a minute. A reset further ahead than X's 15-minute windows is
// bounded (Runtime::max_poll_wait): X asked again then answers with the real one.
// X's 24-hour limits (e.daily_cap, x.cpp) count posts, not reads: docs.x.com "X API
// Rate Limits" gives the timelines, mentions among them, and the DM lookups 15-minute
// windows only, so a 429 here is always the window's.
milliseconds x_read_429_wait(const Runtime& rt, const config::X& cfg, const XError& e) {
  auto now = Clock::now();
  return e.reset && *e.reset > now
             ? bound_poll_wait(rt, "x", cfg.name, *e.reset - now + std::chrono::seconds(1),
                               "x-rate-limit-reset")
             : milliseconds(60'000);
}

// A read refused otherwise than by the cases its poller handles (429, usage cap, DMs' 403):
// the status with X's problem title and detail, for the back-off's log.
PollResult x_read_failed(int status, const XError& e) {
  return PollResult::failed("HTTP " + std::to_string(status) + ": " + e.title +
                            (e.detail.empty() ? "" : " (" + e.detail + ")"));
}

// What the mentions and the DM pollers share: the account's cursor under the poller's own scope,
// a first start's look-back, the ids the last poll read (for the overlap), the pacing carried to
// the next request; and the steps around the pages, alike but for what they name.
class XReadPoller : public Poller {
 public:
  const char* channel() const override { return "x"; }
  const std::string& account() const override { return cfg_.name; }

 protected:
  // `scope`: the cursor's; `noun`: what is read, in the log and in a storage error.
  XReadPoller(Runtime& rt, const config::X& cfg, const char* scope, const char* noun)
      : rt_(rt), cfg_(cfg), key_("x:" + cfg_.name), scope_(scope), noun_(noun) {}

  // Loads the committed cursor (once) and returns whether this poll is a first start's (no
  // cursor yet): one reads back `backfill` only; "all" (nullopt): all X returns. The look-back
  // starts from the first poll and stays put: while nothing read has set a cursor yet, a later
  // poll must still take what arrived since then.
  bool start_poll() {
    if (!loaded_) {
      cursor_ = rt_.pipeline.cursor(key_, scope_).value_or("");
      loaded_ = true;
    }
    const bool first = cursor_.empty();
    if (first && cfg_.backfill && since_ms_ == 0) {
      since_ms_ = std::max<std::int64_t>(1, now_ms() - cfg_.backfill->count());
    }
    return first;
  }

  // A 429 of a read: counted, said, and waited out (x_read_429_wait) before the same page is
  // asked for again; the pages gathered so far are kept.
  asio::awaitable<void> wait_out_429(const XError& e) {
    milliseconds wait = x_read_429_wait(rt_, cfg_, e);
    rt_.metrics.inc("switchboard_social_rate_limited_total",
                    {{"channel", "x"}, {"account", cfg_.name}});
    logger("social")->warn("[x:{}] {}{}rate limited (429); waiting {} s for x-rate-limit-reset",
                           cfg_.name, what(), *what() != '\0' ? ": " : "", wait.count() / 1000);
    co_await sleep_for(rt_.ex, wait);
  }

  // The pacing the response's rate-limit headers ask before the next request (also across polls).
  void pace_after(const net::HttpResponse& res) {
    pace_ = bound_poll_wait(rt_, "x", cfg_.name, x_pace(res), "x-rate-limit-reset (pacing)",
                            milliseconds(0));
  }

  // The poll's end once the pager is done: what the poll before read is left out
  // (leave_out_read, by `id_of`; `skipped`: read but left out by the pager), the rest is stored
  // with the pager's cursor in one transaction, and the cursor moves only once that committed.
  // Takes (and empties) named locals of the caller, which awaits it at once (as store_batch);
  // the default `skipped` is a named one too, not a temporary: GCC 12 mishandles temporaries
  // that live across a suspension point inside one full expression (runtime.cpp).
  asio::awaitable<PollResult> end_poll(bool first, std::optional<std::string>& cursor,
                                       std::vector<Inbound>& items,
                                       std::string (*id_of)(const Inbound&),
                                       const std::vector<std::string>& skipped = kNoneSkipped) {
    auto read = leave_out_read(items, read_before_, first ? 0 : since_ms_, cursor_, id_of, skipped);
    std::size_t n = items.size();
    std::optional<CursorUpdate> cu;
    if (cursor) {
      cu = CursorUpdate{key_, scope_, *cursor};
    }
    std::string err = co_await store_batch(rt_, "x", cfg_.name, items, cu);
    if (!err.empty()) {
      co_return PollResult::failed(std::string("storing ") + noun_ + ": " + err);
    }
    read_before_ = std::move(read);
    if (cursor) {
      cursor_ = *cursor;
    }
    if (n > 0 || (first && cursor)) {
      logger("social")->info("[x:{}] stored {} {}{}; cursor {}", cfg_.name, n, noun_,
                             first && since_ms_ ? " (first start: the look-back only)" : "",
                             cursor_);
    }
    co_return PollResult::again_in(std::max(cfg_.poll_interval, std::exchange(pace_, {})));
  }

  Runtime& rt_;
  const config::X& cfg_;
  std::string key_;
  std::string cursor_;
  std::int64_t since_ms_ = 0;  // a first start's look-back start (Unix ms), set once
  milliseconds pace_{0};  // the wait the last response's rate-limit headers ask before the next

 private:
  static inline const std::vector<std::string> kNoneSkipped;
  const char* scope_;
  const char* noun_;
  bool loaded_ = false;
  std::set<std::string> read_before_;  // the ids (post ids, DM event ids) the last poll read
};

class XPoller final : public XReadPoller {
 public:
  XPoller(Runtime& rt, const config::X& cfg) : XReadPoller(rt, cfg, "mentions", "mentions") {
    rt_.paused.emplace_back(Labels{{"channel", "x"}, {"account", cfg_.name}}, paused_);
  }

  asio::awaitable<PollResult> poll_once() override {
    auto log = logger("social");
    const bool first = start_poll();
    XMentionsPager pager(cursor_, 800, first ? since_ms_ : 0);
    if (!first) {
      // X's ids are only roughly in time order: a mention may show up after a newer one was
      // read. The last kCursorOverlapMs below the cursor are read again (x snowflake: ms << 22).
      pager.read_again_from(held_back_id(cursor_, 22, 0));
    }
    while (!pager.done()) {
      // Paced before each request from the previous response's budget (also across polls), never
      // between a fetch and the commit of what it fetched.
      co_await sleep_for(rt_.ex, std::exchange(pace_, milliseconds(0)));
      HttpRequestSpec spec{"GET", pager.next_target(cfg_), "", "", {}};
      spec.headers.emplace_back("Authorization", "Bearer " + cfg_.bearer_token);
      net::HttpRequest req = to_request(cfg_.base_url, spec);
      net::HttpResponse res = co_await rt_.http.request(std::move(req));
      if (res.status == 0) {
        co_return PollResult::failed(res.error);
      }
      XError e = classify_x_response(res.status, res.body, lookup_in(res));
      if (e.kind == XError::Kind::rate_limited) {
        co_await wait_out_429(e);
        continue;
      }
      if (e.kind == XError::Kind::usage_capped) {
        // The monthly cap lasts until the billing period ends: retrying only burns requests.
        paused_->store(true);
        log->error("[x:{}] usage cap reached ({}); account paused, next check in 1 hour", cfg_.name,
                   e.detail.empty() ? e.title : e.detail);
        co_return PollResult::again_in(std::chrono::hours(1));
      }
      if (e.kind != XError::Kind::none) {
        co_return x_read_failed(res.status, e);
      }
      paused_->store(false);
      XMentionsPage page = parse_x_mentions(cfg_, res.body);
      if (!page.ok) {
        co_return PollResult::failed(page.error);
      }
      pager.add(std::move(page));
      pace_after(res);
    }
    auto cursor = pager.cursor();
    auto items = pager.take_items();
    // What the overlap reads again was read by the poll before (this one's ids cover the next
    // one's overlap): left out, not stored and counted as a duplicate at every poll. After a
    // restart the first poll's overlap is stored once more, as duplicates.
    // A first start's look-back holds for the overlap too: the posts it left out count as read,
    // and below the cursor (X filtered them by start_time, unseen) a post older than it stays out.
    co_return co_await end_poll(first, cursor, items, x_post_id, pager.skipped());
  }

 private:
  std::shared_ptr<std::atomic<bool>> paused_ = std::make_shared<std::atomic<bool>>(false);
};

// The account's direct messages (x.hpp): GET /2/dm_events in user context, its own cursor
// (scope "direct_messages" beside the mentions' "mentions"), committed with the DMs it covers.
// A poller of its own: a DM failure (an app without DM access answers 403) backs off the DMs
// alone, and the mentions go on.
class XDmPoller final : public XReadPoller {
 public:
  XDmPoller(Runtime& rt, const config::X& cfg)
      : XReadPoller(rt, cfg, "direct_messages", "direct messages") {}

  const char* what() const override { return "direct messages"; }

  asio::awaitable<PollResult> poll_once() override {
    auto log = logger("social");
    // As for mentions: a first start reads back `backfill` only, from the first poll on, until
    // an event sets the cursor. GET /2/dm_events has no start_time: the pager stops at the
    // first older event. X keeps 30 days: "all" reads those.
    const bool first = start_poll();
    XDmPager pager(cursor_, first ? since_ms_ : 0);
    if (!first) {
      // DM event ids are snowflakes like the posts', and as roughly in time order: a DM may
      // show up after a newer one was read. The pager goes on down to kCursorOverlapMs below
      // the cursor (ms << 22).
      pager.read_again_from(held_back_id(cursor_, 22, 0));
    }
    while (!pager.done()) {
      co_await sleep_for(rt_.ex, std::exchange(pace_, milliseconds(0)));
      HttpRequestSpec spec{"GET", pager.next_target(), "", "", {}};
      // User context only (docs.x.com "Direct Messages lookup"): the bearer token is refused.
      // Signed afresh for each request (a nonce is good once); the query is signed too.
      x_authorize_user(cfg_, spec, oauth1_nonce(), now_ms() / 1000);
      net::HttpRequest req = to_request(cfg_.base_url, spec);
      net::HttpResponse res = co_await rt_.http.request(std::move(req));
      if (res.status == 0) {
        co_return PollResult::failed(res.error);
      }
      XError e = classify_x_response(res.status, res.body, lookup_in(res));
      if (e.kind == XError::Kind::rate_limited) {
        co_await wait_out_429(e);
        continue;
      }
      if (e.kind == XError::Kind::usage_capped) {
        // The project's monthly cap: the mentions poller pauses the account and says so.
        co_return PollResult::again_in(std::chrono::hours(1));
      }
      if (res.status == 403) {
        // An app without X's Direct Message permission (or one whose access token was granted
        // before it had it) is refused here for good: the back-off's minutes would only repeat
        // the refusal. Said once, at error, with the fix; asked again hourly (the permission may
        // be granted meanwhile). The mentions poller goes on.
        if (!forbidden_logged_) {
          forbidden_logged_ = true;
          log->error(
              "[x:{}] direct messages: GET /2/dm_events refused (HTTP 403: {}{}): grant the app "
              "Direct Message permission (read and write, then a new access token), or set "
              "direct_messages = false in [[channels.x]]; asking again hourly, mentions go on",
              cfg_.name, e.title, e.detail.empty() ? "" : " (" + e.detail + ")");
        }
        co_return PollResult::again_in(std::chrono::hours(1));
      }
      if (e.kind != XError::Kind::none) {
        co_return x_read_failed(res.status, e);
      }
      if (forbidden_logged_) {
        forbidden_logged_ = false;
        log->info("[x:{}] direct messages: GET /2/dm_events answers again", cfg_.name);
      }
      XDmPage page = parse_x_dm_events(cfg_, res.body);
      if (!page.ok) {
        co_return PollResult::failed(page.error);
      }
      pager.add(std::move(page));
      pace_after(res);
    }
    auto cursor = pager.cursor();
    auto items = pager.take_items();
    // As for mentions: what the overlap reads again and the poll before read is left out, not
    // stored and counted as a duplicate at every poll; below the cursor a DM older than a first
    // start's look-back stays out (the first start left it out, unread).
    co_return co_await end_poll(first, cursor, items, dm_event_id);
  }

 private:
  bool forbidden_logged_ = false;  // a 403 was logged; cleared by a page read
};

}  // namespace

std::shared_ptr<Poller> make_x_poller(Runtime& rt, const config::X& cfg) {
  return std::make_shared<XPoller>(rt, cfg);
}

std::shared_ptr<Poller> make_x_dm_poller(Runtime& rt, const config::X& cfg) {
  return std::make_shared<XDmPoller>(rt, cfg);
}

}  // namespace sb::social
