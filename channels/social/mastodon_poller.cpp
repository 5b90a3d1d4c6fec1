// Mastodon mentions poller: see mastodon.hpp for the cursor protocol and rate_pacing.hpp for
// the pacing rules this follows.
#include <optional>
#include <set>

#include "channels/social/link_header.hpp"
#include "channels/social/mastodon.hpp"
#include "channels/social/pollers.hpp"
#include "channels/social/rate_pacing.hpp"
#include "core/log.hpp"
#include "core/time.hpp"

namespace sb::social {

namespace asio = boost::asio;
using std::chrono::milliseconds;

namespace {

// Mastodon's per-page maximum: a 10,000-mention backlog is 125 requests, well inside one
// 300-request window. What was asked is not what comes back: docs.joinmastodon.org
// (methods/notifications) gives 80 as Mastodon's maximum, and servers of the same API cap
// lower (Pleroma, Akkoma, GoToSocial). A page shorter than kPage ends nothing; an empty page or
// a Link header without the link onward does (more_after()).
constexpr int kPage = 80;

// Whether another page may follow `page` in the direction paged: rel="next" to older
// notifications (the first start's max_id paging), rel="prev" to newer ones (the poll's
// min_id paging), as docs.joinmastodon.org "Paginating with the API" describes the Link header.
// An empty page is the end. A response without any Link header says nothing (not every server
// of the API sends one): the next page is asked, and an empty one ends it.
bool more_after(const MastodonPage& page, bool older) {
  if (page.notifications == 0) {
    return false;
  }
  return !page.link_header || (older ? page.link_next : page.link_prev);
}

// What a first start reads back at most (250 pages): the look-back's mentions are held until
// they are stored at once.
constexpr std::size_t kBackfillMax = 20000;

// Pages one poll reads at most (8,000 notifications); the rest waits for the next poll, at once.
constexpr int kPagesPerPoll = 100;

class MastodonPoller final : public Poller {
 public:
  MastodonPoller(Runtime& rt, const config::Mastodon& cfg)
      : rt_(rt), cfg_(cfg), key_("mastodon:" + cfg_.name), window_(300, std::chrono::minutes(5)) {}

  const char* channel() const override { return "mastodon"; }
  const std::string& account() const override { return cfg_.name; }

  asio::awaitable<PollResult> poll_once() override {
    auto log = logger("social");
    if (!loaded_) {
      instance_ = mastodon_instance_key(cfg_.base_url);
      MastodonCursor stored =
          parse_mastodon_cursor(rt_.pipeline.cursor(key_, "mentions").value_or(""));
      if (!stored.instance.empty() && stored.instance != instance_) {
        // base_url names another instance than the cursor was read from: its min_id means
        // nothing here. A first start (backfill); what this account already holds is a duplicate.
        log->info(
            "[mastodon:{}] the stored cursor {} belongs to the instance {}, not {}: reading as a "
            "first start",
            cfg_.name, stored.min_id, stored.instance, instance_);
        stored.min_id.clear();
      }
      cursor_ = std::move(stored.min_id);
      loaded_ = true;
    }
    if (local_domain_.empty()) {
      co_await resolve_local_domain();
    }
    if (cursor_.empty() && cfg_.backfill) {
      // The look-back starts from the first poll and stays put: while no notification has set
      // a cursor yet, a later poll must still take what arrived since then.
      if (since_ms_ == 0) {
        since_ms_ = now_ms() - cfg_.backfill->count();
      }
      co_return co_await first_start();
    }
    int stored = 0;
    // Mastodon numbers a notification before the job that inserts it commits: one may become
    // visible after a newer one was read. Its notifications are numbered by a plain sequence
    // (db/schema.rb: "notifications" has no timestamp_id default, unlike "statuses"), so no time
    // can be read off an id: the poll's first page starts one advance behind, from the cursor
    // before the last advance (behind_), and what the poll before read is left out (not stored
    // and counted as a duplicate at every poll). That works for any id scheme (Pleroma's and
    // GoToSocial's too). Only what the last advance covered is read again (one page at most),
    // never a whole backlog: a poll cut at kPagesPerPoll would otherwise spend the next one
    // reading the same pages. After a restart or a first start the next poll starts at the cursor.
    // The stored cursor only moves forward.
    std::string from = behind_.value_or(cursor_);
    std::set<std::string> read;
    for (int pages = 1;; ++pages) {
      const std::string sent = from;
      MastodonPage page = co_await fetch_page(mastodon_notifications_target(from, kPage));
      if (!page.ok) {
        co_return PollResult::failed(page.error);
      }
      if (!sent.empty() && page.newest_id == sent) {
        // The page holds the cursor itself: a server (or a cache in front of it) that ignores
        // min_id answers the newest page again and again. Nothing newer is to be had from it.
        if (!no_progress_logged_) {
          no_progress_logged_ = true;
          log->warn(
              "[mastodon:{}] the server answered min_id={} with that notification again "
              "(min_id ignored?): polling stops there until the next poll",
              cfg_.name, sent);
        }
        break;
      }
      if (!page.newest_id.empty()) {
        leave_out_read(page.items, read);
        std::size_t n = page.items.size();
        const bool forward = id_less(cursor_, page.newest_id);
        std::optional<CursorUpdate> cu;
        if (forward) {
          cu = CursorUpdate{key_, "mentions", format_mastodon_cursor({page.newest_id, instance_})};
        }
        std::string err = co_await store_batch(rt_, "mastodon", cfg_.name, page.items, cu);
        if (!err.empty()) {
          co_return PollResult::failed("storing mentions: " + err);
        }
        if (forward) {
          behind_ = cursor_;
          cursor_ = page.newest_id;
        }
        from = page.newest_id;
        stored += static_cast<int>(n);
      }
      if (!more_after(page, false)) {
        no_progress_logged_ = false;  // a poll that ends as it should: say it again next time
        break;                        // caught up
      }
      if (pages >= kPagesPerPoll) {
        if (stored > 0) {
          log->info("[mastodon:{}] stored {} mentions; cursor {}; more to read", cfg_.name, stored,
                    cursor_);
        }
        read_before_ = std::move(read);
        co_return PollResult::again_in(std::chrono::milliseconds(0));
      }
    }
    read_before_ = std::move(read);
    if (stored > 0) {
      log->info("[mastodon:{}] stored {} mentions; cursor {}", cfg_.name, stored, cursor_);
    }
    co_return PollResult::again_in(cfg_.poll_interval);
  }

 private:
  // Takes out of `items` what the poll before read (read_before_); adds every item's id to
  // `read`, for the next poll.
  void leave_out_read(std::vector<Inbound>& items, std::set<std::string>& read) const {
    std::erase_if(items, [&](const Inbound& in) {
      read.insert(in.external_id);
      return read_before_.contains(in.external_id);
    });
  }

  // The first start with a bounded look-back (no cursor yet): see mastodon.hpp. Pages are read
  // newest first until one reaches past the look-back (or the history ends, or kBackfillMax
  // notifications were read); the mentions inside it are stored oldest first with the newest
  // notification id as the cursor, in one transaction. A crash before the commit leaves no
  // cursor, and the next start reads the look-back again.
  asio::awaitable<PollResult> first_start() {
    auto log = logger("social");
    const std::int64_t since = since_ms_;
    std::vector<std::vector<Inbound>> pages;  // newest page first
    std::string newest, max_id;
    std::size_t read = 0, skipped = 0;
    read_before_.clear();  // what this one read, left out or not (for the first advance's poll)
    for (;;) {
      MastodonPage page = co_await fetch_page(mastodon_backfill_target(max_id, kPage));
      if (!page.ok) {
        co_return PollResult::failed(page.error);
      }
      if (newest.empty()) {
        newest = page.newest_id;
      }
      read += page.notifications;
      std::vector<Inbound> inside;
      for (Inbound& in : page.items) {
        // A mention without a date is kept: nothing says it is old.
        if (in.occurred_at_ms == 0 || in.occurred_at_ms >= since) {
          inside.push_back(std::move(in));
        } else {
          read_before_.insert(in.external_id);
          ++skipped;
        }
      }
      pages.push_back(std::move(inside));
      if (!more_after(page, true) || page.oldest_id.empty() ||
          (page.oldest_at_ms != 0 && page.oldest_at_ms < since)) {
        break;  // past the look-back, or the whole history was read
      }
      if (read >= kBackfillMax) {
        log->warn(
            "[mastodon:{}] first start: more than {} notifications in the look-back; older ones "
            "are skipped",
            cfg_.name, kBackfillMax);
        break;
      }
      max_id = page.oldest_id;
    }
    std::vector<Inbound> items;
    for (auto it = pages.rbegin(); it != pages.rend(); ++it) {
      for (Inbound& in : *it) {
        read_before_.insert(in.external_id);  // the next poll's overlap
        items.push_back(std::move(in));
      }
    }
    std::size_t n = items.size();
    std::optional<CursorUpdate> cu;
    if (!newest.empty()) {
      cu = CursorUpdate{key_, "mentions", format_mastodon_cursor({newest, instance_})};
    }
    std::string err = co_await store_batch(rt_, "mastodon", cfg_.name, items, cu);
    if (!err.empty()) {
      co_return PollResult::failed("storing mentions: " + err);
    }
    cursor_ = newest;  // still empty for an account without any notification: asked again
    // The next poll starts at the cursor, as after a restart: only newer ones are asked for
    // (the look-back is not read again); the overlap starts with the first advance.
    behind_.reset();
    if (!cursor_.empty()) {
      log->info(
          "[mastodon:{}] first start: stored {} mentions of the look-back, skipped {} older; "
          "cursor {}",
          cfg_.name, n, skipped, cursor_);
    }
    co_return PollResult::again_in(cfg_.poll_interval);
  }

  // One paced GET of the notifications: a 429 waits for the reset and asks again, so the
  // answer is anything but a 429.
  asio::awaitable<net::HttpResponse> get(const std::string& target) {
    auto log = logger("social");
    for (;;) {
      milliseconds delay = pace();
      co_await sleep_for(rt_.ex, delay);
      HttpRequestSpec spec{"GET", target, "", "", {}};
      spec.headers.emplace_back("Authorization", "Bearer " + cfg_.access_token);
      window_.record(Clock::now());
      net::HttpRequest req = to_request(cfg_.base_url, spec);
      net::HttpResponse res = co_await rt_.http.request(std::move(req));
      RateLimitInfo rl = parse_rate_limit_iso(lookup_in(res));
      if (rl.remaining && rl.reset) {
        remaining_ = *rl.remaining;
        reset_ = *rl.reset;
      }
      if (res.status != 429) {
        co_return res;
      }
      // Spent anyway (another client on the same token, or a smaller limit than documented):
      // wait for the reset the server names, never hammer.
      // The reset is the server's clock: one behind ours makes it look past already, and a
      // 429 may carry Reset without Remaining. A 429 never leads to an immediate retry: without
      // a reset ahead of us, wait a minute (five without any reset header).
      remaining_ = 0;
      auto now = Clock::now();
      if (rl.reset && *rl.reset > now) {
        reset_ = *rl.reset;
      } else {
        reset_ = now + (rl.reset ? std::chrono::minutes(1) : std::chrono::minutes(5));
      }
      rt_.metrics.inc("switchboard_social_rate_limited_total",
                      {{"channel", "mastodon"}, {"account", cfg_.name}});
      log->warn("[mastodon:{}] rate limited (429); waiting for the window to reset", cfg_.name);
    }
  }

  // One page of notifications (the poll's and the first start's), parsed; not ok, with why,
  // when the request failed or the body was rejected.
  asio::awaitable<MastodonPage> fetch_page(const std::string& target) {
    net::HttpResponse res = co_await get(target);
    if (res.status != 200) {
      MastodonPage failed;
      failed.error = res.status == 0
                         ? res.error
                         : "HTTP " + std::to_string(res.status) + ": " + res.body.substr(0, 200);
      co_return failed;
    }
    MastodonPage page = parse_mastodon_notifications(cfg_, res.body, local_domain_);
    if (auto link = res.header("Link")) {
      auto links = parse_link_header(*link);
      page.link_header = true;
      page.link_next = links.contains("next");
      page.link_prev = links.contains("prev");
    }
    co_return page;
  }

  // Once per start: the domain local accounts' identities get (user@<domain>). It is the server's
  // LOCAL_DOMAIN, which may differ from the host of base_url (WEB_DOMAIN), so it is asked:
  // GET /api/v2/instance (Mastodon 4.0+), else, when that is 404 (an older server),
  // /api/v1/instance. Both are public: no token is sent. Otherwise base_url's host, and the log
  // says so.
  asio::awaitable<void> resolve_local_domain() {
    auto log = logger("social");
    std::string why;
    int status = 404;
    for (const char* target : {"/api/v2/instance", "/api/v1/instance"}) {
      if (status != 404) {
        break;  // v2 is there but failed (429, 5xx, network): v1 would not do better
      }
      HttpRequestSpec spec{"GET", target, "", "", {}};
      net::HttpRequest req = to_request(cfg_.base_url, spec);  // named: see store_batch
      net::HttpResponse res = co_await rt_.http.request(std::move(req));
      std::string domain = res.status == 200 ? parse_mastodon_instance_domain(res.body) : "";
      if (!domain.empty()) {
        local_domain_ = std::move(domain);
        log->info("[mastodon:{}] local accounts are user@{} ({})", cfg_.name, local_domain_,
                  target);
        co_return;
      }
      status = res.status;
      why = res.status == 0     ? res.error
            : res.status == 200 ? std::string("no domain in the answer")
                                : "HTTP " + std::to_string(res.status);
    }
    local_domain_ = mastodon_instance_domain(cfg_.base_url);
    log->warn(
        "[mastodon:{}] GET /api/v2/instance (or /api/v1/instance) named no domain ({}); local "
        "accounts are taken as user@{} (base_url's host) until the next start",
        cfg_.name, why, local_domain_);
  }

  // The larger of the server's view (remaining budget to the reset) and our own window log.
  // The server's is bounded (Runtime::max_poll_wait): a reset further ahead than a window of
  // 5 minutes is the server's clock or a bug, and asking again learns the real one.
  milliseconds pace() {
    auto now = Clock::now();
    milliseconds d = window_.delay(now);
    if (remaining_ >= 0) {
      d = std::max(d,
                   bound_poll_wait(rt_, "mastodon", cfg_.name, next_delay(remaining_, reset_, now),
                                   "X-RateLimit-Reset", milliseconds(0)));
    }
    return d;
  }

  Runtime& rt_;
  const config::Mastodon& cfg_;
  std::string key_;
  bool loaded_ = false;
  std::string cursor_;         // the min_id of the stored cursor
  std::string instance_;       // mastodon_instance_key(base_url), stored with the cursor
  std::string local_domain_;   // resolve_local_domain()
  std::int64_t since_ms_ = 0;  // a first start's look-back start (Unix ms), set once
  bool no_progress_logged_ = false;
  // The cursor before its last advance: where a poll starts, to read the last advance again
  // (nullopt after a restart: from the cursor). Empty: from the start, as the advance was.
  std::optional<std::string> behind_;
  std::set<std::string> read_before_;  // the status ids the last poll read (its overlap's)
  RequestWindow window_;
  int remaining_ = -1;  // unknown until the first response
  Clock::time_point reset_{};
};

}  // namespace

std::shared_ptr<Poller> make_mastodon_poller(Runtime& rt, const config::Mastodon& cfg) {
  return std::make_shared<MastodonPoller>(rt, cfg);
}

}  // namespace sb::social
