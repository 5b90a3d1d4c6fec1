#pragma once
// The configuration of SPEC section 2, parsed from TOML (config.cpp). Secrets are resolved from
// the environment at load time (`password_env = "VAR"`) and held here in memory only; they must
// never be logged.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sb::config {

using std::chrono::milliseconds;

struct Server {
  std::string listen = "127.0.0.1:8080";  // host:port
  std::string host = "127.0.0.1";         // split from listen
  std::uint16_t port = 8080;
  std::size_t max_body_bytes = 1048576;
  // Open HTTP connections at most; 0 (not set): the open-file limit less what the daemon needs
  // itself, 10000 at most (see http::ServerOptions).
  std::size_t max_connections = 0;
  // Bytes of request bodies held at once, all connections together; 0 (not set): 256 MiB, or
  // max_body_bytes when larger (see http::ServerOptions).
  std::size_t max_body_bytes_in_flight = 0;
};

struct Storage {
  std::string path = "var/switchboard.db";
  // What an acknowledged commit survives: "normal", a crash of the process (SQLite's WAL with
  // synchronous=NORMAL: the WAL is synced at checkpoints); "full", also an operating-system
  // crash or a power loss (synchronous=FULL: one fsync of the WAL per group commit).
  std::string synchronous = "normal";
};

struct Redis {
  std::string url = "redis://127.0.0.1:6379/0";
  // Parsed from url:
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  int db = 0;
  std::string username;  // from the url's userinfo, if any (Redis 6 ACL user)
  std::string password;  // from the url's userinfo, or password / password_env
  std::string prefix = "sb";

  // The AUTH of the handshake, empty without a password: `AUTH user password` for an ACL user
  // (Redis 6), `AUTH password` for the default user.
  std::vector<std::string> auth_command() const {
    if (password.empty()) {
      return {};
    }
    if (username.empty()) {
      return {"AUTH", password};
    }
    return {"AUTH", username, password};
  }
};

struct Api {
  std::vector<std::string> tokens;  // inline `tokens`, then one per `tokens_env` variable
};

struct Matching {
  std::string default_region = "US";  // ISO 3166-1 alpha-2
};

// One [[routing.rules]] entry. Unset conditions are nullopt / empty.
struct RuleWhen {
  std::optional<std::string> channel;
  std::optional<std::string> account;
  std::optional<std::string> kind;
  std::optional<std::string> customer_tier;
  std::optional<std::string> customer_tag;
  std::optional<std::string> subject_matches;  // regex source, ECMAScript, case-insensitive
  std::optional<std::string> text_matches;
  std::vector<std::string> call_status;  // any of
  std::optional<bool> is_new_customer;
  std::vector<std::string> flags;  // extension: any of the interaction's flags
};

struct Rule {
  std::string name;
  std::string queue;
  std::string priority = "normal";  // urgent | high | normal | low
  bool override_sticky = false;     // issue 3: wins over the conversation's sticky queue
  RuleWhen when;
  int line = 0;  // where it was declared, for messages
};

struct Routing {
  std::string default_queue = "general";
  milliseconds claim_timeout{5 * 60 * 1000};
  int max_deliveries = 5;
  // Long-polling claims (POST /v1/agent/claim waiting for work) one agent may have at once; the
  // next is answered 429. Each holds an HTTP connection the connection cap cannot close.
  int max_waiting_claims_per_agent = 8;
  std::vector<Rule> rules;
};

struct Agent {
  std::string id;
  std::string token;
  std::vector<std::string> queues;
};

// --- channels -------------------------------------------------------------------------------

struct Imap {
  std::string name;
  std::string host;
  std::uint16_t port = 993;
  std::string tls = "implicit";  // implicit | starttls | none
  std::string ca_file;           // optional extra CA bundle for private servers
  std::string username;
  std::string auth = "password";  // password | xoauth2
  std::string password;           // resolved secret
  std::string token;              // resolved xoauth2 token (token / token_env)
  std::string token_file;         // xoauth2 token file, re-read on each login (rotation)
  std::vector<std::string> mailboxes{"INBOX"};
  milliseconds poll_interval{30000};
  std::string after = "keep";  // keep | seen | move:Folder
  // A message whose FETCH keeps failing is stored as an `unfetchable` placeholder only after
  // it has failed for this long (and in several sessions): a server that cannot FETCH for a
  // while (a failover) must not turn real mail into placeholders.
  milliseconds unfetchable_after{120000};
  // What the first sync of a mailbox reads (no cursor stored for it, or one of another
  // UIDVALIDITY): nullopt ("all", the default) every message; 0 ("none") only mail arriving from
  // then on; a duration the messages whose INTERNALDATE is within it. A stored cursor wins.
  std::optional<milliseconds> backfill;
  bool operator==(const Imap&) const = default;
};

struct Smtp {
  std::string name;
  std::string for_account;  // `for`
  std::string host;
  std::uint16_t port = 465;
  std::string tls = "implicit";
  std::string ca_file;
  std::string username;
  std::string password;
  std::string from;
  bool operator==(const Smtp&) const = default;
};

struct Twilio {
  std::string name;
  std::string auth_token;
  std::string public_url;
  bool operator==(const Twilio&) const = default;
};

struct Telnyx {
  std::string name;
  std::string public_key;  // base64 Ed25519 public key
  bool operator==(const Telnyx&) const = default;
};

struct CallWebhook {
  std::string name;
  std::string secret;
  bool operator==(const CallWebhook&) const = default;
};

// `backfill`: how far back the first start of a polled account reads (no cursor stored yet):
// mentions older than that are skipped, the newest id becomes the cursor. nullopt ("all"):
// whatever the API still returns (Mastodon: the whole history; X: the last 800 mentions).
// 0 ("none"): only what arrives from then on. A stored cursor always wins.
inline constexpr milliseconds kDefaultBackfill{24 * 3600 * 1000};

struct Mastodon {
  std::string name;
  std::string base_url;
  std::string access_token;
  milliseconds poll_interval{30000};
  std::optional<milliseconds> backfill = kDefaultBackfill;
  bool operator==(const Mastodon&) const = default;
};

// OAuth 1.0a User Context (RFC 5849) of the support account: X calls the consumer key and
// secret "API key and secret"; the access token and its secret are the account's, and do not
// expire.
struct XUserContext {
  std::string consumer_key;
  std::string consumer_secret;
  std::string access_token;
  std::string access_token_secret;
  bool operator==(const XUserContext&) const = default;
};

// The X user who granted an OAuth 1.0a access token: X's tokens read "<numeric user id>-<random>".
// Empty for a token without that prefix (another format, a proxy's).
inline std::string_view x_token_user(std::string_view access_token) {
  std::size_t dash = access_token.find('-');
  if (dash == std::string_view::npos || dash == 0) {
    return {};
  }
  std::string_view id = access_token.substr(0, dash);
  for (char c : id) {
    if (c < '0' || c > '9') {
      return {};
    }
  }
  return id;
}

struct X {
  std::string name;
  std::string base_url = "https://api.x.com";
  std::string bearer_token;  // app-only: reads (the mentions timeline)
  std::string user_id;
  milliseconds poll_interval{60000};
  std::optional<milliseconds> backfill = kDefaultBackfill;
  // Signs the calls X accepts only in user context (POST /2/tweets). Without it they carry the
  // bearer token, which X refuses there with 403.
  std::optional<XUserContext> user_context{};
  // `direct_messages`: whether the account reads its DMs (GET /2/dm_events, user context only).
  // nullopt: not set, which is true with user context; false turns them off (an app without
  // Direct Message permission). True without user context is refused at load.
  std::optional<bool> direct_messages{};
  bool reads_direct_messages() const { return user_context && direct_messages.value_or(true); }
  bool operator==(const X&) const = default;
};

// A Facebook Page or Instagram professional account of a Meta app, with the token its
// Messenger/Instagram replies need: a Page-scoped sender id (PSID, IGSID) is valid only for its
// Page, and the Send API takes only that Page's access token.
struct MetaPage {
  std::string id;  // as the webhook's entry.id (and recipient.id) names it
  std::string access_token;
  bool operator==(const MetaPage&) const = default;
};

struct Meta {
  std::string name;
  std::string app_secret;
  std::string verify_token;
  // WhatsApp replies, and Messenger/Instagram replies for a Page not in `pages`. Optional when
  // `pages` is given.
  std::string access_token;
  std::string base_url = "https://graph.facebook.com/v19.0";
  std::vector<MetaPage> pages{};  // [[channels.meta.pages]], ids unique
  // The token a Messenger/Instagram reply for `page_id` goes with: the Page's own, else the
  // account's access_token; nullptr when there is neither.
  const std::string* token_for_page(std::string_view page_id) const {
    for (const MetaPage& p : pages) {
      if (p.id == page_id) {
        return &p.access_token;
      }
    }
    return access_token.empty() ? nullptr : &access_token;
  }
  bool operator==(const Meta&) const = default;
};

struct Telegram {
  std::string name;
  std::string base_url = "https://api.telegram.org";
  std::string bot_token;
  bool operator==(const Telegram&) const = default;
};

struct Channels {
  std::vector<Imap> imap;
  std::vector<Smtp> smtp;
  std::vector<Twilio> twilio;
  std::vector<Telnyx> telnyx;
  std::vector<CallWebhook> call_webhook;
  std::vector<Mastodon> mastodon;
  std::vector<X> x;
  std::vector<Meta> meta;
  std::vector<Telegram> telegram;
};

struct Config {
  std::string source_path;  // empty when built-in defaults are used
  Server server;
  Storage storage;
  Redis redis;
  Api api;
  Matching matching;
  Routing routing;
  std::vector<Agent> agents;
  Channels channels;
};

// One problem found in a config file, reported as `PATH:LINE: message`.
struct Problem {
  std::string path;
  int line = 0;  // 0 when the problem has no single line
  std::string message;
  std::string to_string() const;
};

struct LoadResult {
  std::optional<Config> config;  // set only when there are no problems
  std::vector<Problem> problems;
  // What loads but will not work as the operator may expect (an X account that cannot reply):
  // check-config prints them, `run` logs them once at start-up.
  std::vector<Problem> warnings{};
};

struct LoadOptions {
  // false for the commands that use no secret (customers import and show): an unset variable
  // named by a `*_env` key is then no problem and its secret stays empty, so an operator can
  // run them without the daemon's environment. Everything else is still checked.
  bool require_env_secrets = true;
};

// Parses and validates a TOML file. Reports every problem found, not only the first: unknown
// keys, wrong types, missing required keys, bad durations, bad regexes, duplicate channel
// names, unset secret environment variables, tls = "none" to a non-loopback host, ...
LoadResult load_file(const std::string& path, const LoadOptions& options = {});
LoadResult load_string(std::string_view toml, const std::string& path_for_messages,
                       const LoadOptions& options = {});

// What a reload (SIGHUP) leaves as it was: it swaps the routing rules and the agents, and
// everything else keeps its start-up value until a restart. One line per such key whose value
// in `fresh` differs from `running`, e.g. "routing.claim_timeout (300s -> 600s)"; secrets and
// the Redis url (it may hold a password) are named without their values.
// An account whose secrets alone changed is not named: a reload applies them (take_secrets).
std::vector<std::string> changes_needing_restart(const Config& running, const Config& fresh);

// The secrets a reload applies, so that a leaked or expiring one is rotated without a restart
// (and without the restart's gap, in which a provider's callbacks would be refused and the IMAP
// sessions dropped). The webhook signing secrets: Twilio's auth_token, Telnyx's public_key, a
// call_webhook's secret, Meta's app_secret and verify_token. The credentials Switchboard reaches
// out with: the IMAP password (or xoauth2 token), the SMTP password, the Mastodon access_token,
// X's bearer_token and user context keys, Meta's access_token and [[channels.meta.pages]]
// tokens, the Telegram bot_token (of the same bot or of another one: the poller keeps its
// offset only for the bot it was read from).
// Copied into `running` from the account of `fresh` under the same name, member by member,
// only when nothing else about the account changed; returns the keys copied (none: nothing
// taken). Anything else about an account (a URL, a user name, a Page added) waits for a
// restart, and so do its secrets when they changed with it: half a change is not applied.
// Instantiated for every account kind of Channels.
template <class Account>
std::vector<std::string> take_secrets(Account& running, const std::vector<Account>& fresh);

// The same for every account of `running`; returns the accounts changed with their keys,
// e.g. "twilio main: auth_token", "meta page: app_secret, pages access_token".
std::vector<std::string> take_secrets(Channels& running, const Channels& fresh);

// SPEC section 1: --config, else $SWITCHBOARD_CONFIG (when not empty), else ./switchboard.toml
// if anything by that name exists (a directory or a broken symlink too, for load_file to
// refuse), else "" (built-in defaults).
std::string resolve_path(const std::optional<std::string>& flag);

// The built-in defaults (SPEC section 1).
Config defaults();

}  // namespace sb::config
