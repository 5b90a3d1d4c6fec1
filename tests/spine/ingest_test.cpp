// The spine end to end: POST /v1/interactions -> SQLite -> outbox -> Redis Stream, with a real
// redis-server and the whole daemon in-process.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <future>
#include <set>
#include <thread>

#include "daemon/app.hpp"
#include "routing/rules.hpp"
#include "storage/customers.hpp"
#include "storage/sqlite.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;

namespace {

const char* kAnn = R"({"source":"web-form","external_id":"f-123","kind":"message",
 "from":{"email":" Ann@Example.com ","name":"Ann Lee"},
 "subject":"Order 7 is late","text":"Hello","occurred_at":"2026-01-02T03:04:05Z",
 "thread_key":"order-7"})";

long long count_rows(const std::string& db_path, const std::string& sql) {
  storage::Db db(db_path, true);
  auto st = db.prepare(sql);
  st.step();
  return st.int64(0);
}

struct Fixture {
  TempDir dir;
  RedisServer redis;
  std::unique_ptr<App> app;
  std::unique_ptr<HttpClient> http;
  explicit Fixture(std::function<void(config::Config&)> tweak = nullptr) {
    auto cfg = test_config(dir, redis.port());
    if (tweak) {
      tweak(cfg);
    }
    app = std::make_unique<App>(cfg);
    app->start();
    http = std::make_unique<HttpClient>(app->port());
  }
  std::string db() const { return dir.file("switchboard.db"); }
};

}  // namespace

TEST_CASE("an ingested interaction lands in its stream with the customer matched") {
  Fixture f;
  auto r = f.http->post_json("/v1/interactions", kAnn, "test-token");
  CHECK(r.status == 202);
  auto body = json::parse(r.body).as_object();
  CHECK(body.at("duplicate").as_bool() == false);
  std::string id(body.at("id").as_string());

  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:normal") == 1; }));
  auto entries = f.redis.xrange("sb:q:general:normal");
  auto& e = entries.at(0);
  CHECK(e["interaction_id"] == id);
  CHECK(e["channel"] == "api");
  CHECK(e["kind"] == "message");
  CHECK(e["priority"] == "normal");
  CHECK(!e["conversation_id"].empty());
  CHECK(!e["customer_id"].empty());
  auto payload = json::parse(e["payload"]).as_object();
  CHECK(payload.at("id").as_string() == id);
  CHECK(payload.at("account").as_string() == "web-form");
  CHECK(payload.at("from").at("value").as_string() == "ann@example.com");
  CHECK(payload.at("customer").at("is_new").as_bool() == true);
  CHECK(payload.at("customer").at("id").as_string() == e["customer_id"]);
  CHECK(payload.at("occurred_at").as_string() == "2026-01-02T03:04:05Z");
  CHECK(payload.at("queue").as_string() == "general");

  // The consumer group exists (created at start, MKSTREAM).
  CHECK(f.redis.cmd({"XINFO", "GROUPS", "sb:q:general:normal"}).find("agents") !=
        std::string::npos);

  // Same customer, same thread: matched, not new; same conversation.
  std::string second =
      R"({"source":"web-form","external_id":"f-124","from":{"email":"ann@example.com"},
    "text":"Any news?","thread_key":"order-7"})";
  CHECK(f.http->post_json("/v1/interactions", second, "test-token").status == 202);
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:normal") == 2; }));
  auto e2 = f.redis.xrange("sb:q:general:normal").at(1);
  CHECK(e2["customer_id"] == e["customer_id"]);
  CHECK(e2["conversation_id"] == e["conversation_id"]);
  CHECK(json::parse(e2["payload"]).at("customer").at("is_new").as_bool() == false);

  // Once the outbox rows are deleted, the relay drops their once-only markers: Redis does not
  // keep a key per interaction for the marker's TTL.
  CHECK(eventually(
      [&] {
        return f.redis.cmd({"KEYS", "sb:relayed:*"}) == "[]";
      },
      std::chrono::seconds(5)));
}

TEST_CASE("from.email with invisible padding from a paste matches the existing customer") {
  Fixture f;
  REQUIRE(f.http->post_json("/v1/interactions", kAnn, "test-token").status == 202);
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:normal") == 1; }));
  const auto first = f.redis.xrange("sb:q:general:normal").at(0)["customer_id"];
  // A web form's NBSP after the address, a BOM and a zero-width space before it.
  const char* padded[] = {R"("ann@example.com\u00a0")", R"("\ufeff\u200bAnn@example.com")"};
  long long n = 1;
  for (const char* email : padded) {
    CAPTURE(email);
    auto r = f.http->post_json("/v1/interactions",
                               std::string(R"({"source":"web-form","external_id":"f-)") +
                                   std::to_string(200 + n) + R"(","from":{"email":)" + email +
                                   R"(},"text":"Any news?"})",
                               "test-token");
    CHECK(r.status == 202);
    ++n;
    REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:normal") == n; }));
    auto e = f.redis.xrange("sb:q:general:normal").at(static_cast<std::size_t>(n - 1));
    CHECK(e["customer_id"] == first);
    auto payload = json::parse(e["payload"]).as_object();
    CHECK(payload.at("from").at("value").as_string() == "ann@example.com");
    CHECK(payload.at("customer").at("is_new").as_bool() == false);
  }
  // Inside the address, an invisible character is refused, named.
  auto r = f.http->post_json(
      "/v1/interactions",
      R"({"source":"web-form","external_id":"f-300","from":{"email":"ann\u200b@example.com"}})",
      "test-token");
  CHECK(r.status == 400);
  CHECK(r.body.find("from.email") != std::string::npos);
  CHECK(r.body.find("U+200B") != std::string::npos);
  CHECK(count_rows(f.db(), "SELECT count(*) FROM customers") == 1);
}

TEST_CASE("a Redis ACL user in the url is who the relay and the agents authenticate as") {
  TempDir dir;
  RedisServer redis;
  REQUIRE(redis.cmd({"ACL", "SETUSER", "sbuser", "on", ">sb-secret", "~*", "&*", "+@all"}) == "OK");
  auto cfg = test_config(dir, redis.port());
  cfg.redis.url = "redis://sbuser:sb-secret@127.0.0.1:" + std::to_string(redis.port()) + "/0";
  cfg.redis.username = "sbuser";
  cfg.redis.password = "sb-secret";
  App app(cfg);
  app.start();
  HttpClient http(app.port());
  CHECK(http.post_json("/v1/interactions", kAnn, "test-token").status == 202);
  REQUIRE(eventually([&] { return redis.xlen("sb:q:general:normal") == 1; }));
  auto claim = http.post_json("/v1/agent/claim", R"({"queue":"general"})", "alice-token");
  CHECK(claim.status == 200);
  CHECK(http.request("GET", "/readyz").status == 200);
  // Both of the daemon's connections are the ACL user's, none the default user's.
  auto clients = redis.cmd({"CLIENT", "LIST"});
  CHECK(clients.find("user=sbuser") != std::string::npos);
}

TEST_CASE("redis.password_env and api.tokens_env: the secrets from the environment are used") {
  TempDir dir;
  RedisServer redis;
  REQUIRE(redis.cmd({"ACL", "SETUSER", "sbenv", "on", ">env-secret", "~*", "&*", "+@all"}) == "OK");
  ::setenv("SBTEST_SPINE_REDIS_PW", "env-secret", 1);
  ::setenv("SBTEST_SPINE_API_TOKEN", "env-token", 1);
  auto loaded = config::load_string(
      "[redis]\nurl = \"redis://sbenv@127.0.0.1:" + std::to_string(redis.port()) +
          "/0\"\npassword_env = \"SBTEST_SPINE_REDIS_PW\"\n"
          "[api]\ntokens_env = [\"SBTEST_SPINE_API_TOKEN\"]\n",
      "t.toml");
  ::unsetenv("SBTEST_SPINE_REDIS_PW");
  ::unsetenv("SBTEST_SPINE_API_TOKEN");
  for (const auto& p : loaded.problems) {
    FAIL_CHECK(p.to_string());
  }
  REQUIRE(loaded.config);
  auto cfg = test_config(dir, redis.port());
  cfg.redis = loaded.config->redis;
  cfg.api = loaded.config->api;
  App app(cfg);
  app.start();
  HttpClient http(app.port());
  CHECK(http.post_json("/v1/interactions", kAnn, "env-token").status == 202);
  REQUIRE(eventually([&] { return redis.xlen("sb:q:general:normal") == 1; }));
  CHECK(http.post_json("/v1/agent/claim", R"({"queue":"general"})", "alice-token").status == 200);
  CHECK(http.request("GET", "/readyz").status == 200);
  // The relay's and the agents' connections both authenticated as the user of the url.
  CHECK(redis.cmd({"CLIENT", "LIST"}).find("user=sbenv") != std::string::npos);
}

TEST_CASE("the same (source, external_id) ten times concurrently: one interaction, one entry") {
  Fixture f;
  std::vector<std::future<HttpResponse>> calls;
  for (int i = 0; i < 10; ++i) {
    calls.push_back(std::async(std::launch::async, [&] {
      HttpClient c(f.app->port());
      return c.post_json("/v1/interactions", kAnn, "test-token");
    }));
  }
  int created = 0, dups = 0;
  std::set<std::string> ids;
  for (auto& c : calls) {
    auto r = c.get();
    auto o = json::parse(r.body).as_object();
    ids.insert(std::string(o.at("id").as_string()));
    if (r.status == 202 && !o.at("duplicate").as_bool()) {
      ++created;
    } else if (r.status == 200 && o.at("duplicate").as_bool()) {
      ++dups;
    }
  }
  CHECK(created == 1);
  CHECK(dups == 9);
  CHECK(ids.size() == 1);
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:normal") == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // nothing more may arrive
  CHECK(f.redis.xlen("sb:q:general:normal") == 1);
  CHECK(count_rows(f.db(), "SELECT count(*) FROM interactions") == 1);
}

TEST_CASE("bad requests get the right status, a message naming the problem, and store nothing") {
  Fixture f;
  struct Case {
    std::string name, body, token;
    int status;
    std::string code, message_part;
  };
  std::string big(2 * 1024 * 1024, 'a');
  std::vector<Case> cases = {
      {"invalid JSON", R"({"source":"web","external_id":)", "test-token", 400, "invalid_json",
       "not valid JSON"},
      {"not an object", R"([1,2])", "test-token", 400, "invalid_json", "JSON object"},
      {"wrong type", R"({"source":"web","external_id":7,"from":{"email":"a@b.c"}})", "test-token",
       400, "invalid_field", "\"external_id\" must be a string"},
      {"no from", R"({"source":"web","external_id":"x1","text":"hi"})", "test-token", 400,
       "invalid_field", "\"from\" is required"},
      {"empty from", R"({"source":"web","external_id":"x1","from":{}})", "test-token", 400,
       "invalid_field", "\"from\" must hold email, phone"},
      {"bad email", R"({"source":"web","external_id":"x1","from":{"email":"nobody"}})",
       "test-token", 400, "invalid_field", "from.email"},
      // Every identity given is checked, not only the one the payload shows.
      {"bad phone next to a good email",
       R"({"source":"web","external_id":"x1","from":{"email":"a@b.co","phone":"12"}})",
       "test-token", 400, "invalid_field", "from.phone"},
      {"bad platform next to a good phone",
       R"({"source":"web","external_id":"x1","from":{"phone":"+14155550100","platform":"icq","handle":"a"}})",
       "test-token", 400, "invalid_field", "from.platform"},
      {"bad time",
       R"({"source":"web","external_id":"x1","from":{"email":"a@b.co"},"occurred_at":"yesterday"})",
       "test-token", 400, "invalid_field", "occurred_at"},
      {"invalid UTF-8",
       "{\"source\":\"web\",\"external_id\":\"x1\",\"from\":{\"email\":\"a@b.co\"},\"text\":"
       "\"\xff\xfe\"}",
       "test-token", 400, "invalid_json", "not valid JSON"},
      {"lone surrogate",
       R"({"source":"web","external_id":"x1","from":{"email":"a@b.co"},"text":"\ud83d"})",
       "test-token", 400, "invalid_json", "unpaired UTF-16 surrogate"},
      {"lone low surrogate",
       R"({"source":"web","external_id":"x1","from":{"email":"a@b.co"},"text":"\ude00x"})",
       "test-token", 400, "invalid_json", "unpaired UTF-16 surrogate"},
      {"2 MB body", R"({"source":"web","external_id":"x1","text":")" + big + "\"}", "test-token",
       413, "body_too_large", "max_body_bytes"},
      {"no token", kAnn, "", 401, "unauthorized", "missing Authorization"},
      {"wrong token", kAnn, "nope", 401, "unauthorized", "unknown api token"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    HttpClient client(f.app->port());
    auto r = client.post_json("/v1/interactions", c.body, c.token);
    CHECK(r.status == c.status);
    auto err = json::parse(r.body).at("error").as_object();
    CHECK(err.at("code").as_string() == c.code);
    CHECK(std::string(err.at("message").as_string()).find(c.message_part) != std::string::npos);
  }
  // A well-formed pair is one character: a later syntax error is not blamed on it. A body cut
  // inside an escape is a 400, not a failure of the error path itself.
  auto r = f.http->post_json("/v1/interactions", R"({"source":"web","text":"\ud83d\ude00")",
                             "test-token");
  CHECK(r.status == 400);
  CHECK(r.body.find("surrogate") == std::string::npos);
  CHECK(f.http->post_json("/v1/interactions", R"({"source":"web","text":"\ud83d\ude)", "test-token")
            .status == 400);
  CHECK(count_rows(f.db(), "SELECT count(*) FROM interactions") == 0);
  CHECK(count_rows(f.db(), "SELECT count(*) FROM customers") == 0);
  // And the daemon keeps serving.
  CHECK(f.http->post_json("/v1/interactions", kAnn, "test-token").status == 202);
  CHECK(f.http->request("GET", "/healthz").status == 200);
}

// RFC 9110 section 8.3.1: the type and subtype are case-insensitive, and parameters are not part
// of the type. Before, any Content-Type containing the letters "json" was taken (even as a
// parameter) and one spelt in capitals was refused.
TEST_CASE("ingest reads the media type of Content-Type, case-insensitively, without parameters") {
  Fixture f;
  struct Case {
    std::string content_type;
    int status;
  };
  std::vector<Case> cases = {
      {"application/json", 202},
      {"Application/JSON; charset=UTF-8", 202},
      {" application/json ;charset=utf-8", 202},
      {"application/vnd.example+json", 202},
      {"text/plain; format=json", 415},
      {"application/x-www-form-urlencoded; note=json", 415},
      {"application/x-ndjson", 415},
  };
  int n = 0;
  for (const auto& c : cases) {
    CAPTURE(c.content_type);
    std::string body = R"({"source":"web","external_id":"ct-)" + std::to_string(n++) +
                       R"(","from":{"email":"ann@example.com"},"text":"hi"})";
    auto r =
        f.http->request("POST", "/v1/interactions", body,
                        {{"Content-Type", c.content_type}, {"Authorization", "Bearer test-token"}});
    CHECK(r.status == c.status);
    if (c.status == 415) {
      auto err = json::parse(r.body).at("error").as_object();
      CHECK(err.at("code").as_string() == "unsupported_media_type");
      CHECK(std::string(err.at("message").as_string()).find(c.content_type) != std::string::npos);
    }
  }
  CHECK(count_rows(f.db(), "SELECT count(*) FROM interactions") == 4);
}

TEST_CASE(
    "Redis down: ingest keeps answering 2xx, /readyz says 503, then everything arrives once") {
  Fixture f;
  REQUIRE(eventually([&] { return f.http->request("GET", "/readyz").status == 200; }));
  f.redis.stop();
  REQUIRE(eventually([&] { return f.http->request("GET", "/readyz").status == 503; }));
  auto ready = f.http->request("GET", "/readyz");
  CHECK(json::parse(ready.body).at("error").at("code").as_string() == "redis_unavailable");
  for (int i = 0; i < 50; ++i) {
    std::string body = R"({"source":"web","external_id":"d-)" + std::to_string(i) +
                       R"(","from":{"phone":"+14155550100"},"text":"hi"})";
    CHECK(f.http->post_json("/v1/interactions", body, "test-token").status == 202);
  }
  auto metrics = f.http->request("GET", "/metrics").body;
  CHECK(metrics.find("switchboard_outbox_pending 50") != std::string::npos);
  // Requests are counted by route and status (the series are kept per route and code).
  CHECK(f.http->post_json("/v1/interactions", "{", "test-token").status == 400);
  metrics = f.http->request("GET", "/metrics").body;
  CHECK(metrics.find(
            "switchboard_http_requests_total{route=\"/v1/interactions\",code=\"202\"} 50\n") !=
        std::string::npos);
  CHECK(metrics.find(
            "switchboard_http_requests_total{route=\"/v1/interactions\",code=\"400\"} 1\n") !=
        std::string::npos);
  f.redis.start();  // empty: the relay must recreate groups and deliver everything
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:normal") == 50; },
                     std::chrono::seconds(15)));
  REQUIRE(eventually([&] { return f.http->request("GET", "/readyz").status == 200; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(f.redis.xlen("sb:q:general:normal") == 50);
  CHECK(eventually([&] {
    return f.http->request("GET", "/metrics").body.find("switchboard_outbox_pending 0\n") !=
           std::string::npos;
  }));
}

namespace {
// One row as the relay passes it: KEYS stream + marker (after the pass's note and the projection
// mark, KEYS[1] and KEYS[2]); ARGV the 7 entry values, in the order of the field names in the
// script (interaction_id ... payload).
std::vector<std::string> relay_row(const std::string& stream, const std::string& op) {
  return {stream, "sb:relayed:" + op};
}
std::vector<std::string> relay_fields(const std::string& op) {
  return {op, "c", "", "api", "message", "normal", "{}"};
}
// One call of the relay's script; each call a pass of its own unless `note` names one. The call
// expects the projection mark at `expect` or above and raises it to `last`.
std::string relay_call(RedisServer& redis, const std::string& sha,
                       const std::vector<std::pair<std::string, std::string>>& rows,
                       std::string note = "", std::int64_t expect = 0, std::int64_t last = 0) {
  static int passes = 0;
  if (note.empty()) {
    note = "sb:relay:refused:test:" + std::to_string(++passes);
  }
  std::vector<std::string> args{"EVALSHA", sha, std::to_string(2 + rows.size() * 2), note,
                                "sb:projected"};
  for (const auto& [stream, op] : rows) {
    for (auto& k : relay_row(stream, op)) {
      args.push_back(k);
    }
  }
  args.push_back("60");
  args.push_back(std::to_string(expect));
  args.push_back(std::to_string(last));
  for (const auto& [stream, op] : rows) {
    for (auto& f : relay_fields(op)) {
      args.push_back(f);
    }
  }
  return redis.cmd(args);
}
}  // namespace

TEST_CASE("the relay's Lua script adds an operation once, even when replayed") {
  RedisServer redis;
  std::string sha = redis.cmd({"SCRIPT", "LOAD", Relay::script()});
  auto add = [&] { return relay_call(redis, sha, {{"sb:q:x:normal", "op1"}}); };
  CHECK(add().find("1") != std::string::npos);
  CHECK(redis.xlen("sb:q:x:normal") == 1);
  add();  // a replay after a crash between XADD and the outbox delete
  CHECK(redis.xlen("sb:q:x:normal") == 1);
  // A stream first created by the script gets the consumer group.
  CHECK(redis.cmd({"XINFO", "GROUPS", "sb:q:x:normal"}).find("agents") != std::string::npos);
  auto entry = redis.xrange("sb:q:x:normal").at(0);
  entry.erase("_id");
  CHECK(entry == std::map<std::string, std::string>{{"interaction_id", "op1"},
                                                    {"conversation_id", "c"},
                                                    {"customer_id", ""},
                                                    {"channel", "api"},
                                                    {"kind", "message"},
                                                    {"priority", "normal"},
                                                    {"payload", "{}"}});
}

TEST_CASE(
    "the relay's Lua script refuses a broken stream's rows, adds the others', and a retry "
    "adds the refused ones once, in order") {
  RedisServer redis;
  std::string sha = redis.cmd({"SCRIPT", "LOAD", Relay::script()});
  redis.cmd({"SET", "sb:q:broken:normal", "not a stream"});
  std::vector<std::pair<std::string, std::string>> rows{{"sb:q:x:normal", "a"},
                                                        {"sb:q:broken:normal", "b"},
                                                        {"sb:q:x:normal", "c"},
                                                        {"sb:q:broken:normal", "d"}};
  std::string reply = relay_call(redis, sha, rows);
  // {4, "", 1, "WRONGTYPE ...", 3, "WRONGTYPE ..."}: all done, rows 1 and 3 refused.
  CHECK(reply.starts_with("[4,,1,WRONGTYPE"));
  CHECK(reply.find(",3,WRONGTYPE") != std::string::npos);
  CHECK(redis.xlen("sb:q:x:normal") == 2);              // a and c: not held up by b
  CHECK(redis.cmd({"EXISTS", "sb:relayed:b"}) == "0");  // b's marker dropped: retry adds it
  CHECK(redis.cmd({"EXISTS", "sb:relayed:d"}) == "0");  // d not tried: it must not overtake b
  redis.cmd({"DEL", "sb:q:broken:normal"});
  CHECK(relay_call(redis, sha, rows) == "[4,]");
  CHECK(redis.xlen("sb:q:x:normal") == 2);  // a and c not again
  auto broken = redis.xrange("sb:q:broken:normal");
  REQUIRE(broken.size() == 2);
  CHECK(broken[0]["interaction_id"] == "b");
  CHECK(broken[1]["interaction_id"] == "d");
}

TEST_CASE("the relay's Lua script refuses a stream refused earlier in the pass, even repaired") {
  RedisServer redis;
  std::string sha = redis.cmd({"SCRIPT", "LOAD", Relay::script()});
  redis.cmd({"SET", "sb:q:broken:normal", "not a stream"});
  CHECK(relay_call(redis, sha, {{"sb:q:broken:normal", "a"}}, "pass-1").starts_with("[1,,0,"));
  // The operator repairs the key while the pass's next call waits in the pipeline: b must not
  // overtake a, which the relay now holds; c, of another stream, goes in.
  redis.cmd({"DEL", "sb:q:broken:normal"});
  auto reply =
      relay_call(redis, sha, {{"sb:q:broken:normal", "b"}, {"sb:q:x:normal", "c"}}, "pass-1");
  CHECK(reply.starts_with("[2,,0,WRONGTYPE"));
  CHECK(redis.xlen("sb:q:broken:normal") == 0);
  CHECK(redis.xlen("sb:q:x:normal") == 1);
  CHECK(redis.cmd({"PTTL", "pass-1"}) != "-1");  // the note goes by itself
  // The retry is a pass of its own: a, then b.
  CHECK(relay_call(redis, sha, {{"sb:q:broken:normal", "a"}, {"sb:q:broken:normal", "b"}}) ==
        "[2,]");
  auto entries = redis.xrange("sb:q:broken:normal");
  REQUIRE(entries.size() == 2);
  CHECK(entries[0]["interaction_id"] == "a");
  CHECK(entries[1]["interaction_id"] == "b");
}

TEST_CASE("the relay's Lua script stops at a failure of Redis as a whole (OOM)") {
  RedisServer redis;
  std::string sha = redis.cmd({"SCRIPT", "LOAD", Relay::script()});
  redis.cmd({"CONFIG", "SET", "maxmemory", "1"});
  std::string reply = relay_call(redis, sha, {{"sb:q:x:normal", "a"}, {"sb:q:y:normal", "b"}});
  CHECK(reply.find("OOM") != std::string::npos);  // an error reply: the relay retries it all
  redis.cmd({"CONFIG", "SET", "maxmemory", "0"});
  CHECK(redis.xlen("sb:q:x:normal") == 0);
  CHECK(redis.xlen("sb:q:y:normal") == 0);
}

TEST_CASE(
    "the relay's Lua script raises the projection mark with its rows and refuses a call that "
    "expects more (a gap)") {
  RedisServer redis;
  std::string sha = redis.cmd({"SCRIPT", "LOAD", Relay::script()});
  CHECK(relay_call(redis, sha, {{"sb:q:x:normal", "a"}}, "", 0, 7) == "[1,]");
  CHECK(redis.cmd({"GET", "sb:projected"}) == "7");
  // Held rows sent again lie below the mark: it stays.
  CHECK(relay_call(redis, sha, {{"sb:q:x:normal", "b"}}, "", 7, 3) == "[1,]");
  CHECK(redis.cmd({"GET", "sb:projected"}) == "7");
  // A call of a pipelined pass after one that failed (OOM, say) expects that call's mark: it
  // adds nothing, so its rows cannot overtake the failed call's.
  auto reply = relay_call(redis, sha, {{"sb:q:x:normal", "c"}}, "", 9, 12);
  CHECK(reply.starts_with("[0,GAP "));
  CHECK(redis.xlen("sb:q:x:normal") == 2);
  CHECK(redis.cmd({"EXISTS", "sb:relayed:c"}) == "0");
  CHECK(redis.cmd({"GET", "sb:projected"}) == "7");
  // A failure of Redis as a whole leaves the mark where it was.
  redis.cmd({"CONFIG", "SET", "maxmemory", "1"});
  CHECK(relay_call(redis, sha, {{"sb:q:x:normal", "d"}}, "", 7, 9).find("OOM") !=
        std::string::npos);
  redis.cmd({"CONFIG", "SET", "maxmemory", "0"});
  CHECK(redis.cmd({"GET", "sb:projected"}) == "7");
  // Redis without its data (FLUSHALL, a restart without the append-only file): the mark is gone.
  redis.cmd({"FLUSHALL"});
  CHECK(relay_call(redis, sha, {{"sb:q:x:normal", "d"}}, "", 7, 9).starts_with("[0,GAP "));
  CHECK(redis.xlen("sb:q:x:normal") == 0);
}

TEST_CASE("rules route by text, a reload swaps them, a bad reload keeps the old ones") {
  Fixture f([](config::Config& c) {
    c.routing.rules.push_back(text_rule("billing", "billing", "high", "refund|chargeback"));
  });
  auto post = [&](const std::string& id, const std::string& text) {
    return f.http->post_json("/v1/interactions",
                             R"({"source":"web","external_id":")" + id +
                                 R"(","from":{"email":"z@example.com"},"text":")" + text + "\"}",
                             "test-token");
  };
  CHECK(post("r1", "I want a REFUND").status == 202);
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:billing:high") == 1; }));

  auto fresh = f.app->config();
  fresh.routing.rules.clear();
  fresh.routing.rules.push_back(text_rule("urgent", "general", "urgent", "down"));
  CHECK(f.app->reload(fresh).empty());
  CHECK(post("r2", "site is down").status == 202);
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:urgent") == 1; }));

  auto broken = fresh;
  broken.routing.rules[0].when.text_matches = "(unclosed";
  CHECK(!f.app->reload(broken).empty());
  CHECK(post("r3", "still down").status == 202);  // the old rules stay in force
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:urgent") == 2; }));
}

TEST_CASE("a conversation stays in its queue while the config names it, and leaves one dropped") {
  // Sticky routing kept a conversation in the queue it was last routed to even after a reload
  // had dropped that queue: its later messages went on to sb:q:billing:*, where no agent may
  // claim any more (and after a restart /v1/queues no longer lists it).
  Fixture f([](config::Config& c) {
    c.routing.rules = {text_rule("billing", "billing", "high", "refund"),
                       text_rule("gold", "vip", "high", "gold")};
  });
  auto post = [&](const std::string& id, const std::string& thread, const std::string& text) {
    return f.http->post_json("/v1/interactions",
                             R"({"source":"web","external_id":")" + id +
                                 R"(","from":{"email":"st@example.com"},"text":")" + text +
                                 R"(","thread_key":")" + thread + R"("})",
                             "test-token");
  };
  auto billing = [&] {
    long long n = 0;
    for (const char* p : kPriorities) {
      n += f.redis.xlen(std::string("sb:q:billing:") + p);
    }
    return n;
  };
  CHECK(post("s1", "order-1", "a refund please").status == 202);
  CHECK(post("s2", "order-2", "my gold card").status == 202);
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:billing:high") == 1; }));
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:vip:high") == 1; }));

  // Neither the rules nor any agent name billing now; vip is still alice's.
  auto fresh = f.app->config();
  fresh.routing.rules.clear();
  for (auto& a : fresh.agents) {
    std::erase(a.queues, "billing");
  }
  REQUIRE(f.app->reload(fresh).empty());
  CHECK(post("s3", "order-1", "any news?").status == 202);
  CHECK(post("s4", "order-2", "any news?").status == 202);
  // order-1: the rules decide, as for a new conversation (the default queue), and the
  // conversation follows there.
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:normal") == 1; }));
  CHECK(json::parse(f.redis.xrange("sb:q:general:normal").at(0)["payload"])
            .at("external_id")
            .as_string() == "s3");
  // order-2: vip is still configured (an agent's queue), so it stays there, at the priority of
  // the rules in force.
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:vip:normal") == 1; }));
  CHECK(billing() == 1);
  CHECK(count_rows(f.db(), "SELECT count(*) FROM conversations WHERE queue = 'billing'") == 0);
  CHECK(count_rows(f.db(), "SELECT count(*) FROM conversations WHERE queue = 'general'") == 1);
  CHECK(count_rows(f.db(), "SELECT count(*) FROM conversations WHERE queue = 'vip'") == 1);
}

TEST_CASE("a reload revokes an API token and admits the new one, for ingest and the read routes") {
  Fixture f;
  auto post = [&](const std::string& id, const std::string& token) {
    return f.http->post_json(
        "/v1/interactions",
        R"({"source":"web","external_id":")" + id + R"(","from":{"email":"rot@example.com"}})",
        token);
  };
  auto get = [&](const std::string& target, const std::string& token) {
    return f.http->request("GET", target, "", {{"Authorization", "Bearer " + token}});
  };
  REQUIRE(post("tok-1", "test-token").status == 202);
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:normal") == 1; }));
  const std::string customer =
      "/v1/customers/" + f.redis.xrange("sb:q:general:normal").at(0)["customer_id"];
  CHECK(get(customer, "test-token").status == 200);

  auto fresh = f.app->config();
  fresh.api.tokens = {"rotated-token"};
  CHECK(f.app->reload(fresh).empty());
  auto refused = post("tok-2", "test-token");
  CHECK(refused.status == 401);
  CHECK(refused.body.find("unknown api token") != std::string::npos);
  CHECK(get(customer, "test-token").status == 401);
  CHECK(post("tok-3", "rotated-token").status == 202);
  CHECK(get(customer, "rotated-token").status == 200);
  CHECK(count_rows(f.db(), "SELECT count(*) FROM interactions WHERE external_id = 'tok-2'") == 0);
}

TEST_CASE(
    "a rule regex against a long one-line text neither crashes the daemon nor holds the writer") {
  // libstdc++'s std::regex recursed once per matched character: `order.*late` against a 30 KB
  // line (a web form's text is one JSON string) overflowed the writer thread's stack.
  Fixture f([](config::Config& c) {
    c.routing.rules = {text_rule("late", "billing", "normal", "order.*late"),
                       // Catastrophic backtracking: stopped by the match limit.
                       subject_rule("evil", "billing", "low", "(a+)+b")};
  });
  auto post = [&](const std::string& id, const std::string& subject, const std::string& text) {
    return f.http->post_json("/v1/interactions",
                             R"({"source":"web","external_id":")" + id +
                                 R"(","from":{"email":"z@example.com"},"subject":")" + subject +
                                 R"(","text":")" + text + "\"}",
                             "test-token");
  };
  std::string long_line = "order " + std::string(200000, 'a');
  auto t0 = std::chrono::steady_clock::now();
  CHECK(post("long-1", "hi", long_line).status == 202);
  CHECK(post("long-2", "hi", long_line + " is late").status == 202);
  CHECK(post("evil", std::string(40, 'a') + "!b", "nothing").status == 202);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
  CHECK(healthy(f.app->port()));
  REQUIRE(eventually([&] { return f.redis.xlen("sb:q:general:normal") == 2; }));
  CHECK(f.redis.xlen("sb:q:billing:normal") == 1);  // long-2 matched `order.*late`
  CHECK(f.redis.xlen("sb:q:billing:low") == 0);     // the pattern gave up: not a match
}

namespace ingest_test {

// A customer from the CRM (`customers import`) holding `ids`, written beside the running
// daemon; returns its id.
std::string import_customer(const std::string& db_path, const std::string& external_id,
                            std::vector<Identity> ids) {
  storage::Db db(db_path);
  storage::CustomerImporter imp(db);
  imp.begin();
  std::string error;
  storage::CustomerUpsert rec{external_id, external_id, "", {}, std::move(ids)};
  REQUIRE(imp.upsert(rec, error) == storage::CustomerImporter::Result::inserted);
  imp.commit();
  return storage::find_customer_by_external_id(db, external_id).value_or("");
}

// "type:value" of each identity GET /v1/customers/{id} lists, in its order.
std::string listed_identities(HttpClient& http, const std::string& customer) {
  auto r = http.request("GET", "/v1/customers/" + customer, "",
                        {{"Authorization", "Bearer test-token"}});
  REQUIRE(r.status == 200);
  std::set<std::string> ids;
  // Kept in a variable: a range-for over json::parse(...) would outlive the parsed value.
  json::value body = json::parse(r.body);
  for (const auto& i : body.at("identities").as_array()) {
    ids.insert(std::string(i.at("type").as_string()) + ":" +
               std::string(i.at("value").as_string()));
  }
  std::string out;
  for (const auto& i : ids) {
    out += (out.empty() ? "" : " ") + i;
  }
  return out;
}

// The customer of the `n`th entry (from 0) of the general queue, and whether it was new.
std::pair<std::string, bool> nth_customer(Fixture& f, std::size_t n) {
  REQUIRE(eventually(
      [&] { return f.redis.xlen("sb:q:general:normal") == static_cast<long long>(n + 1); }));
  auto e = f.redis.xrange("sb:q:general:normal").at(n);
  auto payload = json::parse(e["payload"]);
  return {e["customer_id"], payload.at("customer").at("is_new").as_bool()};
}

}  // namespace ingest_test

// SPEC section 3: `from` holds at least one of email, phone, platform + handle; issue 2: a
// customer is matched exactly on any identity. Before, only the first was kept: a web form that
// sent email and phone for a customer known by phone made a second customer.
TEST_CASE("ingest: a sender given by email and phone is the customer the phone names") {
  using namespace ingest_test;
  Fixture f;
  const std::string cy = import_customer(f.db(), "crm-cy", {{"phone", "+14155550111", "", ""}});
  REQUIRE(!cy.empty());
  auto r = f.http->post_json("/v1/interactions", R"({"source":"web-form","external_id":"m-1",
      "from":{"email":"Cy@Example.com","phone":"+1 415 555 0111","name":"Cy"},"text":"hi"})",
                             "test-token");
  CHECK(r.status == 202);
  auto [customer, is_new] = nth_customer(f, 0);
  CHECK(customer == cy);
  CHECK(is_new == false);
  CHECK(listed_identities(*f.http, cy) == "email:cy@example.com phone:+14155550111");
  // The payload's `from` is the email, as when it came alone (SPEC section 5).
  auto payload = json::parse(f.redis.xrange("sb:q:general:normal").at(0)["payload"]);
  CHECK(payload.at("from").at("type").as_string() == "email");
  CHECK(payload.at("from").at("value").as_string() == "cy@example.com");
  // The email alone now names that customer too.
  CHECK(f.http
            ->post_json("/v1/interactions",
                        R"({"source":"web-form","external_id":"m-2",
      "from":{"email":"cy@example.com"},"text":"again"})",
                        "test-token")
            .status == 202);
  CHECK(nth_customer(f, 1) == std::pair<std::string, bool>{cy, false});
  CHECK(count_rows(f.db(), "SELECT count(*) FROM customers") == 1);
}

TEST_CASE("ingest: an email and a phone of two customers name the email's, the phone stays") {
  using namespace ingest_test;
  Fixture f;
  CHECK(f.http
            ->post_json("/v1/interactions", R"({"source":"web-form","external_id":"m-1",
      "from":{"email":"eve@example.com"},"text":"hi"})",
                        "test-token")
            .status == 202);
  const std::string eve = nth_customer(f, 0).first;
  const std::string pat = import_customer(f.db(), "crm-pat", {{"phone", "+14155550133", "", ""}});
  CHECK(f.http
            ->post_json("/v1/interactions", R"({"source":"web-form","external_id":"m-2",
      "from":{"email":"eve@example.com","phone":"+14155550133"},"text":"hi"})",
                        "test-token")
            .status == 202);
  CHECK(nth_customer(f, 1) == std::pair<std::string, bool>{eve, false});
  CHECK(listed_identities(*f.http, eve) == "email:eve@example.com");
  CHECK(listed_identities(*f.http, pat) == "phone:+14155550133");
  // The phone still names its owner when the email is nobody's: Pat, who gains the email.
  CHECK(f.http
            ->post_json("/v1/interactions", R"({"source":"web-form","external_id":"m-3",
      "from":{"email":"pat@example.com","phone":"+14155550133"},"text":"hi"})",
                        "test-token")
            .status == 202);
  CHECK(nth_customer(f, 2) == std::pair<std::string, bool>{pat, false});
  CHECK(listed_identities(*f.http, pat) == "email:pat@example.com phone:+14155550133");
  CHECK(count_rows(f.db(), "SELECT count(*) FROM customers") == 2);
}

TEST_CASE("ingest: a sender whose identities are all unknown is one new customer holding them") {
  using namespace ingest_test;
  Fixture f;
  CHECK(f.http
            ->post_json("/v1/interactions", R"({"source":"web-form","external_id":"m-1",
      "from":{"email":"dee@example.com","phone":"+14155550122","platform":"x","handle":"@DeeDee"},
      "text":"hi"})",
                        "test-token")
            .status == 202);
  auto [dee, is_new] = nth_customer(f, 0);
  CHECK(is_new == true);
  CHECK(listed_identities(*f.http, dee) ==
        "email:dee@example.com phone:+14155550122 x_handle:deedee");
  CHECK(count_rows(f.db(), "SELECT count(*) FROM customers") == 1);
}
