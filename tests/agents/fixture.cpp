#include "tests/agents/fixture.hpp"

#include <doctest/doctest.h>

#include "storage/sqlite.hpp"
#include "tests/agents/reply_cutter.hpp"

namespace sb::test {
namespace json = boost::json;

AgentDaemon::AgentDaemon(std::function<void(config::Config&)> tweak,
                         std::function<void(App&)> before_start) {
  auto cfg = test_config(dir, redis.port());
  if (tweak) {
    tweak(cfg);
  }
  app = std::make_unique<App>(cfg);
  if (before_start) {
    before_start(*app);
  }
  app->start();
  http = std::make_unique<HttpClient>(app->port());
}

std::string AgentDaemon::ingest(const std::string& external_id, const std::string& subject,
                                const std::string& email, const std::string& thread_key,
                                const std::string& source) {
  json::object o{{"source", source},   {"external_id", external_id},
                 {"kind", "message"},  {"from", {{"email", email}, {"name", "Ann Lee"}}},
                 {"subject", subject}, {"text", "Hello about " + subject}};
  if (!thread_key.empty()) {
    o["thread_key"] = thread_key;
  }
  auto r = http->post_json("/v1/interactions", json::serialize(o), "test-token");
  REQUIRE(r.status == 202);
  return std::string(parse(r.body).at("id").as_string());
}

HttpResponse AgentDaemon::claim(const std::string& token, const std::string& queue, int wait_ms,
                                HttpClient* client) {
  json::object o{{"queue", queue}, {"wait_ms", wait_ms}};
  return (client ? client : http.get())->post_json("/v1/agent/claim", json::serialize(o), token);
}

HttpResponse AgentDaemon::act(const std::string& token, const std::string& id,
                              const std::string& action, const std::string& body,
                              HttpClient* client) {
  return (client ? client : http.get())
      ->post_json("/v1/agent/interactions/" + id + "/" + action, body, token);
}

HttpResponse AgentDaemon::get(const std::string& token, const std::string& target) {
  std::map<std::string, std::string> h;
  if (!token.empty()) {
    h["Authorization"] = "Bearer " + token;
  }
  return http->request("GET", target, "", h);
}

long long AgentDaemon::rows(const std::string& sql) {
  storage::Db db(dir.file("switchboard.db"), true);
  auto st = db.prepare(sql);
  st.step();
  return st.int64(0);
}

json::object AgentDaemon::queue_stats(const std::string& queue) {
  auto r = get("alice-token", "/v1/queues");
  REQUIRE(r.status == 200);
  auto body = parse(r.body);
  for (const auto& q : body.at("queues").as_array()) {
    if (q.at("queue").as_string() == queue) {
      return q.as_object();
    }
  }
  FAIL("no queue " << queue << " in " << r.body);
  return {};
}

void AgentDaemon::drained() {
  bool ok = eventually([&] { return rows("SELECT count(*) FROM outbox") == 0; });
  REQUIRE_MESSAGE(ok, "outbox rows left: " << rows("SELECT count(*) FROM outbox")
                                           << ", general:normal "
                                           << redis.xlen("sb:q:general:normal"));
}

void AgentDaemon::restart(const std::function<void(config::Config&)>& tweak) {
  http.reset();
  app->stop();
  app.reset();
  auto cfg = test_config(dir, redis.port());
  if (tweak) {
    tweak(cfg);
  }
  app = std::make_unique<App>(cfg);
  app->start();
  http = std::make_unique<HttpClient>(app->port());
}

std::function<void(config::Config&)> through(std::unique_ptr<ReplyCutter>& cutter,
                                             std::chrono::milliseconds claim_timeout,
                                             int max_deliveries) {
  return [&cutter, claim_timeout, max_deliveries](config::Config& c) {
    cutter = std::make_unique<ReplyCutter>(c.redis.port);
    c.redis.port = cutter->port();
    c.redis.url = "redis://127.0.0.1:" + std::to_string(cutter->port()) + "/0";
    c.routing.claim_timeout = claim_timeout;
    c.routing.max_deliveries = max_deliveries;
  };
}

void rotate_token(config::Config& c, const std::string& agent, const std::string& token) {
  for (auto& a : c.agents) {
    if (a.id == agent) {
      a.token = token;
    }
  }
}

std::thread claim_on_its_way(AgentDaemon& d, ReplyCutter& cutter, HttpClient& client,
                             HttpResponse& got) {
  cutter.delay_reply_to("alice", std::chrono::milliseconds(1500));
  std::thread claim([&] { got = d.claim("alice-token", "general", 0, &client); });
  REQUIRE(eventually([&] {
    return d.redis.cmd({"XPENDING", "sb:q:general:normal", "agents"}).find("alice") !=
           std::string::npos;
  }));
  return claim;
}

json::object parse(const std::string& body) {
  json::error_code ec;
  auto v = json::parse(body, ec);
  REQUIRE_MESSAGE(!ec, "not JSON: " << body);
  REQUIRE(v.is_object());
  return v.as_object();
}

std::string claimed_id(const HttpResponse& r) {
  REQUIRE_MESSAGE(r.status == 200, "claim answered " << r.status << " " << r.body);
  return std::string(parse(r.body).at("interaction").at("id").as_string());
}

std::string error_message(const HttpResponse& r) {
  return std::string(parse(r.body).at("error").at("message").as_string());
}

}  // namespace sb::test
