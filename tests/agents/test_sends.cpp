// The durable outbound queue of replies: a permanent failure is visible with the provider's
// error; a reply accepted before a restart is sent after it; Redis down is a clear 503.
#include <doctest/doctest.h>

#include <mutex>

#include "core/sender.hpp"
#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

namespace {
struct RejectingSender : Sender {
  void send(OutboundMessage, Done done) override {
    done(SendResult::failed("400 recipient blocked the account"));
  }
};
// Accepts the job and never answers: the process "crashes" before the provider replied.
struct HangingSender : Sender {
  std::mutex mu;
  std::vector<Done> held;
  void send(OutboundMessage, Done done) override {
    std::lock_guard lock(mu);
    held.push_back(std::move(done));
  }
};
struct CountingSender : Sender {
  std::atomic<int> sent{0};
  void send(OutboundMessage m, Done done) override {
    ++sent;
    done(SendResult::sent("p-" + m.id));
  }
};

std::string reply_to_first(AgentDaemon& d) {
  d.ingest("s-1", "please answer");
  d.drained();
  std::string id = claimed_id(d.claim("alice-token", "general"));
  auto r = d.act("alice-token", id, "reply", R"({"text":"answer"})");
  REQUIRE(r.status == 202);
  return std::string(parse(r.body).at("id").as_string());
}
}  // namespace

TEST_CASE("a permanently failed send is recorded as failed with the provider's error") {
  AgentDaemon d(nullptr, [](App& app) {
    app.senders().add("api", "web-form", std::make_shared<RejectingSender>());
  });
  auto out = reply_to_first(d);
  REQUIRE(eventually([&] {
    return d.rows(
               "SELECT count(*) FROM sends WHERE state='failed' AND attempts=1 AND "
               "last_error='400 recipient blocked the account'") == 1;
  }));
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE direction='outbound'") == 1);
}

TEST_CASE("a reply accepted before a restart is sent after it") {
  auto hanging = std::make_shared<HangingSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", hanging); });
  auto out = reply_to_first(d);
  REQUIRE(eventually([&] {
    std::lock_guard lock(hanging->mu);
    return hanging->held.size() == 1;
  }));
  d.http.reset();
  d.app->stop();
  d.app.reset();
  CHECK(d.rows("SELECT count(*) FROM sends WHERE state='pending'") == 1);

  auto counting = std::make_shared<CountingSender>();
  d.app = std::make_unique<App>(test_config(d.dir, d.redis.port()));
  d.app->senders().add("api", "web-form", counting);
  d.app->start();
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE state='sent' AND provider_id='p-" + out +
                  "'") == 1;
  }));
  CHECK(counting->sent == 1);
}

TEST_CASE("redis down: claims answer 503 naming redis, and back when it returns") {
  AgentDaemon d;
  d.redis.stop();
  auto r = d.claim("alice-token", "general");
  CHECK(r.status == 503);
  CHECK(error_message(r).find("redis") != std::string::npos);
  CHECK(d.get("alice-token", "/v1/queues").status == 503);
  d.redis.start();
  REQUIRE(eventually([&] { return d.claim("alice-token", "general").status == 204; }));
}
