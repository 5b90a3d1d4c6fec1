#pragma once
// A fake X API v2 (docs.x.com): GET /2/users/{id}/mentions newest first with since_id,
// max_results and pagination_token / meta.next_token; includes.users for author_id; rate-limit
// headers (x-rate-limit-limit / -remaining / -reset in Unix seconds) and 429 past the window's
// budget; a usage-cap switch answering the documented usage-capped problem; POST /2/tweets,
// which refuses a text posted before with X's 403 "duplicate content" problem, and on demand
// answers 429 with the 24-hour posting limits' headers (x-user- / x-app-limit-24hour-*), or
// holds it unanswered.
//
// Authentication as X checks it: the mentions timeline takes the app-only bearer token;
// POST /2/tweets takes user context only. There the bearer token gets X's 403 "Unsupported
// Authentication", and an `Authorization: OAuth ...` header must carry every oauth_* parameter
// of docs.x.com "Authorizing a request", the account's consumer key and access token, a
// timestamp within 5 minutes, a nonce not seen before and the HMAC-SHA1 signature this fake
// recomputes on its own (RFC 5849 section 3.4); else 401.
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "tests/social/fakes/fake_http.hpp"

namespace sb::test {

class FakeX {
 public:
  struct Posted {
    std::string id, text, in_reply_to_tweet_id;
  };
  FakeX(std::string user_id, std::string token = "x-token", int window_limit = 180);
  // The support account's OAuth 1.0a credentials this fake accepts. The secrets hold bytes the
  // signing key must percent-encode ('&', '+', '/', '=', a space).
  static config::XUserContext user_context();
  // An account "x" on this fake, its user and token, polled every 200 ms, replying with
  // user_context().
  config::X replying_account() const;
  void start() { server_.start(); }
  void stop() { server_.stop(); }
  std::string base_url() const { return server_.base_url(); }

  // Adds a mention from user `author_id` (@username), posted `age` ago; returns the tweet id.
  std::string add_mention(const std::string& author_id, const std::string& username,
                          const std::string& text, const std::string& conversation_id = "",
                          std::chrono::milliseconds age = {});
  // The author edits the mention `id` (its latest version): X gives the edit a new id, and the
  // timeline then returns only that version, with edit_history_tweet_ids naming the original
  // first. Returns the new id.
  std::string edit_mention(const std::string& id, const std::string& text);
  // The id the next post gets (then counting up a second of Snowflake time apart). One below an
  // id already given is a mention that becomes visible late: X's ids are only roughly in time
  // order.
  void set_next_id(long long id);
  void set_usage_capped(bool on);
  // New credentials, the old ones revoked: from now on only `token` reads the mentions and only
  // `keys` sign a POST /2/tweets.
  void set_credentials(std::string token, config::XUserContext keys);
  // The next request for a further page (with pagination_token) answers 429 with
  // x-rate-limit-reset 1 s ahead.
  void rate_limit_next_page();
  // The next mentions request answers 429 with x-rate-limit-reset `reset_in` ahead (X's clock
  // ahead of ours looks like that).
  void rate_limit_next_poll(std::chrono::seconds reset_in);
  // The next mentions request not answered yet by an earlier call gets this answer instead (a
  // 200 with a truncated or garbage body, one over the client's size cap); counted in
  // mention_requests().
  void answer_next_poll(int status, std::string body);
  // The next `n` POST /2/tweets are posted, and their answers lost: the connection closes
  // without one (as a timeout looks to the client).
  void lose_next_post_answers(int n);
  // The next `n` POST /2/tweets are refused with 429 for a used-up 24-hour posting limit:
  // x-<scope>-limit-24hour-remaining 0 and -reset `reset` (Unix seconds as X sends them, or
  // anything else), `scope` "user" or "app"; the other scope's headers show room left, and the
  // 15-minute window's headers are the usual ones (the window has room: only the day is used up).
  void daily_cap_next_posts(int n, std::string scope, std::string reset);
  // The same for the next `n` DM posts (POST /2/dm_conversations/.../messages), which X counts
  // apart from the posts (1,000 per user, 15,000 per app in 24 hours).
  void daily_cap_next_dm_posts(int n, std::string scope, std::string reset);
  // While on, GET /2/dm_events answers 403 as X does for an app without Direct Message
  // permission (counted in dm_requests()).
  void forbid_dm_lookups(bool on);
  // While on, every POST /2/tweets waits unanswered (nothing checked or counted yet), and
  // post_held() says one is waiting; turned off, it is answered as usual.
  void hold_posts(bool on);
  bool post_held() const;
  std::vector<Posted> posted() const;
  int post_requests() const;  // POST /2/tweets received, refused ones too
  // The Authorization header of every POST /2/tweets, and why each refused one was refused.
  std::vector<std::string> post_authorizations() const;
  std::vector<std::string> auth_refusals() const;
  int mention_requests() const;
  // The query parameters of every mentions request (decoded), in arrival order.
  std::vector<std::map<std::string, std::string>> mention_queries() const;
  int rejected_429() const;
  // Direct messages (docs.x.com "Direct Messages lookup" and "Manage Direct Messages"), in user
  // context only (checked as for POST /2/tweets; refusals kept apart, in dm_auth_refusals()):
  // GET /2/dm_events newest first, both directions, honouring max_results, pagination_token /
  // meta.next_token, event_types, dm_event.fields (id and event_type always) and
  // expansions=sender_id (includes.users), with a 15-minute window of its own;
  // POST /2/dm_conversations/with/{participant_id}/messages and
  // /2/dm_conversations/{dm_conversation_id}/messages {"text"}, answered 201
  // {"data":{"dm_conversation_id","dm_event_id"}}, the DM then listed as the account's.
  struct DmPosted {
    std::string event_id, conversation_id, text;
    std::string path;  // the endpoint it was posted to
  };
  // Adds a DM from user `sender_id` (@username) in `conversation_id` (default: the one-to-one
  // conversation with the account, "<lower id>-<higher id>"), sent `age` ago; returns its id.
  std::string add_dm(const std::string& sender_id, const std::string& username,
                     const std::string& text, const std::string& conversation_id = "",
                     std::chrono::milliseconds age = {});
  // The next `n` DM posts are sent, and their answers lost.
  void lose_next_dm_answers(int n);
  // The next `n` DM posts are sent, and answered `status` with a gateway's HTML page (a proxy
  // that passed the request on, then gave up waiting).
  void gateway_error_after_next_dm_posts(int n, int status);
  std::vector<DmPosted> dm_posted() const;
  int dm_post_requests() const;
  int dm_requests() const;  // GET /2/dm_events received (answered with events or not)
  std::vector<std::map<std::string, std::string>> dm_queries() const;
  std::vector<std::string> dm_auth_refusals() const;

 private:
  FakeHttpServer::Response handle(const FakeHttpServer::Request& r);
  FakeHttpServer::Response mentions(const FakeHttpServer::Request& r);
  // The refusal of a POST /2/tweets whose authorization is not user context; nullopt: accepted.
  std::optional<FakeHttpServer::Response> refuse_user_auth(const FakeHttpServer::Request& r);
  // The same check, recording into the given lists.
  std::optional<FakeHttpServer::Response> check_user_auth(const FakeHttpServer::Request& r,
                                                          std::vector<std::string>& authorizations,
                                                          std::vector<std::string>& refusals);
  bool is_dm(const FakeHttpServer::Request& r) const;
  FakeHttpServer::Response handle_dm(const FakeHttpServer::Request& r);
  FakeHttpServer::Response dm_events(const FakeHttpServer::Request& r);
  FakeHttpServer::Response dm_post(const FakeHttpServer::Request& r);
  struct Dm {
    long long id;
    std::string sender_id, username, text, conversation_id;
    std::int64_t created_at_ms = 0;
  };
  std::vector<Dm> dms_;  // ascending ids
  std::vector<DmPosted> dm_posted_;
  std::vector<std::map<std::string, std::string>> dm_queries_;
  std::vector<std::string> dm_authorizations_, dm_auth_refusals_;
  int dm_requests_ = 0, dm_post_requests_ = 0, dm_window_used_ = 0, lose_dm_answers_ = 0;
  int dm_gateway_errors_ = 0, dm_gateway_status_ = 504;
  std::chrono::system_clock::time_point dm_window_start_{};
  struct Tweet {
    long long id;
    std::string author_id, username, text, conversation_id;
    std::int64_t created_at_ms = 0;
    std::vector<std::string> edit_history;  // the earlier versions' ids, original first
  };
  std::string user_id_, token_;
  config::XUserContext keys_ = user_context();
  int window_limit_;
  mutable std::mutex mu_;
  std::vector<Tweet> tweets_;  // ascending ids
  // Ids a second of Snowflake time apart (1000 ms << 22), as posts some time apart are: a poll
  // that reads back a few seconds below its cursor (held_back_id) meets a few of them again.
  static constexpr long long kIdStep = 1000LL << 22;
  long long mint() { return next_id_ += kIdStep; }  // under mu_
  long long next_id_ = 1460323737035677698LL;
  std::vector<Posted> posted_;
  std::vector<std::map<std::string, std::string>> queries_;
  bool capped_ = false;
  bool limit_next_ = false;
  std::optional<std::chrono::seconds> limit_poll_;
  std::deque<std::pair<int, std::string>> canned_;
  int mention_requests_ = 0, rejected_ = 0, window_used_ = 0;
  int lose_answers_ = 0, post_requests_ = 0;
  int daily_capped_ = 0;
  int dm_daily_capped_ = 0;
  std::string dm_daily_scope_, dm_daily_reset_;
  bool dm_forbidden_ = false;
  bool hold_posts_ = false, post_held_ = false;
  std::string daily_scope_, daily_reset_;
  std::vector<std::string> post_authorizations_, auth_refusals_;
  std::set<std::string> nonces_;
  std::chrono::system_clock::time_point window_start_{};
  FakeHttpServer server_;
};

}  // namespace sb::test
