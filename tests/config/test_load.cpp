// Loading whole files: defaults, the shipped example, the SPEC sample, path resolution.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "tests/config/helpers.hpp"

using namespace sb::config;
using namespace sb::config::test;
using namespace std::chrono_literals;

TEST_CASE("defaults are those of SPEC section 1") {
  const Config c = defaults();
  CHECK(c.source_path.empty());
  CHECK(c.server.listen == "127.0.0.1:8080");
  CHECK(c.server.host == "127.0.0.1");
  CHECK(c.server.port == 8080);
  CHECK(c.server.max_body_bytes == 1048576);
  CHECK(c.storage.path == "var/switchboard.db");
  CHECK(c.redis.url == "redis://127.0.0.1:6379/0");
  CHECK(c.redis.host == "127.0.0.1");
  CHECK(c.redis.port == 6379);
  CHECK(c.redis.db == 0);
  CHECK(c.redis.prefix == "sb");
  CHECK(c.routing.default_queue == "general");
  CHECK(c.routing.claim_timeout == 5min);
  CHECK(c.routing.max_deliveries == 5);
  CHECK(c.routing.rules.empty());
  CHECK(c.agents.empty());
}

TEST_CASE("an empty file gives the defaults") {
  const Config c = load_ok("");
  CHECK(c.source_path == "t.toml");
  CHECK(c.server.port == 8080);
  CHECK(c.routing.default_queue == "general");
}

TEST_CASE("the example config loads with zero problems and no environment") {
  const std::string path = std::string(SB_SOURCE_DIR) + "/config/switchboard.example.toml";
  const LoadResult result = load_file(path);
  for (const Problem& p : result.problems) {
    FAIL_CHECK(p.to_string());
  }
  REQUIRE(result.config);
  const Config& c = *result.config;
  CHECK(c.server.listen == "127.0.0.1:8080");
  CHECK(c.storage.path == "var/switchboard.db");
  CHECK(c.redis.url == "redis://127.0.0.1:6379/0");
  CHECK(c.api.tokens == std::vector<std::string>{"dev-ingest-token"});
  CHECK(c.routing.default_queue == "general");
  REQUIRE(c.routing.rules.size() == 3);
  CHECK(c.routing.rules[0].queue == "vip");
  CHECK(c.routing.rules[0].priority == "high");
  CHECK(c.routing.rules[0].when.customer_tier == "vip");
  CHECK(c.routing.rules[1].queue == "billing");
  CHECK(c.routing.rules[1].when.text_matches == "refund|chargeback");
  CHECK(c.routing.rules[2].queue == "callbacks");
  CHECK(c.routing.rules[2].when.call_status ==
        std::vector<std::string>{"no-answer", "busy", "voicemail"});
  REQUIRE(c.agents.size() == 2);
  CHECK(c.agents[0].id == "alice");
  CHECK(c.agents[0].queues == std::vector<std::string>{"general", "vip"});
  CHECK(c.agents[1].id == "bob");
  CHECK(c.agents[1].queues == std::vector<std::string>{"general", "billing", "callbacks"});
  REQUIRE(c.channels.call_webhook.size() == 1);
  CHECK(c.channels.call_webhook[0].name == "pbx");
  CHECK(c.channels.call_webhook[0].secret == "dev-pbx-secret");
  CHECK(c.channels.imap.empty());
}

TEST_CASE("the SPEC section 2 sample loads once its environment is set") {
  ScopedEnv e1("SUPPORT_IMAP_PASSWORD", "imap-pw");
  ScopedEnv e2("SUPPORT_SMTP_PASSWORD", "smtp-pw");
  ScopedEnv e3("TWILIO_AUTH_TOKEN", "tw");
  ScopedEnv e4("PBX_WEBHOOK_SECRET", "pbx");
  ScopedEnv e5("MASTODON_TOKEN", "masto");
  ScopedEnv e6("X_TOKEN", "xt");
  ScopedEnv e7("META_APP_SECRET", "meta-app");
  ScopedEnv e8("META_TOKEN", "meta-at");
  ScopedEnv e9("TELEGRAM_TOKEN", "tg");
  const Config c = load_ok(R"(
[server]
listen = "127.0.0.1:8080"
max_body_bytes = 1048576

[storage]
path = "var/switchboard.db"

[redis]
url = "redis://127.0.0.1:6379/0"
prefix = "sb"

[api]
tokens = ["ingest-token-1"]

[matching]
default_region = "US"

[routing]
default_queue = "general"
claim_timeout = "5m"
max_deliveries = 5

[[routing.rules]]
name = "vip customers"
queue = "vip"
priority = "high"
[routing.rules.when]
customer_tier = "vip"

[[agents]]
id = "alice"
token = "alice-token"
queues = ["general", "vip"]

[[channels.imap]]
name = "support"
host = "imap.example.com"
port = 993
tls = "implicit"
username = "support@example.com"
password_env = "SUPPORT_IMAP_PASSWORD"
mailboxes = ["INBOX"]
poll_interval = "30s"
after = "keep"

[[channels.smtp]]
name = "support-out"
for = "support"
host = "smtp.example.com"
port = 465
tls = "implicit"
username = "support@example.com"
password_env = "SUPPORT_SMTP_PASSWORD"
from = "Support <support@example.com>"

[[channels.twilio]]
name = "voice"
auth_token_env = "TWILIO_AUTH_TOKEN"
public_url = "https://hooks.example.com/"

[[channels.telnyx]]
name = "voice-eu"
public_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

[[channels.call_webhook]]
name = "pbx"
secret_env = "PBX_WEBHOOK_SECRET"

[[channels.mastodon]]
name = "social"
base_url = "https://mastodon.example"
access_token_env = "MASTODON_TOKEN"
poll_interval = "30s"

[[channels.x]]
name = "x"
base_url = "https://api.x.com"
bearer_token_env = "X_TOKEN"
user_id = "2244994945"
poll_interval = "60s"

[[channels.meta]]
name = "meta"
app_secret_env = "META_APP_SECRET"
verify_token = "hub-verify"
access_token_env = "META_TOKEN"
base_url = "https://graph.facebook.com/v19.0"

[[channels.telegram]]
name = "tg"
base_url = "https://api.telegram.org"
bot_token_env = "TELEGRAM_TOKEN"
)");
  CHECK(c.routing.rules.at(0).line == 23);
  const Imap& imap = c.channels.imap.at(0);
  CHECK(imap.password == "imap-pw");
  CHECK(imap.poll_interval == 30s);
  CHECK(imap.mailboxes == std::vector<std::string>{"INBOX"});
  CHECK(c.channels.smtp.at(0).for_account == "support");
  CHECK(c.channels.smtp.at(0).password == "smtp-pw");
  CHECK(c.channels.twilio.at(0).auth_token == "tw");
  // The trailing '/' is dropped: the signature base is public_url + "/webhooks/...".
  CHECK(c.channels.twilio.at(0).public_url == "https://hooks.example.com");
  CHECK(c.channels.call_webhook.at(0).secret == "pbx");
  CHECK(c.channels.mastodon.at(0).access_token == "masto");
  CHECK(c.channels.x.at(0).bearer_token == "xt");
  CHECK(c.channels.x.at(0).poll_interval == 60s);
  CHECK(c.channels.meta.at(0).app_secret == "meta-app");
  CHECK(c.channels.meta.at(0).verify_token == "hub-verify");
  CHECK(c.channels.meta.at(0).access_token == "meta-at");
  CHECK(c.channels.telegram.at(0).bot_token == "tg");
}

TEST_CASE("server.listen and redis.url are split into their parts") {
  const Config c = load_ok(R"(
[server]
listen = "[::1]:9090"
[redis]
url = "redis://app:s3cret@redis.internal:6380/3"
)");
  CHECK(c.server.host == "::1");
  CHECK(c.server.port == 9090);
  CHECK(c.redis.host == "redis.internal");
  CHECK(c.redis.port == 6380);
  CHECK(c.redis.db == 3);
  CHECK(c.redis.username == "app");
  CHECK(c.redis.password == "s3cret");

  const Config d = load_ok("redis.url = \"redis://:pw@localhost\"\n");
  CHECK(d.redis.host == "localhost");
  CHECK(d.redis.port == 6379);
  CHECK(d.redis.db == 0);
  CHECK(d.redis.username.empty());
  CHECK(d.redis.password == "pw");
}

TEST_CASE("Problem::to_string is PATH:LINE: message, or PATH: message without a line") {
  CHECK(Problem{"a.toml", 7, "boom"}.to_string() == "a.toml:7: boom");
  CHECK(Problem{"a.toml", 0, "boom"}.to_string() == "a.toml: boom");
}

TEST_CASE("an unreadable file is one problem without a line") {
  const LoadResult r = load_file("/nonexistent/switchboard.toml");
  CHECK_FALSE(r.config);
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].to_string() ==
        "/nonexistent/switchboard.toml: cannot read the file: No such file or directory");
}

TEST_CASE("a directory given as the config file is refused, not read as an empty file") {
  const auto dir =
      std::filesystem::temp_directory_path() / ("sb_cfg_dir_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const LoadResult r = load_file(dir.string());
  CHECK_FALSE(r.config);
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].to_string() == dir.string() + ": cannot read the file: Is a directory");
  std::filesystem::remove_all(dir);
}

TEST_CASE("load_file names the file in its problems") {
  const auto dir = std::filesystem::temp_directory_path() / ("sb_cfg_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "bad.toml").string();
  std::ofstream(path) << "[server]\nlisten = 8080\n";
  const LoadResult r = load_file(path);
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].to_string() == path + ":2: server.listen must be a string");
  std::filesystem::remove_all(dir);
}

TEST_CASE("resolve_path: flag > $SWITCHBOARD_CONFIG > ./switchboard.toml > defaults") {
  const auto old_cwd = std::filesystem::current_path();
  const auto dir =
      std::filesystem::temp_directory_path() / ("sb_resolve_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::current_path(dir);

  {
    ScopedEnv env("SWITCHBOARD_CONFIG", nullptr);
    CHECK(resolve_path(std::nullopt) == "");  // nothing anywhere: built-in defaults
    std::ofstream("switchboard.toml") << "";
    CHECK(resolve_path(std::nullopt) == "switchboard.toml");
  }
  {
    ScopedEnv env("SWITCHBOARD_CONFIG", "/etc/switchboard/env.toml");
    CHECK(resolve_path(std::nullopt) == "/etc/switchboard/env.toml");
    CHECK(resolve_path(std::string("flag.toml")) == "flag.toml");
  }
  {
    ScopedEnv env("SWITCHBOARD_CONFIG", "");  // set but empty counts as unset
    CHECK(resolve_path(std::nullopt) == "switchboard.toml");
  }

  std::filesystem::current_path(old_cwd);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a reload names the changed settings it does not apply, never a secret's value") {
  const Config running = load_ok(R"(
[api]
tokens = ["old-token"]
[routing]
claim_timeout = "5m"
max_deliveries = 5
)");
  // Rules, agents, the default queue and the API tokens are what a reload swaps: no warning for
  // them.
  const Config same = load_ok(R"(
[api]
tokens = ["old-token"]
[routing]
default_queue = "triage"
claim_timeout = "5m"
max_deliveries = 5
[[routing.rules]]
name = "vip"
queue = "vip"
)");
  CHECK(changes_needing_restart(running, same).empty());
  const Config fresh = load_ok(R"(
[redis]
url = "redis://:new-password@127.0.0.1:6379/0"
[api]
tokens = ["new-token"]
[routing]
claim_timeout = "10m"
max_deliveries = 3
)");
  CHECK(changes_needing_restart(running, fresh) ==
        std::vector<std::string>{"routing.claim_timeout (300s -> 600s)",
                                 "routing.max_deliveries (5 -> 3)",
                                 "redis.url or redis.password"});  // api.tokens: applied
}

TEST_CASE("a reload names channel accounts added, removed or changed, without their values") {
  const Config running = load_ok(R"(
[[channels.call_webhook]]
name = "pbx"
secret = "old-secret"
[[channels.telegram]]
name = "bot"
bot_token = "123:abc"
[[channels.x]]
name = "brand"
user_id = "42"
bearer_token = "old-bearer"
)");
  const Config fresh = load_ok(R"(
[[channels.call_webhook]]
name = "pbx"
secret = "rotated-secret"
[[channels.mastodon]]
name = "social"
base_url = "https://mastodon.example"
access_token = "t"
[[channels.x]]
name = "brand"
user_id = "43"
bearer_token = "new-bearer"
)");
  // A webhook secret alone is applied by the reload (take_secrets): not named.
  auto changes = changes_needing_restart(running, fresh);
  CHECK(changes == std::vector<std::string>{"channels.mastodon social (added)",
                                            "channels.x brand (changed)",
                                            "channels.telegram bot (removed)"});
  for (const auto& c : changes) {
    CHECK(c.find("secret") == std::string::npos);
  }
  CHECK(changes_needing_restart(running, running).empty());
}

TEST_CASE("a reload takes a webhook secret that alone changed, and no half of a larger change") {
  const Config running = load_ok(R"(
[[channels.twilio]]
name = "main"
auth_token = "old-token"
public_url = "https://hooks.example.com"
[[channels.twilio]]
name = "moved"
auth_token = "old-token"
public_url = "https://hooks.example.com"
[[channels.telnyx]]
name = "tx"
public_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
[[channels.meta]]
name = "page"
app_secret = "old-app-secret"
verify_token = "old-verify"
access_token = "send-token"
)");
  const Config fresh = load_ok(R"(
[[channels.twilio]]
name = "main"
auth_token = "new-token"
public_url = "https://hooks.example.com"
[[channels.twilio]]
name = "moved"
auth_token = "new-token"
public_url = "https://hooks2.example.com"
[[channels.telnyx]]
name = "tx"
public_key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
[[channels.meta]]
name = "page"
app_secret = "new-app-secret"
verify_token = "new-verify"
access_token = "send-token"
[[channels.call_webhook]]
name = "pbx"
secret = "s"
)");
  Channels channels = running.channels;
  CHECK(take_secrets(channels, fresh.channels) ==
        std::vector<std::string>{"twilio main: auth_token", "meta page: app_secret, verify_token"});
  CHECK(channels.twilio.at(0).auth_token == "new-token");
  CHECK(channels.twilio.at(1).auth_token == "old-token");  // its URL changed too: a restart
  CHECK(channels.twilio.at(1).public_url == "https://hooks.example.com");
  CHECK(channels.meta.at(0).app_secret == "new-app-secret");
  CHECK(channels.meta.at(0).verify_token == "new-verify");
  CHECK(channels.call_webhook.empty());                   // an added account waits for a restart
  CHECK(take_secrets(channels, fresh.channels).empty());  // already in force
  CHECK(changes_needing_restart(running, fresh) ==
        std::vector<std::string>{"channels.twilio moved (changed)",
                                 "channels.call_webhook pbx (added)"});
}

TEST_CASE("a reload takes the credentials used to reach out when they alone changed") {
  const std::string imap = R"(
[[channels.imap]]
name = "support"
host = "imap.example.com"
username = "support@example.com"
password = "old-imap"
)";
  const std::string rest = R"(
[[channels.smtp]]
name = "out"
for = "support"
host = "smtp.example.com"
username = "support@example.com"
password = "old-smtp"
from = "support@example.com"
[[channels.mastodon]]
name = "social"
base_url = "https://mastodon.example"
access_token = "old-masto"
[[channels.mastodon]]
name = "moved"
base_url = "https://mastodon.example"
access_token = "old-masto"
[[channels.x]]
name = "brand"
user_id = "42"
bearer_token = "old-bearer"
consumer_key = "ck"
consumer_secret = "old-cs"
access_token = "at"
access_token_secret = "old-ats"
[[channels.meta]]
name = "page"
app_secret = "a"
verify_token = "v"
access_token = "old-meta"
[[channels.telegram]]
name = "bot"
bot_token = "123:old"
)";
  const Config running = load_ok(imap + rest);
  auto replace = [](std::string text, const std::string& from, const std::string& to) {
    for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size())) {
      text.replace(at, from.size(), to);
    }
    return text;
  };
  std::string next = replace(imap + rest, "old-", "new-");
  next = replace(next, "123:old", "123:new");
  // Moved to another instance with a new token: half of that change is not applied.
  next = replace(next, "name = \"moved\"\nbase_url = \"https://mastodon.example\"",
                 "name = \"moved\"\nbase_url = \"https://other.example\"");
  const Config fresh = load_ok(next);
  Channels channels = running.channels;
  CHECK(take_secrets(channels, fresh.channels) ==
        std::vector<std::string>{"imap support: password", "smtp out: password",
                                 "mastodon social: access_token",
                                 "x brand: bearer_token, consumer_secret, access_token_secret",
                                 "meta page: access_token", "telegram bot: bot_token"});
  CHECK(channels.imap.at(0).password == "new-imap");
  CHECK(channels.smtp.at(0).password == "new-smtp");
  CHECK(channels.mastodon.at(0).access_token == "new-masto");
  CHECK(channels.mastodon.at(1).access_token == "old-masto");
  CHECK(channels.mastodon.at(1).base_url == "https://mastodon.example");
  CHECK(channels.x.at(0).bearer_token == "new-bearer");
  CHECK(channels.x.at(0).user_context->consumer_secret == "new-cs");
  CHECK(channels.x.at(0).user_context->access_token_secret == "new-ats");
  CHECK(channels.meta.at(0).access_token == "new-meta");
  CHECK(channels.telegram.at(0).bot_token == "123:new");
  CHECK(take_secrets(channels, fresh.channels).empty());  // already in force
  // Only the account changed with something else is named, without a value.
  CHECK(changes_needing_restart(running, fresh) ==
        std::vector<std::string>{"channels.mastodon moved (changed)"});

  // A password changed with the user name, or with the host: both wait for a restart.
  const Config renamed = load_ok(replace(replace(imap, "old-imap", "new-imap"),
                                         "username = \"support@", "username = \"help@") +
                                 replace(replace(rest, "old-smtp", "new-smtp"),
                                         "host = \"smtp.example.com", "host = \"mail.example.com"));
  channels = running.channels;
  CHECK(take_secrets(channels, renamed.channels).empty());
  CHECK(channels.imap.at(0).password == "old-imap");
  CHECK(channels.smtp.at(0).password == "old-smtp");
  CHECK(changes_needing_restart(running, renamed) ==
        std::vector<std::string>{"channels.imap support (changed)", "channels.smtp out (changed)"});
  for (const auto& c : changes_needing_restart(running, renamed)) {
    CHECK(c.find("new-") == std::string::npos);
  }
}

TEST_CASE("a reload takes a Telegram bot_token of another bot, as one of the same bot") {
  // The bot id is the part before ':'. The poller's offset names the bot it counts update_ids
  // for and is dropped for another bot's (channels/social/telegram.hpp): nothing waits for a
  // restart.
  const Config running =
      load_ok("[[channels.telegram]]\nname = \"bot\"\nbot_token = \"123:old\"\n");
  const Config other = load_ok("[[channels.telegram]]\nname = \"bot\"\nbot_token = \"456:new\"\n");
  Channels channels = running.channels;
  CHECK(take_secrets(channels, other.channels) ==
        std::vector<std::string>{"telegram bot: bot_token"});
  CHECK(channels.telegram.at(0).bot_token == "456:new");
  CHECK(changes_needing_restart(running, other).empty());
  // The same bot with a new token (revoked at @BotFather) is applied too.
  channels = running.channels;
  const Config same = load_ok("[[channels.telegram]]\nname = \"bot\"\nbot_token = \"123:new\"\n");
  CHECK(take_secrets(channels, same.channels) ==
        std::vector<std::string>{"telegram bot: bot_token"});
  CHECK(channels.telegram.at(0).bot_token == "123:new");
  CHECK(changes_needing_restart(running, same).empty());
  // Another bot's token with the account otherwise changed still waits, as for any account.
  const Config moved = load_ok(
      "[[channels.telegram]]\nname = \"bot\"\nbot_token = \"456:new\"\n"
      "base_url = \"https://tg.example\"\n");
  channels = running.channels;
  CHECK(take_secrets(channels, moved.channels).empty());
  CHECK(channels.telegram.at(0).bot_token == "123:old");
  CHECK(changes_needing_restart(running, moved) ==
        std::vector<std::string>{"channels.telegram bot (changed)"});
}

TEST_CASE("server.max_connections caps HTTP connections, and unset the open-file limit decides") {
  CHECK(defaults().server.max_connections == 0);
  CHECK(load_ok("[server]\nmax_connections = 5000\n").server.max_connections == 5000);
  CHECK(problem_of("[server]\nmax_connections = 0\n") ==
        "t.toml:2: server.max_connections must be between 1 and 16777216 (got 0)");
}

TEST_CASE("server.max_body_bytes_in_flight caps the request bodies held at once") {
  CHECK(defaults().server.max_body_bytes_in_flight == 0);  // 256 MiB (http::ServerOptions)
  CHECK(
      load_ok("[server]\nmax_body_bytes_in_flight = 67108864\n").server.max_body_bytes_in_flight ==
      67108864);
  // Below max_body_bytes one body of that size could never be taken in.
  CHECK(problem_of("[server]\nmax_body_bytes = 2000000\nmax_body_bytes_in_flight = 1000000\n") ==
        "t.toml:3: server.max_body_bytes_in_flight must be at least server.max_body_bytes "
        "(2000000), got 1000000");
  CHECK(problem_of("[server]\nmax_body_bytes_in_flight = 0\n")
            .starts_with("t.toml:2: server.max_body_bytes_in_flight must be between 1 and "));
}

TEST_CASE("routing.max_waiting_claims_per_agent: 8 by default, 1 to 10000") {
  CHECK(defaults().routing.max_waiting_claims_per_agent == 8);
  CHECK(load_ok("[routing]\nmax_waiting_claims_per_agent = 2\n")
            .routing.max_waiting_claims_per_agent == 2);
  CHECK(problem_of("[routing]\nmax_waiting_claims_per_agent = 0\n") ==
        "t.toml:2: routing.max_waiting_claims_per_agent must be between 1 and 10000 (got 0)");
}

TEST_CASE("storage.synchronous is normal by default or full and a change waits for a restart") {
  CHECK(defaults().storage.synchronous == "normal");
  CHECK(load_ok("[storage]\nsynchronous = \"full\"\n").storage.synchronous == "full");
  CHECK(problem_of("[storage]\nsynchronous = \"extra\"\n") ==
        "t.toml:2: storage.synchronous must be one of normal, full (got \"extra\")");
  CHECK(changes_needing_restart(defaults(), load_ok("[storage]\nsynchronous = \"full\"\n")) ==
        std::vector<std::string>{"storage.synchronous (normal -> full)"});
}
