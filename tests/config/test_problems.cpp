// Problems in the core sections: each kind with its line and exact message, and several at once.
#include <doctest/doctest.h>

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "tests/config/helpers.hpp"

using namespace sb::config;
using namespace sb::config::test;
using namespace std::chrono_literals;

TEST_CASE("a TOML syntax error is one problem with its line") {
  const std::string p = problem_of(R"(
[server]
listen = "127.0.0.1:8080"
max_body_bytes =
)");
  CHECK(p.rfind("t.toml:3: ", 0) == 0);
}

TEST_CASE("unknown keys are named by their full dotted path, at any level") {
  CHECK(problem_of(R"(
[[routing.rules]]
queue = "vip"
[routing.rules.when]
colour = "red"
)") == "t.toml:4: unknown key \"routing.rules.when.colour\"");
  CHECK(problem_of("listen = \"x\"\n") == "t.toml:1: unknown key \"listen\"");
  CHECK(problem_of("[servr]\nlisten = \"127.0.0.1:1\"\n") == "t.toml:1: unknown key \"servr\"");
  CHECK(problem_of("[[channels.slack]]\nname = \"s\"\n") ==
        "t.toml:1: unknown key \"channels.slack\"");
  CHECK(problem_of("[server]\nlisten = \"127.0.0.1:1\"\nmax_body = 3\n") ==
        "t.toml:3: unknown key \"server.max_body\"");
}

TEST_CASE("wrong types name the key and the expected type") {
  CHECK(problem_of("[server]\nmax_body_bytes = \"1MB\"\n") ==
        "t.toml:2: server.max_body_bytes must be an integer");
  CHECK(problem_of("[server]\nlisten = 8080\n") == "t.toml:2: server.listen must be a string");
  // `run` binds an address; a name check-config let through made `run` fail with EINVAL.
  CHECK(problem_of("[server]\nlisten = \"localhost:8080\"\n") ==
        "t.toml:2: server.listen must be an IP address and a port, e.g. \"127.0.0.1:8080\", "
        "\"0.0.0.0:8080\" or \"[::1]:8080\"; a host name is not resolved (got "
        "\"localhost:8080\")");
  CHECK(problem_of("[api]\ntokens = \"one\"\n") ==
        "t.toml:2: api.tokens must be a list of strings");
  CHECK(problem_of("[api]\ntokens = [\"a\", 2]\n") ==
        "t.toml:2: api.tokens must be a list of strings");
  CHECK(problem_of("server = 1\n") == "t.toml:1: server must be a table ([server])");
  CHECK(problem_of("[agents]\nid = \"a\"\n") ==
        "t.toml:1: agents must be a list of tables ([[agents]])");
  CHECK(problem_of(R"(
[[routing.rules]]
queue = "q"
when.is_new_customer = "yes"
)") == "t.toml:3: routing.rules.when.is_new_customer must be a boolean (true or false)");
  CHECK(problem_of("[routing]\nmax_deliveries = 0\n") ==
        "t.toml:2: routing.max_deliveries must be between 1 and 1000 (got 0)");
}

TEST_CASE("missing required keys are reported at their table's line") {
  CHECK(problem_of(R"(
[routing]
default_queue = "general"

[[routing.rules]]
name = "no queue"
)") == "t.toml:4: missing required key \"routing.rules.queue\"");
  const auto problems = problems_of("[[agents]]\nqueues = []\n");
  CHECK(problems ==
        std::vector<std::string>{
            "t.toml:1: missing required key \"agents.id\"",
            "t.toml:1: missing required key \"agents.token\" (or token_env or token_file)",
            "t.toml:2: agents.queues must not be empty",
        });
  CHECK(problem_of("[[agents]]\nid = \"a\"\ntoken = \"t\"\n") ==
        "t.toml:1: missing required key \"agents.queues\"");
}

TEST_CASE("durations") {
  const Config c = load_ok(R"(
[routing]
claim_timeout = "90s"
[[channels.mastodon]]
name = "m"
base_url = "https://m.example"
access_token = "t"
poll_interval = "500ms"
)");
  CHECK(c.routing.claim_timeout == 90s);
  CHECK(c.channels.mastodon.at(0).poll_interval == 500ms);
  CHECK(load_ok("routing.claim_timeout = \"1h\"\n").routing.claim_timeout == 1h);
  CHECK(problem_of("[routing]\nclaim_timeout = \"5 minutes\"\n") ==
        "t.toml:2: routing.claim_timeout: invalid duration \"5 minutes\" (use a number and ms, s, "
        "m or h, e.g. \"30s\")");
  CHECK(problem_of("[routing]\nclaim_timeout = 300\n") ==
        "t.toml:2: routing.claim_timeout must be a duration string such as \"500ms\", \"30s\", "
        "\"5m\" or \"1h\"");
  CHECK(problem_of("[routing]\nclaim_timeout = \"0s\"\n") ==
        "t.toml:2: routing.claim_timeout must be greater than zero");
  CHECK(load_ok("routing.claim_timeout = \"720h\"\n").routing.claim_timeout == 720h);
  CHECK(problem_of("[routing]\nclaim_timeout = \"721h\"\n") ==
        "t.toml:2: routing.claim_timeout must be at most \"720h\" (30 days)");
}

TEST_CASE("rules: priority, regexes, call statuses, vocabularies, line") {
  const Config c = load_ok(R"(
[[routing.rules]]
name = "a"
queue = "vip"
priority = "urgent"
override_sticky = true
[routing.rules.when]
subject_matches = "^re:"
flags = ["auto_reply"]
is_new_customer = false

[[routing.rules]]
queue = "general"
)");
  REQUIRE(c.routing.rules.size() == 2);
  CHECK(c.routing.rules[0].line == 1);
  CHECK(c.routing.rules[0].priority == "urgent");
  CHECK(c.routing.rules[0].override_sticky);
  CHECK(c.routing.rules[0].when.flags == std::vector<std::string>{"auto_reply"});
  CHECK(c.routing.rules[0].when.is_new_customer == false);
  CHECK(c.routing.rules[1].line == 11);
  CHECK(c.routing.rules[1].priority == "normal");
  CHECK(c.routing.rules[1].name == "rule at line 11");

  CHECK(problem_of("[[routing.rules]]\nqueue = \"q\"\npriority = \"hgih\"\n") ==
        "t.toml:3: routing.rules.priority must be one of urgent, high, normal, low (got "
        "\"hgih\")");

  const std::string bad_regex =
      problem_of("[[routing.rules]]\nqueue = \"q\"\nwhen.text_matches = \"refund(\"\n");
  CHECK(bad_regex.rfind("t.toml:3: routing.rules.when.text_matches: invalid regex \"refund(\": ",
                        0) == 0);
  CHECK(bad_regex.size() > std::string("t.toml:3: routing.rules.when.text_matches: invalid regex "
                                       "\"refund(\": ")
                               .size());  // the regex library's reason follows
  CHECK(problem_of("[[routing.rules]]\nqueue = \"q\"\nwhen.subject_matches = \"[a-\"\n")
            .rfind("t.toml:3: routing.rules.when.subject_matches: invalid regex", 0) == 0);

  CHECK(problem_of("[[routing.rules]]\nqueue = \"q\"\nwhen.call_status = [\"missed\"]\n") ==
        "t.toml:3: routing.rules.when.call_status: unknown call status \"missed\" (one of queued, "
        "initiated, ringing, in-progress, completed, busy, no-answer, failed, canceled, "
        "voicemail, unknown)");
  CHECK(problem_of("[[routing.rules]]\nqueue = \"q\"\nwhen.channel = \"emial\"\n")
            .rfind("t.toml:3: routing.rules.when.channel must be one of email, voice,", 0) == 0);
  CHECK(problem_of("[[routing.rules]]\nqueue = \"a:b\"\n") ==
        "t.toml:2: routing.rules.queue: invalid queue name \"a:b\" (letters, digits, '.', '_' or "
        "'-')");
}

TEST_CASE("agents: the id _released is reserved for released items in Redis") {
  // An agent of that name would be the holder of every item another agent released: it could
  // ack, transfer or answer them without claiming them.
  CHECK(problems_of(R"(
[[agents]]
id = "_released"
token = "t1"
queues = ["general"]
)") == std::vector<std::string>{
           "t.toml:2: agent id \"_released\" is reserved: it is the Redis consumer that holds "
           "released items",
       });
}

TEST_CASE("agents: ids beginning with _released: are reserved for released items in Redis") {
  // `_released:bob` holds what bob released: an agent of that name could ack or answer them.
  CHECK(problems_of(R"(
[[agents]]
id = "_released:bob"
token = "t1"
queues = ["general"]

[[agents]]
id = "_released_not"
token = "t2"
queues = ["general"]
)") == std::vector<std::string>{
           "t.toml:2: agent id \"_released:bob\" is reserved: names beginning with "
           "\"_released:\" are the Redis consumers that hold released items",
       });
}

// Before: accepted, and a transfer's marker in Redis ("<agent> <target>|<new id>|<dead id>",
// split at the first '|') was misread for that agent.
TEST_CASE("agents: an id containing a pipe is refused") {
  CHECK(problems_of(R"(
[[agents]]
id = "ann|support"
token = "t1"
queues = ["general"]
)") == std::vector<std::string>{
           "t.toml:2: agent id \"ann|support\" contains '|', which the agents API uses as a "
           "separator in Redis",
       });
}

TEST_CASE("agents: a token that is also an api token is refused with its line") {
  CHECK(problems_of(R"(
[api]
tokens = ["ingest-1", "shared"]

[[agents]]
id = "alice"
token = "shared"
queues = ["general"]

[[agents]]
id = "bob"
token = "bob-own"
queues = ["general"]
)") == std::vector<std::string>{
           "t.toml:6: agent \"alice\" has the same token as one of api.tokens; an agent token "
           "must differ from every API token",
       });
}

TEST_CASE("agents: duplicate ids and tokens, tokens from the environment") {
  CHECK(problems_of(R"(
[[agents]]
id = "alice"
token = "same"
queues = ["general"]

[[agents]]
id = "alice"
token = "same"
queues = ["general"]
)") == std::vector<std::string>{
           "t.toml:7: duplicate agent id \"alice\" (first at line 2)",
           "t.toml:8: agent \"alice\" has the same token as agent \"alice\" (line 3); agent "
           "tokens must be unique",
       });

  ScopedEnv env("SBTEST_BOB_TOKEN", "bob-secret");
  const Config c = load_ok(R"(
[[agents]]
id = "bob"
token_env = "SBTEST_BOB_TOKEN"
queues = ["billing"]
)");
  CHECK(c.agents.at(0).token == "bob-secret");
}

TEST_CASE("api tokens must not be empty") {
  CHECK(problem_of("[api]\ntokens = [\"ok\", \"\"]\n") ==
        "t.toml:2: api.tokens must not contain an empty token");
}

TEST_CASE("matching.default_region must be a region libphonenumber knows") {
  CHECK(problem_of("[matching]\ndefault_region = \"UK\"\n") ==
        "t.toml:2: matching.default_region \"UK\" is not a region code libphonenumber knows "
        "(ISO 3166-1 alpha-2, such as \"US\" or \"DE\"); the United Kingdom is \"GB\"");
  CHECK(problem_of("[matching]\n\ndefault_region = \"XY\"\n") ==
        "t.toml:3: matching.default_region \"XY\" is not a region code libphonenumber knows "
        "(ISO 3166-1 alpha-2, such as \"US\" or \"DE\")");
  CHECK(problem_of("[matching]\ndefault_region = \"gb\"\n") ==
        "t.toml:2: matching.default_region must be a two-letter country code such as \"US\" "
        "(got \"gb\")");
  for (const char* region : {"GB", "US", "DE", "PT", "CN"}) {
    CAPTURE(region);
    CHECK(load_ok(std::string("[matching]\ndefault_region = \"") + region + "\"\n")
              .matching.default_region == region);
  }
}

TEST_CASE("api tokens_env: one token per variable, added to the inline tokens") {
  ScopedEnv a("SBTEST_API_TOKEN_A", "token-a");
  ScopedEnv b("SBTEST_API_TOKEN_B", "token-b");
  ScopedEnv unset("SBTEST_API_UNSET", nullptr);
  const Config c = load_ok(R"(
[api]
tokens = ["inline"]
tokens_env = ["SBTEST_API_TOKEN_A", "SBTEST_API_TOKEN_B"]
)");
  CHECK(c.api.tokens == std::vector<std::string>{"inline", "token-a", "token-b"});
  CHECK(load_ok("[api]\ntokens_env = [\"SBTEST_API_TOKEN_B\"]\n").api.tokens ==
        std::vector<std::string>{"token-b"});
  // Each variable is reported at its own line, by name, never with a value.
  CHECK(problems_of(R"(
[api]
tokens_env = [
  "SBTEST_API_TOKEN_A",
  "SBTEST_API_UNSET",
  "",
]
)") == std::vector<std::string>{
           "t.toml:4: environment variable SBTEST_API_UNSET (from api.tokens_env) is not set or "
           "empty",
           "t.toml:5: api.tokens_env must be the name of an environment variable",
       });
  CHECK(problem_of("[api]\ntokens_env = \"SBTEST_API_TOKEN_A\"\n") ==
        "t.toml:2: api.tokens_env must be a list of environment variable names");
}

TEST_CASE("redis password_env: the AUTH password from the environment") {
  ScopedEnv pw("SBTEST_REDIS_PW", "redis-secret");
  ScopedEnv unset("SBTEST_REDIS_UNSET", nullptr);
  const Config acl = load_ok(R"(
[redis]
url = "redis://sbuser@10.0.0.5:6380/2"
password_env = "SBTEST_REDIS_PW"
)");
  CHECK(acl.redis.username == "sbuser");
  CHECK(acl.redis.password == "redis-secret");
  CHECK(acl.redis.auth_command() == std::vector<std::string>{"AUTH", "sbuser", "redis-secret"});
  const Config plain = load_ok("[redis]\npassword_env = \"SBTEST_REDIS_PW\"\n");
  CHECK(plain.redis.host == "127.0.0.1");
  CHECK(plain.redis.auth_command() == std::vector<std::string>{"AUTH", "redis-secret"});

  CHECK(
      problem_of("[redis]\nurl = \"redis://127.0.0.1\"\npassword_env = \"SBTEST_REDIS_UNSET\"\n") ==
      "t.toml:3: environment variable SBTEST_REDIS_UNSET (from redis.password_env) is not set "
      "or empty");
  CHECK(problem_of(
            "[redis]\nurl = \"redis://:inline@127.0.0.1\"\npassword_env = \"SBTEST_REDIS_PW\"\n") ==
        "t.toml:3: give the Redis password in redis.url or in redis.password_env, not both");
  // Without password_env a user still needs its password in the url.
  CHECK(problem_of("[redis]\nurl = \"redis://sbuser@127.0.0.1\"\n")
            .find("has a user but no password") != std::string::npos);
}

TEST_CASE(
    "without require_env_secrets an unset *_env variable is no problem, the rest is checked") {
  ScopedEnv unset("SBTEST_NOT_SET", nullptr);
  const std::string toml = R"([api]
tokens_env = ["SBTEST_NOT_SET"]
[redis]
password_env = "SBTEST_NOT_SET"
[[agents]]
id = "alice"
token_env = "SBTEST_NOT_SET"
queues = ["general"]
[[channels.telegram]]
name = "tg"
bot_token_env = "SBTEST_NOT_SET"
)";
  CHECK(load_string(toml, "t.toml").problems.size() == 4);
  const LoadOptions lenient{.require_env_secrets = false};
  const LoadResult r = load_string(toml, "t.toml", lenient);
  CHECK(r.problems.empty());
  REQUIRE(r.config);
  CHECK(r.config->channels.telegram.at(0).bot_token.empty());
  CHECK(r.config->api.tokens.empty());
  // Everything that is not an environment lookup is still a problem.
  const LoadResult bad = load_string(toml + "poll_interval = \"soon\"\n", "t.toml", lenient);
  REQUIRE(bad.problems.size() == 1);
  CHECK(bad.problems[0].to_string() ==
        "t.toml:12: unknown key \"channels.telegram.poll_interval\"");
}

TEST_CASE(
    "a secret from a *_file: read at each load, one line break dropped, every mistake named") {
  char tmpl[] = "/tmp/sb-secret-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir + "/" + name, std::ios::binary) << content;
    return dir + "/" + name;
  };
  auto pbx = [](const std::string& path) {
    return "[[channels.call_webhook]]\nname = \"pbx\"\nsecret_file = \"" + path + "\"\n";
  };
  const std::string path = write("pbx", "first-secret\n");
  CHECK(load_ok(pbx(path)).channels.call_webhook.at(0).secret == "first-secret");
  write("pbx", "rotated-secret\r\n");  // a reload reads the file again
  CHECK(load_ok(pbx(path)).channels.call_webhook.at(0).secret == "rotated-secret");
  CHECK(load_ok("[[agents]]\nid = \"a\"\nqueues = [\"q\"]\ntoken_file = \"" +
                write("agent", "agent-token") + "\"\n")
            .agents.at(0)
            .token == "agent-token");

  CHECK(problem_of(pbx(dir + "/none")) == "t.toml:3: cannot read " + dir +
                                              "/none (from channels.call_webhook.secret_file): "
                                              "No such file or directory");
  CHECK(problem_of(pbx(write("empty", "\n"))) ==
        "t.toml:3: " + dir + "/empty (from channels.call_webhook.secret_file) is empty");
  CHECK(problem_of(pbx(write("two", "a\nb\n"))) ==
        "t.toml:3: " + dir +
            "/two (from channels.call_webhook.secret_file) holds more than one line");
  CHECK(problem_of(pbx(write("big", std::string(70 * 1024, 'k')))) ==
        "t.toml:3: " + dir +
            "/big (from channels.call_webhook.secret_file) is larger than 64 KiB: not a secret");
  CHECK(problem_of(pbx("/dev/zero")) ==
        "t.toml:3: /dev/zero (from channels.call_webhook.secret_file) is not a regular file");
  // A FIFO nobody writes to would block the reload (and with it the signal thread) for good.
  REQUIRE(mkfifo((dir + "/fifo").c_str(), 0600) == 0);
  CHECK(problem_of(pbx(dir + "/fifo")) ==
        "t.toml:3: " + dir +
            "/fifo (from channels.call_webhook.secret_file) is not a regular file");
  CHECK(problem_of(pbx(dir)) ==
        "t.toml:3: " + dir + " (from channels.call_webhook.secret_file) is not a regular file");
  CHECK(problem_of("[[channels.call_webhook]]\nname = \"pbx\"\nsecret = \"s\"\nsecret_file = \"" +
                   path + "\"\n") ==
        "t.toml:4: give only one of channels.call_webhook.secret, "
        "channels.call_webhook.secret_env and channels.call_webhook.secret_file");
  // The content is never echoed, whatever went wrong.
  for (const auto& p : problems_of(pbx(write("two", "secret-one\nsecret-two\n")))) {
    CHECK(p.find("secret-one") == std::string::npos);
  }
  // The customers commands need no secrets: an unreadable file is no problem for them.
  const LoadOptions lenient{.require_env_secrets = false};
  CHECK(load_string(pbx(dir + "/none"), "t.toml", lenient).problems.empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("server.listen must be host:port") {
  CHECK(problem_of("[server]\nlisten = \"8080\"\n") ==
        "t.toml:2: server.listen must be host:port, e.g. \"127.0.0.1:8080\" (got \"8080\")");
  CHECK(problem_of("[server]\nlisten = \"127.0.0.1:99999\"\n")
            .rfind("t.toml:2: server.listen must be host:port", 0) == 0);
  CHECK(problem_of("[server]\nlisten = \"::1:8080\"\n")
            .rfind("t.toml:2: server.listen must be host:port", 0) == 0);
}

TEST_CASE("redis.url problems never echo the url, which may hold a password") {
  const std::string expected_tail = "; expected redis://[[user]:password@]host[:port][/db]";
  CHECK(problem_of("[redis]\nurl = \"http://127.0.0.1:6379\"\n") ==
        "t.toml:2: redis.url must use the redis:// scheme" + expected_tail);
  CHECK(problem_of("[redis]\nurl = \"redis://127.0.0.1:6379/x\"\n") ==
        "t.toml:2: redis.url has an invalid database number (the path must be /<number>)" +
            expected_tail);
  CHECK(problem_of("[redis]\nurl = \"redis://127.0.0.1:notaport\"\n")
            .rfind("t.toml:2: redis.url", 0) == 0);
  const std::string p = problem_of("[redis]\nurl = \"redis://admin@10.0.0.1:6379\"\n");
  CHECK(p.find("has a user but no password") != std::string::npos);
  const std::string q = problem_of("[redis]\nurl = \"rediss://u:hunter2@h\"\n");
  CHECK(q.find("hunter2") == std::string::npos);
}

TEST_CASE("every problem of a file is reported together, in file order") {
  const auto problems = problems_of(R"(
[server]
listen = "nope"
max_body_bytes = "big"

[routing]
claim_timeout = "soon"

[[routing.rules]]
queue = "vip"
priority = "top"
when.text_matches = "("
when.colour = "red"

[[agents]]
id = "a"
queues = ["general"]

[[channels.call_webhook]]
name = "pbx"
secret_env = "SBTEST_SURELY_UNSET_VAR"
)");
  REQUIRE(problems.size() == 8);
  CHECK(problems[0] ==
        "t.toml:2: server.listen must be host:port, e.g. \"127.0.0.1:8080\" (got \"nope\")");
  CHECK(problems[1] == "t.toml:3: server.max_body_bytes must be an integer");
  CHECK(problems[2].rfind("t.toml:6: routing.claim_timeout: invalid duration", 0) == 0);
  CHECK(problems[3].rfind("t.toml:10: routing.rules.priority must be one of", 0) == 0);
  CHECK(problems[4].rfind("t.toml:11: routing.rules.when.text_matches: invalid regex", 0) == 0);
  CHECK(problems[5] == "t.toml:12: unknown key \"routing.rules.when.colour\"");
  CHECK(problems[6] ==
        "t.toml:14: missing required key \"agents.token\" (or token_env or token_file)");
  CHECK(problems[7] ==
        "t.toml:20: environment variable SBTEST_SURELY_UNSET_VAR (from "
        "channels.call_webhook.secret_env) is not set or empty");
}

TEST_CASE(
    "queues: an agent's queue no rule feeds and a rule's queue no agent works are warned of") {
  LoadResult r = load_string(body(R"(
[api]
tokens = ["t"]

[routing]
default_queue = "general"

[[routing.rules]]
name = "money"
queue = "biling"
[routing.rules.when]
text_matches = "refund"

[[routing.rules]]
name = "vip"
queue = "vip"

[[agents]]
id = "alice"
token = "a"
queues = ["general", "billing", "vip"]

[[agents]]
id = "bob"
token = "b"
queues = ["billing"]
)"),
                             "t.toml");
  REQUIRE(r.config);
  std::vector<std::string> said;
  for (const auto& w : r.warnings) {
    said.push_back(w.to_string());
  }
  CHECK(said == std::vector<std::string>{
                    "t.toml: agents: queue \"billing\" (agent alice) is fed by no rule and is not "
                    "routing.default_queue: only transfers put work there",
                    "t.toml: routing.rules: queue \"biling\" (rule money) is worked by no agent: "
                    "what the rule routes there waits unclaimed"});
  // Without agents, nothing is said of queues (run warns that there are none).
  LoadResult none = load_string(body(R"(
[[routing.rules]]
name = "money"
queue = "billing"
)"),
                                "t.toml");
  REQUIRE(none.config);
  CHECK(none.warnings.empty());
}
