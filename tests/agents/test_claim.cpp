// Acceptance 1 and 2 of issue 3: queues per agent, priority then age order, and 50 agents
// claiming one queue at once each getting distinct items.
#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

namespace {
// Subjects decide the priority; the queue is "general" unless the subject says billing.
void priority_rules(config::Config& c) {
  for (const char* p : {"urgent", "high", "low"}) {
    c.routing.rules.push_back(
        subject_rule(std::string(p) + " by subject", "general", p, std::string("^") + p));
  }
  c.routing.rules.push_back(subject_rule("billing", "billing", "normal", "^invoice"));
}
}  // namespace

TEST_CASE(
    "two agents, two queues: each sees its own, and urgent > high > normal > low, oldest first") {
  AgentDaemon d(priority_rules);
  // alice works general and vip; bob general and billing.
  std::vector<std::string> ids;
  ids.push_back(d.ingest("m1", "low one"));
  ids.push_back(d.ingest("m2", "normal one"));
  ids.push_back(d.ingest("m3", "high one"));
  ids.push_back(d.ingest("m4", "urgent one"));
  ids.push_back(d.ingest("m5", "normal two"));
  ids.push_back(d.ingest("m6", "urgent two"));
  std::string invoice = d.ingest("b1", "invoice 7");
  d.drained();

  // alice may not claim from billing; bob gets the billing item.
  auto denied = d.claim("alice-token", "billing");
  CHECK(denied.status == 403);
  CHECK(error_message(denied).find("billing") != std::string::npos);
  CHECK(claimed_id(d.claim("bob-token", "billing")) == invoice);
  CHECK(d.claim("bob-token", "billing").status == 204);

  // general, in order: urgent (m4, m6), high (m3), normal (m2, m5), low (m1).
  std::vector<std::string> expected = {ids[3], ids[5], ids[2], ids[1], ids[4], ids[0]};
  std::vector<std::string> got;
  for (int i = 0; i < 6; ++i) {
    auto r = d.claim(i % 2 ? "bob-token" : "alice-token", "general");
    got.push_back(claimed_id(r));
    auto body = parse(r.body);
    CHECK(body.at("delivery").at("deliveries").as_int64() == 1);
  }
  CHECK(got == expected);
  CHECK(d.claim("alice-token", "general").status == 204);
}

TEST_CASE("a waiting claim is answered as soon as work arrives, and 204 after wait_ms") {
  AgentDaemon d;
  auto t0 = std::chrono::steady_clock::now();
  auto r = d.claim("alice-token", "general", 300);
  auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(r.status == 204);
  CHECK(waited >= std::chrono::milliseconds(290));
  CHECK(waited < std::chrono::milliseconds(2000));

  HttpClient agent(d.app->port());
  std::chrono::steady_clock::time_point answered;
  std::string got;
  std::thread waiter([&] {
    auto r = d.claim("bob-token", "general", 10000, &agent);
    answered = std::chrono::steady_clock::now();
    got = r.status == 200 ? claimed_id(r) : r.body;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto posted = std::chrono::steady_clock::now();
  std::string id = d.ingest("late", "arrives while bob waits");
  waiter.join();
  CHECK(got == id);
  auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(answered - posted);
  MESSAGE("POST to waiting claim answered: " << latency.count() << " ms");
  CHECK(latency < std::chrono::milliseconds(500));
}

TEST_CASE("50 agents claiming one queue of 10,000 items: each item exactly once, none left") {
  constexpr int kItems = 10000;
  constexpr int kAgents = 50;
  AgentDaemon d([](config::Config& c) {
    c.agents.clear();
    for (int i = 0; i < kAgents; ++i) {
      c.agents.push_back({"agent" + std::to_string(i), "token-" + std::to_string(i), {"general"}});
    }
  });
  // 10,000 entries with the SPEC fields, added in one script (what the relay would add).
  auto added = d.redis.cmd({"EVAL",
                            "for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', "
                            "'interaction_id', 'item-' .. i, 'conversation_id', 'c', "
                            "'customer_id', 'u', 'channel', 'api', 'kind', 'message', "
                            "'priority', 'normal', 'payload', '{\"id\":\"item-' .. i .. '\"}') end "
                            "return redis.call('XLEN', KEYS[1])",
                            "1", "sb:q:general:normal", std::to_string(kItems)});
  REQUIRE(d.redis.xlen("sb:q:general:normal") == kItems);

  std::mutex mu;
  std::multiset<std::string> seen;
  std::atomic<int> errors{0};
  std::vector<std::thread> agents;
  for (int a = 0; a < kAgents; ++a) {
    agents.emplace_back([&, a] {
      HttpClient c(d.app->port());
      std::string token = "token-" + std::to_string(a);
      for (;;) {
        auto r = d.claim(token, "general", 0, &c);
        if (r.status == 204) {
          return;
        }
        if (r.status != 200) {
          ++errors;
          return;
        }
        auto id = std::string(parse(r.body).at("interaction").at("id").as_string());
        {
          std::lock_guard lock(mu);
          seen.insert(id);
        }
        if (d.act(token, id, "ack", "", &c).status != 200) {
          ++errors;
        }
      }
    });
  }
  for (auto& t : agents) {
    t.join();
  }
  CHECK(errors == 0);
  CHECK(seen.size() == kItems);
  std::set<std::string> distinct(seen.begin(), seen.end());
  CHECK(distinct.size() == kItems);                 // none twice
  CHECK(d.redis.xlen("sb:q:general:normal") == 0);  // none left: acknowledged and deleted
  CHECK(d.redis.cmd({"XPENDING", "sb:q:general:normal", "agents"}).starts_with("[0,"));
}
