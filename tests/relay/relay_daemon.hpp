#pragma once
// What the relay's tests of the whole daemon share: an App on a real redis-server, fed through
// POST /v1/interactions and read back from the queue streams, /metrics and the database.
#include <doctest/doctest.h>

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "daemon/app.hpp"
#include "storage/sqlite.hpp"
#include "tests/support/harness.hpp"
#include "tests/support/log_capture.hpp"

namespace sb::test {

// The streams test_config() and billing_config() route to.
const std::string kGeneral = "sb:q:general:normal";
const std::string kBilling = "sb:q:billing:normal";

// test_config() with one rule: a text with "refund" goes to billing's normal stream, the rest to
// general's.
inline config::Config billing_config(const TempDir& dir, std::uint16_t redis_port) {
  auto cfg = test_config(dir, redis_port);
  cfg.routing.rules.push_back(text_rule("money", "billing", "normal", "refund"));
  return cfg;
}

// Posts one interaction of its own customer (`key` is its external id and its address); returns
// its id.
inline std::string post(std::uint16_t port, const std::string& key,
                        const std::string& text = "hello") {
  HttpClient c(port);
  auto r = c.post_json("/v1/interactions",
                       R"({"source":"web","external_id":")" + key + R"(","from":{"email":")" + key +
                           R"(@example.com"},"text":")" + text + "\"}",
                       "test-token");
  REQUIRE(r.status == 202);
  return std::string(boost::json::parse(r.body).at("id").as_string());
}

// The interaction ids in `stream`, oldest first.
inline std::vector<std::string> ids_in(RedisServer& redis, const std::string& stream) {
  std::vector<std::string> ids;
  for (auto& e : redis.xrange(stream)) {
    ids.push_back(e["interaction_id"]);
  }
  return ids;
}

inline bool ready(std::uint16_t port) {
  return HttpClient(port).request("GET", "/readyz").status == 200;
}

inline std::string metrics(std::uint16_t port) {
  return HttpClient(port).request("GET", "/metrics").body;
}

// /metrics shows the series `metric` (name and labels) at `n` now.
inline bool counted(std::uint16_t port, const std::string& metric, long long n) {
  return metrics(port).find(metric + " " + std::to_string(n) + "\n") != std::string::npos;
}

// "state queue:priority" of the interaction `id` ("" when there is none).
inline std::string state_of(const std::string& db_path, const std::string& id) {
  storage::Db db(db_path, true);
  auto st = db.prepare(
      "SELECT state || ' ' || queue || ':' || priority FROM interactions "
      "WHERE id = ?1");
  st.bind(1, id);
  return st.step() ? st.text(0) : "";
}

// The rows in the outbox: those not yet delivered to Redis.
inline long long outbox_rows(const std::string& db_path) {
  storage::Db db(db_path, true);
  auto st = db.prepare("SELECT count(*) FROM outbox");
  st.step();
  return st.int64(0);
}

}  // namespace sb::test
