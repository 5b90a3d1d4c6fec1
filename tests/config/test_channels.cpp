// Problems in [[channels.*]]: names, TLS, secrets, URLs and keys.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "tests/config/helpers.hpp"

using namespace sb::config;
using namespace sb::config::test;
using namespace std::chrono_literals;

TEST_CASE("imap: defaults, required keys and secrets from the environment") {
  ScopedEnv env("SBTEST_IMAP_PW", "pw-from-env");
  const Config c = load_ok(R"(
[[channels.imap]]
name = "support"
host = "imap.example.com"
username = "support@example.com"
password_env = "SBTEST_IMAP_PW"
)");
  const Imap& imap = c.channels.imap.at(0);
  CHECK(imap.password == "pw-from-env");
  CHECK(imap.port == 993);
  CHECK(imap.tls == "implicit");
  CHECK(imap.auth == "password");
  CHECK(imap.mailboxes == std::vector<std::string>{"INBOX"});
  CHECK(imap.poll_interval == 30s);
  CHECK(imap.after == "keep");

  CHECK(problems_of("[[channels.imap]]\nname = \"support\"\n") ==
        std::vector<std::string>{
            "t.toml:1: missing required key \"channels.imap.host\"",
            "t.toml:1: missing required key \"channels.imap.username\"",
            "t.toml:1: missing required key \"channels.imap.password\" (or password_env or "
            "password_file)",
        });
}

TEST_CASE("an unset or empty environment variable is named, the secret never is") {
  ScopedEnv unset("SBTEST_NOT_SET", nullptr);
  ScopedEnv empty("SBTEST_EMPTY", "");
  const auto problems = problems_of(R"(
[[channels.imap]]
name = "support"
host = "imap.example.com"
username = "support@example.com"
password_env = "SBTEST_NOT_SET"

[[channels.telegram]]
name = "tg"
bot_token_env = "SBTEST_EMPTY"
)");
  CHECK(problems == std::vector<std::string>{
                        "t.toml:5: environment variable SBTEST_NOT_SET (from "
                        "channels.imap.password_env) is not set or empty",
                        "t.toml:9: environment variable SBTEST_EMPTY (from "
                        "channels.telegram.bot_token_env) is not set or empty",
                    });
  CHECK(
      problem_of("[[channels.call_webhook]]\nname = \"p\"\nsecret = \"s\"\nsecret_env = \"V\"\n") ==
      "t.toml:4: give only one of channels.call_webhook.secret, "
      "channels.call_webhook.secret_env and channels.call_webhook.secret_file");
  CHECK(problem_of("[[channels.call_webhook]]\nname = \"p\"\nsecret = \"\"\n") ==
        "t.toml:3: channels.call_webhook.secret must not be empty");
}

TEST_CASE("imap with auth = xoauth2 takes a token, token_env or token_file") {
  ScopedEnv env("SBTEST_OAUTH", "ya29.token");
  const Config c = load_ok(R"(
[[channels.imap]]
name = "gmail"
host = "imap.gmail.com"
username = "support@example.com"
auth = "xoauth2"
token_env = "SBTEST_OAUTH"
)");
  CHECK(c.channels.imap.at(0).token == "ya29.token");
  CHECK(c.channels.imap.at(0).password.empty());
  CHECK(load_ok(R"(
[[channels.imap]]
name = "gmail"
host = "imap.gmail.com"
username = "support@example.com"
auth = "xoauth2"
token_file = "/run/secrets/token"
)")
            .channels.imap.at(0)
            .token_file == "/run/secrets/token");
  CHECK(problem_of(R"(
[[channels.imap]]
name = "gmail"
host = "imap.gmail.com"
username = "support@example.com"
auth = "xoauth2"
)") == "t.toml:5: channels.imap with auth = \"xoauth2\" needs token, token_env or token_file");
}

TEST_CASE("imap: tls, plaintext only to loopback, after, port defaults") {
  const char* head = "[[channels.imap]]\nname = \"s\"\nusername = \"u\"\npassword = \"p\"\n";
  auto with = [&](const std::string& tail) { return std::string(head) + tail; };

  CHECK(problem_of(with("host = \"imap.example.com\"\ntls = \"ssl\"\n")) ==
        "t.toml:6: channels.imap.tls must be one of implicit, starttls, none (got \"ssl\")");
  CHECK(problem_of(with("host = \"imap.example.com\"\ntls = \"none\"\n")) ==
        "t.toml:6: channels.imap.tls = \"none\" is allowed only to a loopback host (127.0.0.0/8, "
        "::1, localhost), not \"imap.example.com\"");
  for (const char* host : {"127.0.0.1", "127.3.2.1", "::1", "localhost", "LOCALHOST"}) {
    CAPTURE(host);
    const Config c = load_ok(with("host = \"" + std::string(host) + "\"\ntls = \"none\"\n"));
    CHECK(c.channels.imap.at(0).port == 143);
  }
  CHECK(load_ok(with("host = \"h\"\ntls = \"starttls\"\n")).channels.imap.at(0).port == 143);
  CHECK(load_ok(with("host = \"h\"\nport = 10993\n")).channels.imap.at(0).port == 10993);
  CHECK(problem_of(with("host = \"h\"\nport = 70000\n")) ==
        "t.toml:6: channels.imap.port must be between 1 and 65535 (got 70000)");

  CHECK(load_ok(with("host = \"h\"\nafter = \"move:Processed\"\n")).channels.imap.at(0).after ==
        "move:Processed");
  CHECK(load_ok(with("host = \"h\"\nafter = \"seen\"\n")).channels.imap.at(0).after == "seen");
  CHECK(problem_of(with("host = \"h\"\nafter = \"delete\"\n")) ==
        "t.toml:6: channels.imap.after must be keep, seen or move:<Folder> (got \"delete\")");
  CHECK(problem_of(with("host = \"h\"\nafter = \"move:\"\n"))
            .rfind("t.toml:6: channels.imap.after", 0) == 0);
}

TEST_CASE("smtp: `for` must name an imap account, ports by tls") {
  const char* imap =
      "[[channels.imap]]\nname = \"support\"\nhost = \"h\"\nusername = \"u\"\npassword = \"p\"\n";
  const Config c = load_ok(std::string(imap) + R"(
[[channels.smtp]]
name = "support-out"
for = "support"
host = "smtp.example.com"
tls = "starttls"
from = "Support <support@example.com>"
)");
  CHECK(c.channels.smtp.at(0).for_account == "support");
  CHECK(c.channels.smtp.at(0).port == 587);

  CHECK(problem_of(std::string(imap) + R"(
[[channels.smtp]]
name = "out"
for = "sales"
host = "smtp.example.com"
from = "x@example.com"
)") == "t.toml:9: channels.smtp.for names no [[channels.imap]] account: \"sales\"");

  // A username without a password is a mistake; no username means no AUTH (a local relay).
  CHECK(problem_of(std::string(imap) + R"(
[[channels.smtp]]
name = "out"
for = "support"
host = "127.0.0.1"
tls = "none"
username = "u"
from = "x@example.com"
)") == "t.toml:7: missing required key \"channels.smtp.password\" (or password_env or "
       "password_file)");
  CHECK(problem_of(std::string(imap) + R"(
[[channels.smtp]]
name = "out"
for = "support"
host = "smtp.example.com"
tls = "none"
from = "x@example.com"
)")
            .rfind("t.toml:11: channels.smtp.tls = \"none\" is allowed only to a loopback host",
                   0) == 0);
}

TEST_CASE("channel names are unique across all kinds") {
  ScopedEnv env("SBTEST_TW", "tw");
  CHECK(problems_of(R"(
[[channels.call_webhook]]
name = "voice"
secret = "s"

[[channels.twilio]]
name = "voice"
auth_token_env = "SBTEST_TW"
public_url = "https://hooks.example.com"

[[channels.call_webhook]]
name = "voice"
secret = "t"
)") == std::vector<std::string>{
           "t.toml:6: duplicate channel name \"voice\" (already used by channels.call_webhook at "
           "line 2); names must be unique across all channels",
           "t.toml:11: duplicate channel name \"voice\" (already used by channels.call_webhook "
           "at line 2); names must be unique across all channels",
       });
  CHECK(problem_of("[[channels.call_webhook]]\nname = \"a/b\"\nsecret = \"s\"\n") ==
        "t.toml:2: channels.call_webhook.name must be letters, digits, '.', '_' or '-' (got "
        "\"a/b\")");
}

TEST_CASE("telnyx public_key must be base64 of 32 bytes") {
  const Config c = load_ok(
      "[[channels.telnyx]]\nname = \"t\"\npublic_key = "
      "\"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\"\n");
  CHECK(c.channels.telnyx.at(0).public_key == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
  const std::string expected =
      "t.toml:3: channels.telnyx.public_key must be a base64 Ed25519 public key (32 bytes)";
  CHECK(problem_of("[[channels.telnyx]]\nname = \"t\"\npublic_key = \"c2hvcnQ=\"\n") == expected);
  CHECK(problem_of("[[channels.telnyx]]\nname = \"t\"\npublic_key = \"not base64!\"\n") ==
        expected);
}

TEST_CASE("API channels: URLs, required keys, trailing slashes") {
  CHECK(problems_of(R"(
[[channels.mastodon]]
name = "m"
base_url = "mastodon.example"
access_token = "t"

[[channels.x]]
name = "x"
bearer_token = "b"
)") == std::vector<std::string>{
           "t.toml:3: channels.mastodon.base_url must be an http:// or https:// URL (got "
           "\"mastodon.example\")",
           "t.toml:6: missing required key \"channels.x.user_id\"",
       });
  const Config c = load_ok(R"(
[[channels.telegram]]
name = "tg"
base_url = "http://127.0.0.1:9999/"
bot_token = "123:abc"

[[channels.meta]]
name = "meta"
app_secret = "a"
verify_token = "v"
access_token = "t"
)");
  CHECK(c.channels.telegram.at(0).base_url == "http://127.0.0.1:9999");
  CHECK(c.channels.meta.at(0).base_url == "https://graph.facebook.com/v19.0");
  CHECK(problem_of("[[channels.twilio]]\nname = \"v\"\nauth_token = \"a\"\n") ==
        "t.toml:1: missing required key \"channels.twilio.public_url\"");
}

TEST_CASE("API channels: plain http:// only to a loopback host, the token would travel in clear") {
  CHECK(problem_of("[[channels.telegram]]\nname = \"tg\"\nbase_url = "
                   "\"http://api.telegram.example\"\nbot_token = \"1:a\"\n") ==
        "t.toml:3: channels.telegram.base_url must be https:// for a host other than loopback "
        "(127.0.0.0/8, ::1, localhost), not \"http://api.telegram.example\": the account's "
        "token would cross the network in clear");
  CHECK(problem_of("[[channels.mastodon]]\nname = \"m\"\nbase_url = \"http://10.0.0.5:3000\"\n"
                   "access_token = \"t\"\n")
            .find("channels.mastodon.base_url must be https://") != std::string::npos);
  // Twilio's public_url is where Twilio calls us (the signature covers it), no token goes there.
  CHECK(load_ok("[[channels.twilio]]\nname = \"v\"\nauth_token = \"a\"\npublic_url = "
                "\"http://hooks.example.com/tw\"\n")
            .channels.twilio.at(0)
            .public_url == "http://hooks.example.com/tw");
  for (const char* ok : {"http://localhost:8080", "http://[::1]:9", "http://127.0.0.2",
                         "https://mastodon.example"}) {
    CAPTURE(ok);
    const Config c = load_ok(std::string("[[channels.mastodon]]\nname = \"m\"\nbase_url = \"") +
                             ok + "\"\naccess_token = \"t\"\n");
    CHECK(c.channels.mastodon.at(0).base_url == ok);
  }
}

TEST_CASE("mastodon and x: backfill is a look-back, none or all, 24h by default") {
  const Config c = load_ok(R"(
[[channels.mastodon]]
name = "m1"
base_url = "https://mastodon.example"
access_token = "t"

[[channels.mastodon]]
name = "m2"
base_url = "https://mastodon.example"
access_token = "t"
backfill = "2h"

[[channels.mastodon]]
name = "m3"
base_url = "https://mastodon.example"
access_token = "t"
backfill = "none"

[[channels.x]]
name = "x1"
bearer_token = "b"
user_id = "1"
backfill = "all"

[[channels.x]]
name = "x2"
bearer_token = "b"
user_id = "1"
backfill = "0s"
)");
  CHECK(c.channels.mastodon.at(0).backfill == std::optional<std::chrono::milliseconds>(24h));
  CHECK(c.channels.mastodon.at(1).backfill == std::optional<std::chrono::milliseconds>(2h));
  CHECK(c.channels.mastodon.at(2).backfill == std::optional<std::chrono::milliseconds>(0s));
  CHECK_FALSE(c.channels.x.at(0).backfill.has_value());
  CHECK(c.channels.x.at(1).backfill == std::optional<std::chrono::milliseconds>(0s));

  CHECK(problems_of(R"(
[[channels.mastodon]]
name = "m"
base_url = "https://mastodon.example"
access_token = "t"
backfill = "yesterday"

[[channels.x]]
name = "x"
bearer_token = "b"
user_id = "1"
backfill = 24
)") == std::vector<std::string>{
           "t.toml:5: channels.mastodon.backfill: invalid value \"yesterday\" (use a duration "
           "such as \"24h\" or \"30m\", \"none\" or \"all\")",
           "t.toml:11: channels.x.backfill must be a string",
       });
}

TEST_CASE("imap: backfill is all by default, none or a look-back, a bad value at its line") {
  const Config c = load_ok(R"(
[[channels.imap]]
name = "a"
host = "imap.example.com"
username = "u"
password = "p"

[[channels.imap]]
name = "b"
host = "imap.example.com"
username = "u"
password = "p"
backfill = "none"

[[channels.imap]]
name = "c"
host = "imap.example.com"
username = "u"
password = "p"
backfill = "168h"

[[channels.imap]]
name = "d"
host = "imap.example.com"
username = "u"
password = "p"
backfill = "all"
)");
  CHECK_FALSE(c.channels.imap.at(0).backfill.has_value());
  CHECK(c.channels.imap.at(1).backfill == std::optional<std::chrono::milliseconds>(0s));
  CHECK(c.channels.imap.at(2).backfill == std::optional<std::chrono::milliseconds>(168h));
  CHECK_FALSE(c.channels.imap.at(3).backfill.has_value());

  CHECK(problems_of(R"(
[[channels.imap]]
name = "support"
host = "imap.example.com"
username = "u"
password = "p"
backfill = "last week"
)") == std::vector<std::string>{
           "t.toml:6: channels.imap.backfill: invalid value \"last week\" (use a duration "
           "such as \"24h\" or \"30m\", \"none\" or \"all\")",
       });
}

TEST_CASE("x: the four OAuth 1.0a keys of user context come together, from the environment") {
  ScopedEnv ck("SBTEST_X_CK", "consumer-key");
  ScopedEnv cs("SBTEST_X_CS", "consumer-secret");
  ScopedEnv at("SBTEST_X_AT", "access-token");
  ScopedEnv as("SBTEST_X_AS", "access-token-secret");
  LoadResult all = load_string(body(R"(
[[channels.x]]
name = "x"
bearer_token = "b"
user_id = "1"
consumer_key_env = "SBTEST_X_CK"
consumer_secret_env = "SBTEST_X_CS"
access_token_env = "SBTEST_X_AT"
access_token_secret_env = "SBTEST_X_AS"
)"),
                               "t.toml");
  REQUIRE(all.config);
  CHECK(all.problems.empty());
  CHECK(all.warnings.empty());
  const X& x = all.config->channels.x.at(0);
  REQUIRE(x.user_context);
  CHECK(x.user_context->consumer_key == "consumer-key");
  CHECK(x.user_context->consumer_secret == "consumer-secret");
  CHECK(x.user_context->access_token == "access-token");
  CHECK(x.user_context->access_token_secret == "access-token-secret");
  CHECK(x.bearer_token == "b");  // the reads keep it

  // Two of the four: the other two are named, at the account's line.
  CHECK(problems_of(R"(
[[channels.mastodon]]
name = "m"
base_url = "https://mastodon.example"
access_token = "t"

[[channels.x]]
name = "x"
bearer_token = "b"
user_id = "1"
consumer_key_env = "SBTEST_X_CK"
access_token_env = "SBTEST_X_AT"
)") == std::vector<std::string>{
           "t.toml:6: missing channels.x.consumer_secret_env and "
           "channels.x.access_token_secret_env: OAuth 1.0a user context needs all four of "
           "consumer_key_env, consumer_secret_env, access_token_env and access_token_secret_env",
       });
  CHECK(problem_of(R"(
[[channels.x]]
name = "x"
bearer_token = "b"
user_id = "1"
consumer_key = "inline works too"
)") == "t.toml:1: missing channels.x.consumer_secret_env, channels.x.access_token_env and "
       "channels.x.access_token_secret_env: OAuth 1.0a user context needs all four of "
       "consumer_key_env, consumer_secret_env, access_token_env and access_token_secret_env");
  // An unset variable is named as for any other secret.
  ScopedEnv unset("SBTEST_X_UNSET", nullptr);
  CHECK(problem_of(R"(
[[channels.x]]
name = "x"
bearer_token = "b"
user_id = "1"
consumer_key_env = "SBTEST_X_CK"
consumer_secret_env = "SBTEST_X_CS"
access_token_env = "SBTEST_X_AT"
access_token_secret_env = "SBTEST_X_UNSET"
)") == "t.toml:8: environment variable SBTEST_X_UNSET (from channels.x.access_token_secret_env) "
       "is not set or empty");
}

TEST_CASE(
    "x: direct_messages is read with user context (unset: read, false: not), and true without "
    "user context is refused") {
  const std::string keys = R"(
consumer_key = "ck"
consumer_secret = "cs"
access_token = "1-at"
access_token_secret = "as"
)";
  auto account = [](const std::string& extra) {
    return "[[channels.x]]\nname = \"x\"\nbearer_token = \"b\"\nuser_id = \"1\"\n" + extra;
  };
  LoadResult unset = load_string(body(account(keys)), "t.toml");
  REQUIRE(unset.config);
  CHECK(unset.problems.empty());
  CHECK_FALSE(unset.config->channels.x.at(0).direct_messages.has_value());
  CHECK(unset.config->channels.x.at(0).reads_direct_messages());
  LoadResult off = load_string(body(account(keys + "direct_messages = false\n")), "t.toml");
  REQUIRE(off.config);
  CHECK(off.problems.empty());
  CHECK(off.config->channels.x.at(0).direct_messages == std::optional<bool>(false));
  CHECK_FALSE(off.config->channels.x.at(0).reads_direct_messages());
  LoadResult on = load_string(body(account(keys + "direct_messages = true\n")), "t.toml");
  REQUIRE(on.config);
  CHECK(on.problems.empty());
  CHECK(on.config->channels.x.at(0).reads_direct_messages());
  // Without user context: false is fine (and changes nothing), true cannot be done.
  LoadResult bearer_only = load_string(body(account("direct_messages = false\n")), "t.toml");
  REQUIRE(bearer_only.config);
  CHECK(bearer_only.problems.empty());
  CHECK_FALSE(bearer_only.config->channels.x.at(0).reads_direct_messages());
  CHECK(problem_of(account("direct_messages = true\n")) ==
        "t.toml:1: channels.x account \"x\": direct_messages = true needs OAuth 1.0a user "
        "context (consumer_key_env, consumer_secret_env, access_token_env and "
        "access_token_secret_env): X lists direct messages only in it");
  CHECK(problem_of(account("direct_messages = \"yes\"\n")).find("direct_messages") !=
        std::string::npos);
}

TEST_CASE("x: an access token of another user than user_id is refused, naming both ids") {
  auto account = [](const std::string& token) {
    return R"(
[[channels.x]]
name = "brand"
bearer_token = "b"
user_id = "1500000000000000001"
consumer_key = "ck"
consumer_secret = "cs"
access_token = ")" +
           token + R"("
access_token_secret = "as"
)";
  };
  CHECK(problem_of(account("987654321-AbCdEfGhIjKlMnOp")) ==
        "t.toml:1: channels.x account \"brand\": access_token belongs to the X user 987654321, "
        "not to user_id 1500000000000000001: replies would be posted as another account than the "
        "one whose mentions are read");
  // The token's own secret part is never printed.
  CHECK(problem_of(account("987654321-AbCdEfGhIjKlMnOp")).find("AbCdEf") == std::string::npos);
  // user_id's own token, and tokens without a numeric user id in front, load.
  CHECK(problems_of(account("1500000000000000001-AbCdEfGhIjKlMnOp")).empty());
  CHECK(problems_of(account("opaque-token")).empty());
  CHECK(problems_of(account("-123")).empty());
  CHECK(problems_of(account("1234567")).empty());
}

TEST_CASE("x: an account without user context loads, with one warning that it cannot reply") {
  LoadResult r = load_string(body(R"(
[server]
listen = "127.0.0.1:8080"

[[channels.x]]
name = "brand"
bearer_token = "b"
user_id = "1"
)"),
                             "t.toml");
  REQUIRE(r.config);
  CHECK_FALSE(r.config->channels.x.at(0).user_context);
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].to_string() ==
        "t.toml:4: channels.x account \"brand\" cannot reply: X takes POST /2/tweets only in user "
        "context, not with the app-only bearer token; set consumer_key_env, consumer_secret_env, "
        "access_token_env and access_token_secret_env (OAuth 1.0a) to reply");
  CHECK(r.warnings[0].message.find("\"b\"") == std::string::npos);  // no secret in it
}

TEST_CASE("meta pages: one token per Page, from the environment or a file, ids unique") {
  ScopedEnv shop("SBTEST_META_PAGE_SHOP", "shop-token");
  char tmpl[] = "/tmp/sb-meta-page-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  { std::ofstream(dir + "/outlet") << "outlet-token\n"; }
  const Config c = load_ok(R"(
[[channels.meta]]
name = "meta"
app_secret = "a"
verify_token = "v"

[[channels.meta.pages]]
id = "1111"
access_token_env = "SBTEST_META_PAGE_SHOP"

[[channels.meta.pages]]
id = "17841400000000000"
access_token_file = ")" + dir +
                           R"(/outlet"
)");
  const Meta& meta = c.channels.meta.at(0);
  CHECK(meta.access_token.empty());  // optional once Pages carry their own
  REQUIRE(meta.pages.size() == 2);
  CHECK(meta.pages[0] == MetaPage{"1111", "shop-token"});
  CHECK(meta.pages[1] == MetaPage{"17841400000000000", "outlet-token"});
  CHECK(*meta.token_for_page("1111") == "shop-token");
  CHECK(meta.token_for_page("2222") == nullptr);  // no account token to fall back on
  std::filesystem::remove_all(dir);

  CHECK(problems_of(R"(
[[channels.meta]]
name = "meta"
app_secret = "a"
verify_token = "v"
access_token = "t"

[[channels.meta.pages]]
id = "1111"
access_token = "one"

[[channels.meta.pages]]
id = "1111"
access_token = "two"

[[channels.meta.pages]]
id = "my-shop"
token = "x"
)") == std::vector<std::string>{
           "t.toml:12: duplicate page id \"1111\" in channels.meta \"meta\" (first at line 8)",
           "t.toml:15: missing required key \"channels.meta.pages.access_token\" (or "
           "access_token_env or access_token_file)",
           "t.toml:16: channels.meta.pages.id must be the numeric Page or Instagram account id "
           "the webhook's entry.id names (got \"my-shop\")",
           "t.toml:17: unknown key \"channels.meta.pages.token\"",
       });
  // Without Pages the account's token is what every reply goes with: still required.
  CHECK(problem_of("[[channels.meta]]\nname = \"meta\"\napp_secret = \"a\"\nverify_token = "
                   "\"v\"\n") ==
        "t.toml:1: missing required key \"channels.meta.access_token\" (or access_token_env or "
        "access_token_file)");
}

TEST_CASE("meta pages: a reload applies a Page token changed alone, and a Page added waits") {
  const std::string before = R"(
[[channels.meta]]
name = "meta"
app_secret = "a"
verify_token = "v"
[[channels.meta.pages]]
id = "1111"
access_token = "old"
)";
  const Config running = load_ok(before);
  const Config fresh = load_ok(before.substr(0, before.rfind("old")) + "new\"\n");
  Channels channels = running.channels;
  CHECK(take_secrets(channels, fresh.channels) ==
        std::vector<std::string>{"meta meta: pages access_token"});
  CHECK(channels.meta.at(0).pages.at(0).access_token == "new");
  CHECK(changes_needing_restart(running, fresh).empty());
  // A new token with a new Page: the Page needs a restart, so the token waits with it.
  const Config grown =
      load_ok(before.substr(0, before.rfind("old")) +
              "new\"\n[[channels.meta.pages]]\nid = \"2222\"\naccess_token = \"other\"\n");
  channels = running.channels;
  CHECK(take_secrets(channels, grown.channels).empty());
  CHECK(channels.meta.at(0).pages.at(0).access_token == "old");
  CHECK(changes_needing_restart(running, grown) ==
        std::vector<std::string>{"channels.meta meta (changed)"});
}

TEST_CASE("imap: a mailbox listed twice is refused, INBOX in any case") {
  auto account = [](const std::string& mailboxes) {
    return R"(
[[channels.imap]]
name = "support"
host = "imap.example.com"
username = "support@example.com"
password = "pw"
mailboxes = )" +
           mailboxes + "\n";
  };
  CHECK(problem_of(account(R"(["INBOX", "Sales", "inbox"])")) ==
        "t.toml:6: channels.imap.mailboxes lists \"inbox\" twice");
  CHECK(problem_of(account(R"(["Sales", "Sales"])")) ==
        "t.toml:6: channels.imap.mailboxes lists \"Sales\" twice");
  CHECK(load_ok(account(R"(["Sales", "sales"])")).channels.imap.at(0).mailboxes.size() == 2);
}
