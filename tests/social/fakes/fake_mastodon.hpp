#pragma once
// A fake Mastodon server for tests and benchmarks (issue 6 "Fakes ... replay the documented
// behaviours"): GET /api/v1/notifications with min_id / since_id / max_id paging, Link headers and
// X-RateLimit-* headers, 429 when the window's budget is spent, and POST /api/v1/statuses
// honouring Idempotency-Key. Listens on a free loopback port on its own thread; one request per
// connection (it answers with Connection: close).
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace sb::test {

class FakeMastodon {
 public:
  struct Mention {
    std::int64_t notification_id = 0;
    std::int64_t status_id = 0;
    std::string acct;
    std::string html;
    std::string visibility = "public";
    std::string in_reply_to_id;
    bool filtered = false;           // by the account's notification policy (Mastodon 4.3+)
    std::int64_t created_at_ms = 0;  // Unix ms: the status's and the notification's created_at
  };
  struct Posted {
    std::string id;
    std::string status;
    std::string in_reply_to_id;
    std::string visibility;
    std::string idempotency_key;
  };
  struct Stats {
    int requests = 0;  // with the access token (the public /api/v*/instance is not counted)
    int rejected_429 = 0;
    int notification_requests = 0;
    int instance_requests = 0;  // GET /api/v2/instance and /api/v1/instance, answered or not
  };

  explicit FakeMastodon(std::string token = "test-token", int window_limit = 300,
                        std::chrono::milliseconds window = std::chrono::minutes(5));
  ~FakeMastodon();
  FakeMastodon(const FakeMastodon&) = delete;
  FakeMastodon& operator=(const FakeMastodon&) = delete;

  void start();  // binds 127.0.0.1:0 and serves on a thread
  void stop();   // closes everything and joins; idempotent
  std::uint16_t port() const;
  std::string base_url() const;  // "http://127.0.0.1:<port>"
  int connections() const;       // accepted so far (one per request: it answers Connection: close)

  // Adds a mention from `acct` ("user" local, or "user@domain"); returns its status id. A
  // `filtered` one is what Mastodon 4.3+ makes of a mention its notification policy filters (by
  // default a private mention from an account not followed): GET /api/v1/notifications leaves it
  // out unless the request says include_filtered=true. It was posted `age` ago (created_at).
  std::string add_mention(const std::string& acct, const std::string& text,
                          const std::string& visibility = "public",
                          const std::string& in_reply_to_id = "", bool filtered = false,
                          std::chrono::milliseconds age = {});
  // The notification id the next add_mention gets (then counting up; 1001 at first). One below
  // an id already given is a notification that becomes visible late: Mastodon takes the id
  // (a Snowflake: ms << 16) before the job that inserts it commits.
  void set_next_id(std::int64_t id);
  // The server's LOCAL_DOMAIN, which GET /api/v2/instance names as `domain` and /api/v1/instance
  // as `uri` (default "127.0.0.1", the host of base_url). `v2` false: an older server without
  // /api/v2/instance (404); `v1` false: without /api/v1/instance either.
  void set_instance(const std::string& local_domain, bool v2 = true, bool v1 = true);
  // The most notifications a page holds, whatever `limit` asks (Mastodon's 80 by default):
  // servers of the same API cap lower (GoToSocial, Pleroma, Akkoma).
  void set_max_limit(int n);
  // A server (or a cache in front of it) that ignores min_id: every poll gets the newest page.
  void set_ignore_min_id(bool v);
  // A page with nothing beyond it in the direction paged (min_id: nothing newer; max_id, since_id
  // or neither: nothing older) leaves the link onward out of its Link header (rel="prev" for
  // min_id, rel="next" otherwise) and keeps the one back. The guidelines say a server "may"
  // return the two links; Mastodon's own notifications endpoint sends both on every non-empty
  // page (the default here) and ends only at an empty one, while its other endpoints drop "next"
  // on a short page.
  void set_omit_onward_link_at_end(bool v);
  void fail_next_posts(int n);  // the next n POST /api/v1/statuses answer 503 (nothing posted)
  // The next n POST /api/v1/statuses are carried out (the status is posted, its key kept) and
  // answered `status` all the same: a proxy in front of the instance (a 502 or 504) that passed
  // the request on and lost, or gave up waiting for, the answer.
  void lose_next_posts_behind(int n, int status = 502);
  // The next request with the token answers 429 with X-RateLimit-Remaining 0 and a reset
  // `reset_in` ahead (the server's clock ahead of ours looks like that).
  void rate_limit_next(std::chrono::milliseconds reset_in);
  // The next GET /api/v1/notifications not answered yet by an earlier call gets this answer
  // instead (a 200 with a truncated or garbage body, one over the client's size cap).
  void answer_next_poll(int status, std::string body);
  std::vector<Posted> posted() const;
  // The Idempotency-Key of every POST /api/v1/statuses in arrival order, answered 503 or not.
  std::vector<std::string> post_attempt_keys() const;
  Stats stats() const;
  // The query parameters of every GET /api/v1/notifications (decoded), in arrival order.
  std::vector<std::map<std::string, std::string>> notification_queries() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb::test
