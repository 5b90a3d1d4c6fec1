// kill -9 of the daemon while agents hold items. The claims live in Redis (the consumer group's
// pending list and {prefix}:held), so the restarted daemon honours them: the holder can still
// finish, nobody else is handed them, and one not finished comes back after claim_timeout,
// counted as a second delivery. The real binary as a process.
#include <doctest/doctest.h>
#include <signal.h>

#include <fstream>

#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

namespace {
std::string write_config(const TempDir& dir, std::uint16_t port, std::uint16_t redis_port) {
  std::string path = dir.file("switchboard.toml");
  std::ofstream(path) << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n"
                      << "[storage]\npath = \"" << dir.file("sb.db") << "\"\n"
                      << "[redis]\nurl = \"redis://127.0.0.1:" << redis_port << "/0\"\n"
                      << "[api]\ntokens = [\"t\"]\n"
                      << "[routing]\ndefault_queue = \"general\"\nclaim_timeout = \"2s\"\n"
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
