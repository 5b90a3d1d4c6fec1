#include "channels/social/senders.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json/parse.hpp>

#include "channels/social/mastodon.hpp"
#include "channels/social/meta_send.hpp"
#include "channels/social/rate_pacing.hpp"
#include "channels/social/telegram.hpp"
#include "channels/social/x.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/provider_wait.hpp"
#include "core/supervise.hpp"
#include "core/time.hpp"

namespace sb::social {

namespace asio = boost::asio;
namespace json = boost::json;
using std::chrono::milliseconds;

namespace {

// What a sender needs from the parent interaction's JSON (SPEC section 5).
struct Parent {
  std::string channel, kind, external_id, from_value, from_handle;
  std::vector<std::string> to_values;  // `to`: for Messenger/Instagram, the receiving Page
  std::vector<std::string> flags;
};

std::optional<Parent> parse_parent(std::string_view parent_json) {
  boost::system::error_code ec;
  json::value v = json::parse(parent_json, ec);
  if (ec || !v.is_object()) {
    return std::nullopt;
  }
  const json::object& o = v.get_object();
  Parent p;
  p.channel = str_at(o, "channel");
  p.kind = str_at(o, "kind");
  p.external_id = str_at(o, "external_id");
  if (const json::object* from = obj_at(o, "from")) {
    p.from_value = str_at(*from, "value");
    p.from_handle = str_at(*from, "handle");
  }
  if (const json::array* to = arr_at(o, "to")) {
    for (const json::value& t : *to) {
      if (const json::object* id = t.if_object()) {
        p.to_values.push_back(str_at(*id, "value"));
      }
    }
  }
  if (const json::array* flags = arr_at(o, "flags")) {
    for (const json::value& f : *flags) {
      if (f.is_string()) {
        p.flags.emplace_back(f.get_string());
      }
    }
  }
  if (p.external_id.empty()) {
    return std::nullopt;
  }
  return p;
}

std::string flag_value(const Parent& p, std::string_view prefix) {
  for (const auto& f : p.flags) {
    if (f.size() > prefix.size() && f.compare(0, prefix.size(), prefix) == 0) {
      return f.substr(prefix.size());
    }
  }
  return {};
}

// Runs `attempt(m)` on the io executor and reports its result exactly once.
template <typename Fn>
void run_send(Runtime& rt, const char* channel, const std::string& account, OutboundMessage m,
              Sender::Done done, Fn attempt) {
  if (rt.stopped->load()) {
    done(SendResult::retry("the daemon is shutting down"));
    return;
  }
  std::string id = m.id;  // for the completion's line: `m` moves into the coroutine
  asio::co_spawn(
      rt.ex,
      [&rt, attempt = std::move(attempt), m = std::move(m), channel,
       account]() mutable -> asio::awaitable<SendResult> {
        SendResult r = co_await attempt(m);
        if (r.account_paused) {
          co_return r;  // the sender logged and counted the pause once, not per reply
        }
        if (r.status != SendResult::Status::sent) {
          rt.metrics.inc("switchboard_social_send_errors_total",
                         {{"channel", channel}, {"account", account}});
        }
        if (r.status == SendResult::Status::failed && r.unknown) {
          // Given up without knowing whether the customer got it: someone has to look.
          rt.metrics.inc("switchboard_sends_unknown_total",
                         {{"channel", m.channel}, {"account", account}});
          logger("social")->warn("[{}:{}] {} reply {}: {}", channel, account, m.channel, m.id,
                                 r.error);
        } else if (r.status != SendResult::Status::sent) {
          logger("social")->warn(
              "[{}:{}] reply {} {}: {}", channel, account, m.id,
              r.status == SendResult::Status::retry ? "will be retried" : "failed", r.error);
        }
        co_return r;
      },
      [done = std::move(done), channel, account, id](std::exception_ptr e, SendResult r) {
        if (!e) {
          done(std::move(r));
          return;
        }
        std::string what = exception_what(e);
        logger("social")->error(
            "[{}:{}] reply {}: the send stopped by an exception: {}; it will "
            "be retried",
            channel, account, id, what);
        done(SendResult::retry("the send stopped by an exception: " + what));
      });
}

// Retry-After (RFC 9110) in its delta-seconds form, which is what APIs send with a 429 or a 503
// (the HTTP-date form is ignored). Zero when absent or malformed. The send loop bounds it, as
// every provider-named wait (core/provider_wait.hpp); the year here only keeps milliseconds from
// overflowing.
milliseconds retry_after_header(const net::HttpResponse& res) {
  auto v = res.header("Retry-After");
  long long secs = 0;
  if (!v || std::from_chars(v->data(), v->data() + v->size(), secs).ptr != v->data() + v->size() ||
      secs <= 0) {
    return milliseconds(0);
  }
  return std::chrono::seconds(std::min(secs, 366LL * 24 * 3600));
}

// No HTTP answer: retried, and marked unknown when the request had gone out (the provider may
// have acted on it; see SendResult::unknown). For providers that take an idempotency key
// (Mastodon) or refuse a repeat (X's duplicate content).
SendResult network_failure(const net::HttpResponse& res) {
  return res.sent ? SendResult::unknown_outcome(res.error) : SendResult::retry(res.error);
}

// An unknown outcome of such a provider (below): failed, saying where to look.
SendResult unknown_no_repeat(const std::string& why, std::string_view platform) {
  return SendResult::failed_unknown(
      "outcome unknown: " + why +
      "; not retried so that the customer does not get it twice - check the conversation on " +
      std::string(platform) + " and reply again if it is missing");
}

// No HTTP answer from a provider that takes no idempotency key and posts a repeat as a second
// message (Telegram sendMessage, Meta's /messages). Failing before the request went out
// (resolve, connect, TLS) is retried. Once it went out, the message may have been delivered with
// only its answer lost: a retry could show the customer the answer twice, so the send fails and
// says where to look.
SendResult network_failure_no_repeat(const net::HttpResponse& res, std::string_view platform) {
  if (!res.sent) {
    return SendResult::retry(res.error);
  }
  return unknown_no_repeat("the request went out and no answer came (" + res.error + ")", platform);
}

// An HTTP error from a provider that takes no idempotency key (Telegram sendMessage, Meta's
// /messages) and that may have carried the request out anyway. A 5xx says nothing about whether
// the message was delivered: neither Telegram's Bot API docs nor Meta's Graph API docs promise
// that a 5xx means it was not, and a 502 or 504 comes from a gateway in front of the API, after
// it forwarded the request and lost (or gave up waiting for) the answer - as a timeout. A retry
// could show the customer the answer twice (README: "never sent twice"), so the send fails and
// says where to look, even for a 503 with Retry-After (it may come from such a gateway too). Only
// what provably did not go out is retried: no connection (network_failure_no_repeat), and the
// refusals that come before any processing (a 429, Telegram's flood control; Meta's rate-limit
// codes, which come as 4xx). Nullopt when the status is no 5xx.
std::optional<SendResult> server_error_no_repeat(const net::HttpResponse& res,
                                                 const std::string& provider_message,
                                                 std::string_view platform) {
  if (res.status < 500) {
    return std::nullopt;
  }
  std::string what = "HTTP " + std::to_string(res.status);
  if (!provider_message.empty() && provider_message != what) {
    what += " (" + provider_message + ")";
  }
  return unknown_no_repeat("the request went out and " + std::string(platform) + " answered " +
                               what + ", which does not say whether the message was delivered",
                           platform);
}

// An attempt the daemon stopped in the middle of (Sender::interrupted): counted and logged as
// run_send does a lost answer, since it is one.
SendResult interrupted_attempt(Runtime& rt, const char* channel, const std::string& account,
                               const OutboundMessage& m, SendResult r) {
  if (r.status == SendResult::Status::failed) {
    rt.metrics.inc("switchboard_sends_unknown_total",
                   {{"channel", m.channel}, {"account", account}});
  }
  logger("social")->warn("[{}:{}] {} reply {}: {}", channel, account, m.channel, m.id, r.error);
  return r;
}

// Lengths as the providers count them, of valid UTF-8 (the reply route takes no other).
std::size_t code_points(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}
std::size_t utf16_units(std::string_view s) {
  std::size_t n = 0;
  for (char c : s) {
    auto b = static_cast<unsigned char>(c);
    n += (b & 0xC0) == 0x80 ? 0 : b >= 0xF0 ? 2 : 1;  // above U+FFFF: a surrogate pair
  }
  return n;
}

// The refusal of a text over a provider's limit (Sender::refuse_text): "" within it.
std::string over_limit(std::size_t length, std::size_t limit, std::string_view what,
                       std::string_view unit, std::string_view how = {}) {
  if (length <= limit) {
    return {};
  }
  return "field \"text\" is " + std::to_string(length) + " " + std::string(unit) + " long; " +
         std::string(what) + " takes at most " + std::to_string(limit) + " " + std::string(unit) +
         std::string(how);
}

// The platform a Meta reply goes to, as the operator knows it.
std::string_view meta_platform(std::string_view channel) {
  return channel == "whatsapp" ? "WhatsApp" : channel == "instagram" ? "Instagram" : "Messenger";
}

// The common classification for providers without a richer error body. A provider-specific
// `retry_after` wins; else the response's Retry-After header.
SendResult classify(const net::HttpResponse& res, std::string provider_message,
                    milliseconds retry_after = {}) {
  if (res.status == 0) {
    return network_failure(res);
  }
  if (retry_after.count() == 0) {
    retry_after = retry_after_header(res);
  }
  if (provider_message.empty()) {
    provider_message = "HTTP " + std::to_string(res.status);
  }
  if (res.status == 429 || res.status >= 500) {
    return SendResult::retry(std::move(provider_message), retry_after);
  }
  return SendResult::failed(std::move(provider_message));
}

// Mastodon keeps an Idempotency-Key for one hour (docs.joinmastodon.org methods/statuses,
// "Idempotency-Key": "stored for up to 1 hour"): a repeat within it answers the status posted
// first, a repeat after it posts again. An attempt whose outcome was unknown (a lost answer, or
// one the daemon stopped in the middle of) may be repeated only while its key is surely kept.
// The window counts from the start of the first such attempt (OutboundMessage::
// uncertain_since_ms, sends.uncertain_since): a reply written two hours ago whose first
// uncertain attempt was a minute ago is retried. Past the window it is settled as an unknown
// outcome, not retried (as Telegram's), rather than risk the answer twice. A send recorded by an
// older build knows no such start: the reply's creation (the time in its ULID id) bounds it from
// below then, as before. The margin covers our clock against the server's and the request's own
// time.
constexpr std::chrono::minutes kMastodonKeyWindow{55};

// Whether the first attempt of `m` that may have posted it lies outside kMastodonKeyWindow.
// Without its start, an id that is no ULID (the tests' ids) tells nothing: retried, as before.
bool past_mastodon_key_window(const OutboundMessage& m) {
  std::int64_t since = m.uncertain_since_ms > 0 ? m.uncertain_since_ms : ulid_time_ms(m.id);
  return since >= 0 && now_ms() - since > milliseconds(kMastodonKeyWindow).count();
}

std::string mastodon_key_expired(const std::string& why) {
  return why + ", and the reply is older than the hour Mastodon keeps its Idempotency-Key for";
}

// A 5xx from Mastodon, or from the proxy in front of it (a 502 or 504 of nginx after it passed
// the request on and lost, or gave up waiting for, Mastodon's answer), says nothing about
// whether the status was posted: the same unknown outcome as a lost answer. It is retried with
// the same Idempotency-Key, which answers a repeat with the status posted first, and marked so
// (SendResult::unknown: sends.uncertain_since is this attempt's start when it is the first such
// one), so that the repeat stays inside kMastodonKeyWindow; one due past it is settled as an
// unknown outcome before it goes (MastodonSender::send). A 503 with Retry-After (maintenance,
// an overloaded instance) is retried no sooner than it asks, still within the window. An
// attempt already past the window (its first uncertain one long ago) is settled now.
SendResult server_error_within_key(const OutboundMessage& m, const net::HttpResponse& res,
                                   std::string msg) {
  std::string what = "HTTP " + std::to_string(res.status);
  if (!msg.empty() && msg != what) {
    what += " (" + msg + ")";
  }
  const std::string why = "the request went out and Mastodon answered " + what +
                          ", which does not say whether the status was posted";
  if (m.maybe_sent && past_mastodon_key_window(m)) {
    return unknown_no_repeat(mastodon_key_expired(why), "Mastodon");
  }
  SendResult r = SendResult::unknown_outcome(msg.empty() ? what : msg);
  r.retry_after = retry_after_header(res);
  return r;
}

class MastodonSender final : public Sender {
 public:
  MastodonSender(Runtime& rt, const config::Mastodon& cfg) : rt_(rt), cfg_(cfg) {}
  // Marked so that an attempt cut by a stop is known (interrupted()): within the key's hour it
  // is retried with its unknown outcome remembered, past it settled (see kMastodonKeyWindow).
  bool marks_attempts() const override { return true; }
  SendResult interrupted(const OutboundMessage& m, const std::string& why) override {
    SendResult r =
        past_mastodon_key_window(m)
            ? unknown_no_repeat(mastodon_key_expired(why), "Mastodon")
            : SendResult::unknown_outcome("outcome unknown: " + why +
                                          "; retried: Mastodon answers a repeat within the hour "
                                          "of its Idempotency-Key with the status posted");
    return interrupted_attempt(rt_, "mastodon", cfg_.name, m, std::move(r));
  }
  void send(OutboundMessage m, Done done) override {
    run_send(rt_, "mastodon", cfg_.name, std::move(m), std::move(done),
             [this](const OutboundMessage& m) -> asio::awaitable<SendResult> {
               auto p = parse_parent(m.parent_json);
               if (!p) {
                 co_return SendResult::failed("the answered interaction has no external id");
               }
               if (m.maybe_sent && past_mastodon_key_window(m)) {
                 co_return unknown_no_repeat(
                     mastodon_key_expired("an earlier attempt went out and its answer was lost"),
                     "Mastodon");
               }
               MastodonReply reply;
               // from.handle is "@acct" as the instance showed it; the value is user@domain.
               reply.acct = p->from_handle.empty() ? p->from_value : p->from_handle;
               reply.text = m.text;
               reply.in_reply_to_id = p->external_id;
               reply.visibility = mastodon_visibility(p->flags, p->kind);
               reply.idempotency_key = m.id;
               net::HttpRequest req = to_request(cfg_.base_url, mastodon_reply(cfg_, reply));
               auto res = co_await rt_.http.request(std::move(req));
               if (res.status >= 200 && res.status < 300) {
                 // The customer's answer names our status in in_reply_to_id; the poller looks
                 // it up as this key (mastodon.cpp), so record it for the conversation.
                 auto sent = SendResult::sent(parse_mastodon_status_id(res.body));
                 if (!sent.provider_id.empty()) {
                   sent.thread_keys.push_back(
                       mastodon_thread_key(cfg_, sent.provider_id, p->from_value));
                 }
                 co_return sent;
               }
               milliseconds after{};
               if (res.status == 429) {
                 auto rl = parse_rate_limit_iso(lookup_in(res));
                 if (rl.reset) {
                   after = std::max(milliseconds(0),
                                    std::chrono::ceil<milliseconds>(*rl.reset - Clock::now()));
                 }
               }
               std::string msg;
               boost::system::error_code ec;
               json::value v = json::parse(res.body, ec);
               if (!ec && v.is_object()) {
                 msg = str_at(v.get_object(), "error");
               }
               if (res.status >= 500) {
                 co_return server_error_within_key(m, res, msg);
               }
               co_return classify(res, msg, after);
             });
  }

 private:
  Runtime& rt_;
  const config::Mastodon& cfg_;
};

// X's title and detail. A refused authorization without user context is the app-only bearer
// token, which X refuses on POST /2/tweets: say what would make replies work.
std::string x_failure(const XError& e, const config::X& cfg) {
  std::string msg = e.title + (e.detail.empty() ? "" : ": " + e.detail);
  if (e.kind == XError::Kind::unauthorized && !e.duplicate_content && !cfg.user_context) {
    msg +=
        " (replies need OAuth 1.0a user context: set consumer_key_env, consumer_secret_env, "
        "access_token_env and access_token_secret_env in [[channels.x]])";
  }
  return msg;
}

// X's 24-hour posting limits (x.cpp) hold every reply of the account until their reset (the
// DM replies have limits of their own, and a pause of their own: send_dm). The
// first 429 that says so pauses the sender: until the reset its replies are answered at once
// with the same wait and X's message, without a request (each would be one more refusal), and
// none of them spends an attempt. Logged once per pause, at warn. The pause lives in memory: the
// replies' next attempts are stored at the reset, so after a restart only a new reply asks X,
// and learns the pause again.
//
// The reset is bounded like every provider-named wait (core/provider_wait.hpp): at least 1 s,
// at most a day and 5 minutes (kMaxAccountWait). A reset that is no time (garbage, or too large
// for the clock) or that is not ahead of our clock (X's clock behind ours: it would pause a
// second, ask again, and learn the same reset, in a loop no attempt limit ends) is no pause:
// the 429 is retried as one of the 15-minute window, attempts counted, as before.
//
// A limit counts the posts of one user (the access token names them) or of one app (its
// consumer key), and a reload may put another user's or app's credentials into the account
// (config::take_secrets changes cfg_ in place, on the io thread, between two sends). So each
// scope's pause keeps the credential it was learned under and holds only while the account
// still uses it: with another one the next reply asks X, and the send loop brings the held
// replies forward (end_pause_of_old_credentials). A 429 answered to a request that went out with
// the old credentials is theirs, not the new ones': that reply is tried again in a second.
class XSender final : public Sender {
 public:
  XSender(Runtime& rt, const config::X& cfg) : rt_(rt), cfg_(cfg) {}
  bool marks_attempts() const override { return true; }
  // A direct message takes 10,000 characters (docs.x.com, POST /2/dm_conversations). A post's
  // limit is not checked here: X weighs characters (CJK and emoji count twice, a link 23) and
  // a Premium account may post far longer than 280, which the account's config does not say.
  std::string refuse_text(std::string_view, std::string_view parent_kind,
                          std::string_view text) const override {
    if (parent_kind != "direct_message") {
      return {};
    }
    return over_limit(code_points(text), 10000, "an X direct message", "characters");
  }
  // As a lost answer: retried, maybe_sent, so that X refusing the repeat as duplicate content
  // reads as the interrupted attempt's success (below), and a post that never went out goes now.
  SendResult interrupted(const OutboundMessage& m, const std::string& why) override {
    if (auto p = parse_parent(m.parent_json); p && p->kind == "direct_message") {
      // X refuses no repeated DM: as Telegram's, a DM whose attempt was cut is not sent again.
      return interrupted_attempt(rt_, "x", cfg_.name, m, unknown_no_repeat(why, "X"));
    }
    return interrupted_attempt(
        rt_, "x", cfg_.name, m,
        SendResult::unknown_outcome("outcome unknown: " + why +
                                    "; retried: X refuses a repeat of a posted reply as "
                                    "duplicate content, which then counts as sent"));
  }
  void send(OutboundMessage m, Done done) override {
    run_send(rt_, "x", cfg_.name, std::move(m), std::move(done),
             [this](const OutboundMessage& m) -> asio::awaitable<SendResult> {
               auto p = parse_parent(m.parent_json);
               if (!p) {
                 co_return SendResult::failed("the answered interaction has no external id");
               }
               if (p->kind == "direct_message") {
                 co_return co_await send_dm(m, *p);  // by DM, never as a public post
               }
               if (auto held = still_paused(false)) {
                 co_return std::move(*held);
               }
               // The credentials this request goes with: a reload may change cfg_ while it is
               // out.
               const std::string user = credential("user"), app = credential("app");
               // An edited mention is stored under its original id (x.cpp): answered as the
               // version read, the one X shows.
               std::string post_id = flag_value(*p, "x_post_id:");
               net::HttpRequest req =
                   to_request(cfg_.base_url,
                              x_reply(cfg_, m.text, post_id.empty() ? p->external_id : post_id));
               auto res = co_await rt_.http.request(std::move(req));
               if (res.status >= 200 && res.status < 300) {
                 co_return SendResult::sent(parse_x_tweet_id(res.body));
               }
               if (res.status == 0) {
                 co_return network_failure(res);
               }
               XError e = classify_x_response(res.status, res.body, lookup_in(res));
               std::string msg = x_failure(e, cfg_);
               // X has no idempotency key for POST /2/tweets, and the send loop is at least
               // once. When an earlier attempt went out and its answer never came (a timeout),
               // X refusing this one as a repeat of the same text says that attempt posted it:
               // sent, without the tweet's id (the 403 does not name it), and X's answer kept as
               // the send's error for the operator. On a first attempt the same refusal stays a
               // failure: the account really did post this text already.
               if (e.duplicate_content && m.maybe_sent) {
                 SendResult sent = SendResult::sent("");
                 sent.error =
                     "posted by an earlier attempt whose answer was lost: X refused the retry as "
                     "a duplicate (" +
                     msg + ")";
                 co_return sent;
               }
               if (e.daily_cap) {
                 const std::string& under = e.daily_cap->scope == "app" ? app : user;
                 if (auto held = pause(*e.daily_cap, msg, under, false)) {
                   co_return std::move(*held);
                 }
               }
               if (e.retryable()) {
                 milliseconds after{};
                 if (e.reset) {
                   after = std::max(milliseconds(0),
                                    std::chrono::ceil<milliseconds>(*e.reset - Clock::now()));
                 }
                 co_return SendResult::retry(msg, after);
               }
               co_return SendResult::failed(msg);
             });
  }

  bool end_pause_of_old_credentials() override {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    bool ended = false;
    for (auto it = pauses_.begin(); it != pauses_.end();) {
      const auto& [scope, p] = *it;
      if (p.until <= now) {
        it = pauses_.erase(it);  // over anyway: the replies it held are due
        continue;
      }
      if (p.credential == credential(scope)) {
        ++it;
        continue;
      }
      logger("social")->info(
          "[x:{}] the reload changed the account's {}: the pause for the daily {} limit ({}) is "
          "over, and the replies it held are tried now",
          cfg_.name, scope_of(scope) == "app" ? "consumer key" : "access token's user",
          limit_name(is_dm(scope)), scope_of(scope));
      it = pauses_.erase(it);
      ended = true;
    }
    return ended;
  }

 private:
  // An X reply to a direct message (x.cpp): by DM to its conversation (the flag the poller set),
  // else to the sender. The duplicate-content rule of posts does not apply: X refuses no
  // repeated DM (so a lost answer is not retried: the customer would read it twice, as on
  // Telegram). A 429 waits for x-rate-limit-reset; one that names a used-up 24-hour limit
  // pauses the DM replies as the posts' pause does the posts (see the class comment): POST
  // /2/dm_conversations/... has its own limits (docs.x.com: 1,000 per user and 15,000 per app
  // in 24 hours), counted apart from the posts', so the two pauses are apart too, each following
  // the credentials it was learned under. A reset hours away is no attempt spent: as a retry it
  // would end `failed` after the send loop's capped waits.
  asio::awaitable<SendResult> send_dm(const OutboundMessage& m, const Parent& p) {
    auto spec = x_dm_reply(cfg_, m.text, flag_value(p, "dm_conversation_id:"), p.from_value);
    if (!spec) {
      co_return SendResult::failed("the direct message names no conversation or sender to answer");
    }
    if (auto held = still_paused(true)) {
      co_return std::move(*held);
    }
    const std::string user = credential("user"), app = credential("app");
    net::HttpRequest req = to_request(cfg_.base_url, *spec);
    auto res = co_await rt_.http.request(std::move(req));
    if (res.status >= 200 && res.status < 300) {
      std::string id = parse_x_dm_event_id(res.body);
      co_return SendResult::sent(id.empty() ? id : std::string(kXDmPrefix) + id);
    }
    if (res.status == 0) {
      co_return network_failure_no_repeat(res, "X");
    }
    XError e = classify_x_response(res.status, res.body, lookup_in(res));
    std::string msg = x_failure(e, cfg_);
    if (e.daily_cap) {
      const std::string& under = e.daily_cap->scope == "app" ? app : user;
      if (auto held = pause(*e.daily_cap, msg, under, true)) {
        co_return std::move(*held);
      }
    }
    if (!e.retryable()) {
      co_return SendResult::failed(msg);
    }
    // X takes no idempotency key for a DM: a 5xx after the request went out (a gateway's 502 or
    // 504) may follow a delivered DM, so it is an unknown outcome, as for Telegram and Meta.
    if (auto unknown = server_error_no_repeat(res, msg, "X")) {
      co_return std::move(*unknown);
    }
    milliseconds after{};
    if (e.reset) {
      after = std::max(milliseconds(0), std::chrono::ceil<milliseconds>(*e.reset - Clock::now()));
    }
    co_return SendResult::retry(msg, after);
  }

  // The pauses are kept by key: the limit's scope ("user", "app") for posts, "dm:" and the
  // scope for direct messages.
  static bool is_dm(const std::string& key) { return key.starts_with("dm:"); }
  static std::string scope_of(const std::string& key) { return is_dm(key) ? key.substr(3) : key; }
  static const char* limit_name(bool dm) { return dm ? "direct message" : "posting"; }

  // One scope's pause: until when, X's message with it, and the credential it was learned
  // under (credential()).
  struct Pause {
    Clock::time_point until;
    std::string reason;
    std::string credential;
  };

  // What a scope's limit counts posts of: the user (who granted the access token) or the app
  // (the consumer key). A token re-issued to the same user (the reload's usual rotation;
  // check-config refuses another user's token next to user_id) keeps the user's pause: X counts
  // the user's posts, whatever the token. Without user context no reply is posted, and nothing
  // can pause.
  std::string credential(const std::string& key) const {
    if (!cfg_.user_context) {
      return {};
    }
    if (scope_of(key) == "app") {
      return cfg_.user_context->consumer_key;
    }
    const std::string& token = cfg_.user_context->access_token;
    std::string_view user = config::x_token_user(token);
    return user.empty() ? token : "user " + std::string(user);
  }

  // The pause that holds replies of the kind (posts, or direct messages when `dm`) now, if
  // any: the latest of the scopes' pauses learned under the credentials the account still
  // uses. Under mu_.
  const Pause* holding(Clock::time_point now, bool dm) const {
    const Pause* out = nullptr;
    for (const auto& [key, p] : pauses_) {
      if (is_dm(key) == dm && p.until > now && p.credential == credential(key) &&
          (!out || p.until > out->until)) {
        out = &p;
      }
    }
    return out;
  }

  // The pause's wait and message while it lasts (the wait at least 1 s: the send loop's
  // minimum, without its warning for a reset a moment away).
  std::optional<SendResult> still_paused(bool dm) {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    const Pause* p = holding(now, dm);
    if (!p) {
      return std::nullopt;
    }
    auto left = std::chrono::ceil<milliseconds>(p->until - now);
    return SendResult::paused(p->reason, std::max(left, kMinProviderWait));
  }

  // Starts (or extends) the pause of a 429 naming a used-up 24-hour limit, learned under
  // `learned_under` (the scope's credential the request went with); nullopt when its reset is
  // no pause (see the class comment), logged then.
  std::optional<SendResult> pause(const XError::DailyCap& cap, const std::string& msg,
                                  const std::string& learned_under, bool dm) {
    auto log = logger("social");
    const char* limit = limit_name(dm);
    const std::string key = (dm ? "dm:" : "") + cap.scope;
    auto now = Clock::now();
    if (!cap.reset || *cap.reset <= now) {
      log->warn(
          "[x:{}] daily {} limit reached ({}), but {} is {}: the reply is retried as a 429 of "
          "the 15-minute window",
          cfg_.name, limit, cap.scope, cap.reset_header,
          cap.reset ? "not ahead of our clock" : "not a time");
      return std::nullopt;
    }
    // This attempt's 429 is a send error; the replies held without a request are not.
    rt_.metrics.inc("switchboard_social_send_errors_total",
                    {{"channel", "x"}, {"account", cfg_.name}});
    milliseconds wait =
        bound_provider_wait(*cap.reset - now, WaitBounds{kMinProviderWait, kMaxAccountWait},
                            "social", "x", cfg_.name, cap.reset_header);
    auto until = now + wait;
    std::string at = format_rfc3339(
        std::chrono::duration_cast<milliseconds>(until.time_since_epoch()).count() + 999);
    std::lock_guard lock(mu_);
    if (learned_under != credential(key)) {
      // The request went out before a reload replaced the credentials: the limit is the old
      // user's (or app's). Nothing is paused; the reply goes again with the new ones, its
      // attempts unspent (the old limit is not its failure either).
      log->info(
          "[x:{}] daily {} limit reached ({}) for the credentials a reload has replaced "
          "since the request went out: the reply is tried again with the new ones",
          cfg_.name, limit, cap.scope);
      return SendResult::paused(msg + " (daily " + limit + " limit reached (" + cap.scope +
                                    ") for credentials replaced since: tried again)",
                                kMinProviderWait);
    }
    auto it = pauses_.find(key);
    if (it != pauses_.end() && it->second.credential != learned_under) {
      pauses_.erase(it);  // an earlier user's (or app's), ended by a reload: not this one
      it = pauses_.end();
    }
    // Replies in flight together get the same 429: one line for the cap, not one per reply.
    // A later reset (the other limit used up too, or a new day's cap) is a new pause.
    if (const Pause* before = holding(now, dm);
        !before || until > before->until + std::chrono::seconds(1)) {
      log->warn("[x:{}] daily {} limit reached ({}): {} wait until {}", cfg_.name, limit, cap.scope,
                dm ? "direct message replies" : "replies", at);
    }
    if (it == pauses_.end() || until > it->second.until) {
      pauses_[key] = Pause{until,
                           msg + " (daily " + limit + " limit reached (" + cap.scope +
                               "): replies wait until " + at + ")",
                           learned_under};
    }
    // A longer pause already running (the other limit's) is the one to wait for.
    const Pause* p = holding(now, dm);
    return SendResult::paused(p->reason, std::chrono::ceil<milliseconds>(p->until - now));
  }

  Runtime& rt_;
  const config::X& cfg_;
  std::mutex mu_;  // the pauses; sends may finish on any thread of the executor
  std::map<std::string, Pause> pauses_;  // by key: "user", "app", "dm:user", "dm:app"
};

class TelegramSender final : public Sender {
 public:
  TelegramSender(Runtime& rt, const config::Telegram& cfg) : rt_(rt), cfg_(cfg) {}
  bool marks_attempts() const override { return true; }
  // sendMessage takes 1-4096 characters of text (core.telegram.org/bots/api#sendmessage).
  // Telegram counts a message in UTF-16 code units (as its entity offsets): an emoji above
  // U+FFFF is two. Counted so, a text within the limit is within it however Telegram counts.
  std::string refuse_text(std::string_view, std::string_view,
                          std::string_view text) const override {
    return over_limit(utf16_units(text), 4096, "a Telegram message", "characters",
                      " (UTF-16 code units, as Telegram counts them: an emoji can be two)");
  }
  SendResult interrupted(const OutboundMessage& m, const std::string& why) override {
    return interrupted_attempt(rt_, "telegram", cfg_.name, m, unknown_no_repeat(why, "Telegram"));
  }
  void send(OutboundMessage m, Done done) override {
    run_send(
        rt_, "telegram", cfg_.name, std::move(m), std::move(done),
        [this](const OutboundMessage& m) -> asio::awaitable<SendResult> {
          auto p = parse_parent(m.parent_json);
          auto ref = p ? parse_telegram_external_id(p->external_id) : std::nullopt;
          if (!ref) {
            co_return SendResult::failed("the answered interaction has no Telegram message id");
          }
          // A message another bot of the account received (before its token was changed for
          // this bot's): its message_id numbers that bot's messages, and in this bot's chat of
          // the same id it names another message or none. Sent without the quote.
          std::int64_t bot_id = telegram_bot_id(cfg_.bot_token);
          std::optional<std::int64_t> quote = ref->message_id;
          if (ref->bot_id != 0 && ref->bot_id != bot_id) {
            quote.reset();
          }
          std::string chat_id = ref->chat_id;
          net::HttpRequest req =
              to_request(cfg_.base_url, telegram_send_message(cfg_, chat_id, m.text, quote));
          auto res = co_await rt_.http.request(std::move(req));
          if (res.status == 0) {
            co_return network_failure_no_repeat(res, "Telegram");
          }
          auto err = parse_telegram_error(res.body);
          bool migrated = false;
          if (res.status == 400 && err && !err->migrate_to_chat_id.empty() &&
              err->migrate_to_chat_id != chat_id) {
            // The group was upgraded to a supergroup (ResponseParameters.migrate_to_chat_id):
            // refused, so nothing was sent; sent once more to the new chat. Without the quote:
            // its message_id numbers the old group's messages.
            chat_id = err->migrate_to_chat_id;
            migrated = true;
            req = to_request(cfg_.base_url,
                             telegram_send_message(cfg_, chat_id, m.text, std::nullopt));
            res = co_await rt_.http.request(std::move(req));
            if (res.status == 0) {
              co_return network_failure_no_repeat(res, "Telegram");
            }
            err = parse_telegram_error(res.body);
          }
          if (res.status == 200 && !err) {
            boost::system::error_code ec;
            json::value v = json::parse(res.body, ec);
            const json::object* result =
                ec || !v.is_object() ? nullptr : obj_at(v.get_object(), "result");
            auto id = result == nullptr ? std::nullopt : int_at(*result, "message_id");
            auto sent = SendResult::sent(
                telegram_external_id(bot_id, chat_id, id ? std::to_string(*id) : ""));
            if (migrated) {
              // The customer's next message comes from the supergroup: it joins this
              // conversation (the poller maps the whole group once it sees the upgrade's
              // service message; this holds even if it never does).
              sent.thread_keys.push_back(
                  telegram_thread_key(cfg_, chat_id, p->kind != "direct_message", p->from_value));
            }
            co_return sent;
          }
          if (auto unknown = server_error_no_repeat(res, err ? err->description : "", "Telegram")) {
            co_return std::move(*unknown);
          }
          milliseconds after{};
          if (err && err->retry_after) {
            after = *err->retry_after;
          }
          co_return classify(res, err ? err->description : "", after);
        });
  }

 private:
  Runtime& rt_;
  const config::Telegram& cfg_;
};

// What a Meta rate limit holds back when a reply meets it ("" for the reply alone). Meta counts
// these limits for the whole app or Page, not per message (Graph API "Rate Limiting",
// developers.facebook.com/docs/graph-api/overview/rate-limiting, and the codes of "Handling
// Errors"): 4, the app's (every reply of the account: one app per [[channels.meta]]); 17, the
// user's, that is the token's (a Page token's is the Page; WhatsApp's system-user token is the
// account's, shared by its numbers); 32, the Page's; 613, a limit of the endpoint for the token;
// 80007, the Instagram account's (Messenger Platform); WhatsApp 130429, the business number's
// throughput (Cloud API "Throughput"). 131056, the pair rate limit, counts messages to one
// customer: a reply to another one goes on, and that reply is retried alone (throttled).
std::string meta_limit_scope(std::int64_t code, bool whatsapp, const std::string& business) {
  switch (code) {
    case 4:
      return "app";
    case 17:
      return whatsapp ? "app" : business;
    case 32:
    case 613:
    case 80007:
    case 130429:
      return business;
    default:
      return {};
  }
}

// The pause of a limit of Meta's with no Retry-After: a minute, doubling with each pause met in
// a row, at most 15 minutes (the back-off each reply had before, SendPolicy::throttle_*), since
// Meta names no end and says such a limit lasts until usage drops, up to an hour.
constexpr std::chrono::minutes kMetaFirstPause{1};
constexpr std::chrono::minutes kMetaMaxPause{15};
// A reply that finds the pause over while another is asking Meta whether it is waits this
// long, then asks the pause again (the answer has come by then, as a rule).
constexpr std::chrono::seconds kMetaProbeWait{2};

// Meta's limits of a whole app, Page or WhatsApp number (meta_limit_scope) pause every reply
// of that scope, not only the one that met it: before, each reply waited a back-off of its own
// (1, 2, 4, 8, 15 minutes), so that N replies kept asking Meta, and meeting the limit, N times
// as often, and each spent an attempt every time. Now the first such error pauses the scope:
// until the pause ends, its replies are answered at once with the same wait and Meta's message,
// without a request, and none of them spends an attempt (SendResult::account_paused; a reply
// waits out Meta's 24-hour messaging window at most: past it, Meta refuses it for good). When
// the pause ends, one reply asks Meta; the others wait a moment (kMetaProbeWait) until it knows.
// Its success ends the pause; meeting the limit again starts a longer one. Logged once per
// pause, at warn. The pauses live in memory: after a restart the replies wait until their stored
// time, and the first to go learns the limit again.
class MetaSender final : public Sender {
 public:
  MetaSender(Runtime& rt, const config::Meta& cfg) : rt_(rt), cfg_(cfg) {}
  bool marks_attempts() const override { return true; }
  // The Send API's and the Cloud API's text limits: Messenger 2,000 characters ("Send API
  // Reference", message.text), Instagram 1,000 bytes of UTF-8 ("Send a Message" for
  // Instagram: "UTF-8 and be a 1000 bytes or less"), WhatsApp 4,096 characters (Cloud API
  // "Text messages": text.body).
  // An Instagram comment's public reply takes what a comment does: 2,200 characters (the
  // Graph API's reference names no limit of its own; this is Instagram's comment limit).
  std::string refuse_text(std::string_view channel, std::string_view parent_kind,
                          std::string_view text) const override {
    if (channel == "instagram" && parent_kind == "comment") {
      return over_limit(code_points(text), 2200, "an Instagram comment reply", "characters");
    }
    if (channel == "instagram") {
      return over_limit(text.size(), 1000, "an Instagram message", "bytes",
                        " of UTF-8 (an accented letter is two, an emoji four)");
    }
    if (channel == "whatsapp") {
      return over_limit(code_points(text), 4096, "a WhatsApp message", "characters");
    }
    return over_limit(code_points(text), 2000, "a Messenger message", "characters");
  }
  SendResult interrupted(const OutboundMessage& m, const std::string& why) override {
    return interrupted_attempt(rt_, "meta", cfg_.name, m,
                               unknown_no_repeat(why, meta_platform(m.channel)));
  }
  void send(OutboundMessage m, Done done) override {
    run_send(rt_, "meta", cfg_.name, std::move(m), std::move(done),
             [this](const OutboundMessage& m) -> asio::awaitable<SendResult> {
               auto p = parse_parent(m.parent_json);
               if (!p || p->from_value.empty()) {
                 co_return SendResult::failed("the answered interaction has no sender to answer");
               }
               HttpRequestSpec spec;
               if (p->channel == "whatsapp") {
                 std::string phone_number_id = flag_value(*p, "phone_number_id:");
                 if (phone_number_id.empty()) {
                   co_return SendResult::failed("the WhatsApp message names no phone_number_id");
                 }
                 // To the wa_id the message came from (meta.cpp), not the E.164 form. A user
                 // whose message had no number is stored under the BSUID, which never starts
                 // with "+": Meta refuses it as `to`, it goes as `recipient`.
                 const std::string& to = p->from_handle.empty() ? p->from_value : p->from_handle;
                 WhatsAppTo kind =
                     p->from_value.front() == '+' ? WhatsAppTo::phone : WhatsAppTo::user_id;
                 if (cfg_.access_token.empty()) {
                   co_return SendResult::failed(
                       "no access token for WhatsApp: set access_token_env (or access_token or "
                       "access_token_file) in [[channels.meta]] \"" +
                       cfg_.name + "\"");
                 }
                 spec =
                     whatsapp_send_message(cfg_, phone_number_id, to, m.text, p->external_id, kind);
               } else {
                 // The sender id is Page-scoped (PSID / IGSID) and the Send API takes only the
                 // token of the Page that received the message (Meta's "Send API Reference": a Page
                 // access token of that Page). meta.cpp records that Page as the message's `to`.
                 const std::string page_id = p->to_values.empty() ? "" : p->to_values.front();
                 const std::string* token = cfg_.token_for_page(page_id);
                 if (token == nullptr) {
                   co_return SendResult::failed(
                       "no access token for the Page " + page_id + " that received this " +
                       p->channel + " message: add [[channels.meta.pages]] with id = \"" + page_id +
                       "\" and access_token_env (or access_token or access_token_file) to "
                       "[[channels.meta]] \"" +
                       cfg_.name + "\", or set its access_token");
                 }
                 if (p->kind == "comment") {
                   // An Instagram comment (meta.cpp) is answered in public, under it. One stored
                   // without an id of Instagram's has none to answer.
                   if (p->external_id.rfind("nomid.", 0) == 0) {
                     co_return SendResult::failed(
                         "the comment came without an id: a reply cannot be posted under it");
                   }
                   spec = instagram_comment_reply(*token, p->external_id, m.text);
                 } else {
                   spec = meta_send_message(*token, p->from_value, m.text);
                 }
               }
               // The app's limits and those of the Page or number the reply goes from.
               const bool whatsapp = p->channel == "whatsapp";
               const std::string business =
                   whatsapp ? "number " + flag_value(*p, "phone_number_id:")
                            : "page " + (p->to_values.empty() ? "" : p->to_values.front());
               Probe probe(*this);
               if (auto held = paused({"app", business}, probe)) {
                 co_return std::move(*held);
               }
               net::HttpRequest req = to_request(cfg_.base_url, spec);
               auto res = co_await rt_.http.request(std::move(req));
               SendOutcome o = parse_meta_send_response(res.status, res.body);
               if (o.ok) {
                 probe.over();
                 co_return SendResult::sent(o.provider_message_id);
               }
               if (std::string scope = meta_limit_scope(o.code, whatsapp, business);
                   !scope.empty() && res.status < 500) {
                 co_return pause(scope, o, retry_after_header(res));
               }
               if (res.status == 0) {
                 co_return network_failure_no_repeat(res, meta_platform(p->channel));
               }
               // parse_meta_send_response takes every 5xx for retryable: here it is an unknown
               // outcome (server_error_no_repeat), even with `is_transient: true` or code 1 (API
               // Unknown) or 2 (API Service). Meta's "Handling Errors" guide
               // (developers.facebook.com/docs/graph-api/guides/error-handling) says of them only
               // "Possibly a temporary issue due to downtime" / "Temporary issue due to downtime.
               // Wait and retry the operation", and of is_transient nothing more than that the
               // error is temporary: no word that the message was not delivered, and the Send
               // API and the Cloud API take no idempotency key that would make the retry
               // harmless. A retry of a request that Meta did carry out shows the customer the
               // answer twice, so the operator is told to look instead. (A 4xx naming these,
               // refused before processing, stays retried: parse_meta_send_response.)
               if (auto unknown =
                       server_error_no_repeat(res, o.error_message, meta_platform(p->channel))) {
                 co_return std::move(*unknown);
               }
               if (o.throttled) {
                 co_return SendResult::throttle(o.error_message, retry_after_header(res));
               }
               co_return o.retryable ? SendResult::retry(o.error_message, retry_after_header(res))
                                     : SendResult::failed(o.error_message);
             });
  }

 private:
  struct Pause {
    Clock::time_point until;
    std::string reason;    // Meta's message and the pause's end, for each reply it holds
    int level = 0;         // pauses of the scope met in a row
    bool probing = false;  // ended, and a reply is out asking Meta
  };

  // The scopes whose ended pause one reply asks Meta about: over() ends them (the reply went
  // out), else they are left for the next reply to ask (its own failure says nothing of them,
  // and a limit met again is a new pause, pause()).
  class Probe {
   public:
    explicit Probe(MetaSender& s) : s_(s) {}
    Probe(const Probe&) = delete;
    Probe& operator=(const Probe&) = delete;
    ~Probe() { settle(false); }
    void over() { settle(true); }
    std::vector<std::string> scopes;

   private:
    void settle(bool ended) {
      if (scopes.empty()) {
        return;
      }
      std::lock_guard lock(s_.mu_);
      for (const auto& k : scopes) {
        auto it = s_.pauses_.find(k);
        if (it == s_.pauses_.end() || it->second.until > Clock::now()) {
          continue;  // a new pause met meanwhile stays
        }
        if (ended) {
          logger("social")->info("[meta:{}] {}: the rate limit is over, replies go on",
                                 s_.cfg_.name, scope_name(k));
          s_.pauses_.erase(it);
        } else {
          it->second.probing = false;
        }
      }
      scopes.clear();
    }
    MetaSender& s_;
  };

  static std::string scope_name(const std::string& key) {
    if (key == "app") {
      return "the app";
    }
    if (key.rfind("number ", 0) == 0) {
      return "the WhatsApp number " + key.substr(7);
    }
    return "the Page " + key.substr(5);
  }

  // A pause that holds one of `scopes` (the reply waits, no request); nullopt lets the reply
  // go, `probe` then naming the ended pauses it asks Meta about.
  std::optional<SendResult> paused(const std::vector<std::string>& scopes, Probe& probe) {
    std::lock_guard lock(mu_);
    auto now = Clock::now();
    for (const auto& k : scopes) {
      auto it = pauses_.find(k);
      if (it == pauses_.end()) {
        continue;
      }
      if (it->second.until > now) {
        return SendResult::paused(it->second.reason,
                                  std::chrono::ceil<milliseconds>(it->second.until - now));
      }
      if (it->second.probing) {
        return SendResult::paused(
            it->second.reason + "; another reply is asking Meta whether it is over",
            kMetaProbeWait);
      }
    }
    for (const auto& k : scopes) {
      if (auto it = pauses_.find(k); it != pauses_.end()) {
        it->second.probing = true;
        probe.scopes.push_back(k);
      }
    }
    return std::nullopt;
  }

  // The reply met a limit of `scope`: the scope pauses (or a pause another reply met goes on),
  // and this reply waits with it, its attempt unspent.
  SendResult pause(const std::string& scope, const SendOutcome& o, milliseconds retry_after) {
    // This attempt's refusal is a send error; the replies held without a request are not.
    rt_.metrics.inc("switchboard_social_send_errors_total",
                    {{"channel", "meta"}, {"account", cfg_.name}});
    auto now = Clock::now();
    std::lock_guard lock(mu_);
    Pause& p = pauses_[scope];
    const bool holding = p.until > now;  // met by a reply sent together with this one
    if (!holding) {
      // A limit met again soon after its pause: longer. One met long after: a new one.
      p.level = now - p.until > kMetaMaxPause ? 1 : p.level + 1;
    }
    milliseconds wait =
        retry_after.count() > 0
            ? bound_provider_wait(retry_after, WaitBounds{kMinProviderWait, kMaxSendWait}, "social",
                                  "meta", cfg_.name, "Retry-After")
            : std::min<milliseconds>(kMetaFirstPause * (1LL << std::min(p.level - 1, 4)),
                                     kMetaMaxPause);
    auto until = now + wait;
    if (until > p.until) {
      std::string at = format_rfc3339(
          std::chrono::duration_cast<milliseconds>(until.time_since_epoch()).count() + 999);
      p.reason = o.error_message + " (rate limit of " + scope_name(scope) + ", code " +
                 std::to_string(o.code) + ": its replies wait until " + at + ")";
      if (!holding) {
        logger("social")->warn(
            "[meta:{}] rate limit of {} reached (code {}: {}): its replies wait "
            "until {}, without spending attempts",
            cfg_.name, scope_name(scope), o.code, o.error_message, at);
      }
      p.until = until;
    }
    p.probing = false;
    return SendResult::paused(p.reason, std::chrono::ceil<milliseconds>(p.until - now));
  }

  Runtime& rt_;
  const config::Meta& cfg_;
  std::mutex mu_;  // the pauses; sends may finish on any thread of the executor
  std::map<std::string, Pause> pauses_;  // by scope: "app", "page <id>", "number <id>"
};

}  // namespace

std::shared_ptr<Sender> make_mastodon_sender(Runtime& rt, const config::Mastodon& cfg) {
  return std::make_shared<MastodonSender>(rt, cfg);
}
std::shared_ptr<Sender> make_x_sender(Runtime& rt, const config::X& cfg) {
  return std::make_shared<XSender>(rt, cfg);
}
std::shared_ptr<Sender> make_telegram_sender(Runtime& rt, const config::Telegram& cfg) {
  return std::make_shared<TelegramSender>(rt, cfg);
}
std::shared_ptr<Sender> make_meta_sender(Runtime& rt, const config::Meta& cfg) {
  return std::make_shared<MetaSender>(rt, cfg);
}

}  // namespace sb::social
