// kill -9 of the daemon while agents hold items. The claims live in Redis (the consumer group's
// pending list and {prefix}:held), so the restarted daemon honours them: the holder can still
// finish, nobody else is handed them, and one not finished comes back after claim_timeout,
// counted as a second delivery. The real binary as a process.
#include <doctest/doctest.h>
#include <signal.h>

#include <fstream>
#include <thread>

#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

namespace {
std::string write_config(const TempDir& dir, std::uint16_t port, std::uint16_t redis_port,
                         const std::string& claim_timeout = "2s") {
  std::string path = dir.file("switchboard.toml");
  std::ofstream(path) << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n"
                      << "[storage]\npath = \"" << dir.file("sb.db") << "\"\n"
                      << "[redis]\nurl = \"redis://127.0.0.1:" << redis_port << "/0\"\n"
                      << "[api]\ntokens = [\"t\"]\n"
                      << "[routing]\ndefault_queue = \"general\"\nclaim_timeout = \""
                      << claim_timeout << "\"\n"
                      << "[[agents]]\nid = \"alice\"\ntoken = \"alice-token\"\n"
                      << "queues = [\"general\"]\n"
                      << "[[agents]]\nid = \"bob\"\ntoken = \"bob-token\"\n"
                      << "queues = [\"general\"]\n";
  return path;
}

HttpResponse claim(HttpClient& c, const std::string& token, int wait_ms = 0) {
  return c.post_json("/v1/agent/claim",
                     R"({"queue":"general","wait_ms":)" + std::to_string(wait_ms) + "}", token);
}

// Ingests a message; returns its interaction id.
std::string ingest(HttpClient& c, const std::string& external_id) {
  auto r = c.post_json("/v1/interactions",
                       R"({"source":"web","external_id":")" + external_id +
                           R"(","kind":"message","from":{"email":"ann@example.com"},"text":"x"})",
                       "t");
  REQUIRE(r.status == 202);
  return std::string(parse(r.body).at("id").as_string());
}

// The entry of queue "general" in GET /v1/queues.
boost::json::object general_stats(HttpClient& c) {
  auto r = c.request("GET", "/v1/queues", "", {{"Authorization", "Bearer alice-token"}});
  REQUIRE(r.status == 200);
  auto body = parse(r.body);
  for (const auto& q : body.at("queues").as_array()) {
    if (q.at("queue").as_string() == "general") {
      return q.as_object();
    }
  }
  FAIL("no queue general in " << r.body);
  return {};
}
}  // namespace

TEST_CASE("kill -9 while items are claimed: the restarted daemon honours the claims") {
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  auto cfg = write_config(dir, port, redis.port());
  auto start = [&] { return daemon_process(dir, cfg); };
  auto daemon = start();
  REQUIRE(eventually([&] { return healthy(port); }));
  std::vector<std::string> ids;
  {
    HttpClient c(port);
    for (int i = 0; i < 2; ++i) {
      auto r =
          c.post_json("/v1/interactions",
                      R"({"source":"web","external_id":"restart-)" + std::to_string(i) +
                          R"(","kind":"message","from":{"email":"ann@example.com"},"text":"x"})",
                      "t");
      REQUIRE(r.status == 202);
      ids.push_back(std::string(parse(r.body).at("id").as_string()));
    }
    REQUIRE(eventually([&] { return redis.xlen("sb:q:general:normal") == 2; }));
    CHECK(claimed_id(claim(c, "alice-token")) == ids[0]);
    CHECK(claimed_id(claim(c, "alice-token")) == ids[1]);
  }
  auto claimed_at = std::chrono::steady_clock::now();
  daemon->kill(SIGKILL);
  daemon->wait();

  daemon = start();
  REQUIRE(eventually([&] { return healthy(port); }));
  HttpClient c(port);
  // Held by alice still: bob gets nothing, alice finishes the first.
  CHECK(claim(c, "bob-token").status == 204);
  auto ack = c.post_json("/v1/agent/interactions/" + ids[0] + "/ack", "{}", "alice-token");
  CHECK(ack.status == 200);
  // The second is not finished: after claim_timeout (2 s from alice's claim) bob gets it, as a
  // second delivery, and only then.
  auto r = claim(c, "bob-token", 10000);
  auto waited = std::chrono::steady_clock::now() - claimed_at;
  CHECK(claimed_id(r) == ids[1]);
  CHECK(parse(r.body).at("delivery").at("deliveries").as_int64() == 2);
  CHECK(waited >= std::chrono::milliseconds(2000));
  auto late = c.post_json("/v1/agent/interactions/" + ids[1] + "/ack", "{}", "alice-token");
  CHECK(late.status == 409);
  CHECK(error_message(late).find("bob holds it") != std::string::npos);
  CHECK(c.post_json("/v1/agent/interactions/" + ids[1] + "/ack", "{}", "bob-token").status == 200);
  CHECK(redis.xlen("sb:q:general:normal") == 0);
  daemon->kill(SIGTERM);
  CHECK(daemon->wait() == 0);
}

// A release is marked by a fixed idle time, not by the claim_timeout in force when it was made:
// with claim_timeout + 1 s, a restart that raised claim_timeout (2 s -> 60 s here) hid every item
// released before it from all claims, and /v1/queues counted it as claimed, until its idle time
// caught up with the new claim_timeout.
TEST_CASE(
    "a restart that raises claim_timeout: a released item is still back in its queue at once") {
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  auto daemon = daemon_process(dir, write_config(dir, port, redis.port()));
  REQUIRE(eventually([&] { return healthy(port); }));
  std::string id;
  {
    HttpClient c(port);
    id = ingest(c, "restart-released");
    REQUIRE(eventually([&] { return redis.xlen("sb:q:general:normal") == 1; }));
    CHECK(claimed_id(claim(c, "alice-token")) == id);
    auto r = c.post_json("/v1/agent/interactions/" + id + "/release", "{}", "alice-token");
    REQUIRE(r.status == 200);
  }
  auto released_at = std::chrono::steady_clock::now();
  daemon->kill(SIGTERM);
  CHECK(daemon->wait() == 0);
  // Past the old claim_timeout since the release: the releaser's wait is the new one.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));

  daemon = daemon_process(dir, write_config(dir, port, redis.port(), "60s"));
  REQUIRE(eventually([&] { return healthy(port); }));
  HttpClient c(port);
  auto stats = general_stats(c);
  CHECK(stats.at("depth").as_int64() == 1);
  CHECK(stats.at("claimed").as_int64() == 0);
  // Alice released it: her claims pass it over for claim_timeout (now 60 s) after the release.
  CHECK(claim(c, "alice-token").status == 204);
  // Bob gets it at once, and the release was not a delivery.
  auto r = claim(c, "bob-token");
  CHECK(std::chrono::steady_clock::now() - released_at < std::chrono::seconds(60));
  CHECK(claimed_id(r) == id);
  CHECK(parse(r.body).at("delivery").at("deliveries").as_int64() == 1);
  CHECK(c.post_json("/v1/agent/interactions/" + id + "/ack", "{}", "bob-token").status == 200);
  daemon->kill(SIGTERM);
  CHECK(daemon->wait() == 0);
}
