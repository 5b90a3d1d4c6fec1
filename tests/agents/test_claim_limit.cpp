// routing.max_waiting_claims_per_agent: a long-polling claim holds an HTTP connection that the
// connection cap may not close, so one agent's client that opened claims without end held every
// connection, and everyone else (provider webhooks too) got 503 too_many_connections.
#include <poll.h>

#include <doctest/doctest.h>

#include "channels/voice/signatures.hpp"
#include "core/time.hpp"
#include "tests/agents/fixture.hpp"
#include "tests/agents/raw_claim.hpp"

using namespace sb;
using namespace sb::test;

// Named per file: the test programs are unity builds.
namespace claim_limit_test {

int status_of(const std::string& response) {
  return response.size() > 12 ? std::atoi(response.c_str() + 9) : 0;
}

// The indexes of the claims with an answer waiting, after waiting up to `wait` for the first.
std::vector<std::size_t> answered(std::vector<std::unique_ptr<RawClaim>>& claims,
                                  std::chrono::milliseconds wait) {
  std::vector<pollfd> fds;
  for (const auto& c : claims) {
    fds.push_back({c->fd(), POLLIN, 0});
  }
  std::vector<std::size_t> out;
  if (::poll(fds.data(), fds.size(), static_cast<int>(wait.count())) > 0) {
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents != 0) {
        out.push_back(i);
      }
    }
  }
  return out;
}

}  // namespace claim_limit_test

using namespace claim_limit_test;

TEST_CASE(
    "one agent's waiting claims past routing.max_waiting_claims_per_agent get 429, and a "
    "signed webhook is still served at the connection cap") {
  AgentDaemon d([](config::Config& c) {
    c.server.max_connections = 4;
    c.routing.max_waiting_claims_per_agent = 3;
    c.channels.call_webhook.push_back({"pbx", "pbx-secret"});
  });
  // Four claims from alice, each on a connection of its own and willing to wait 10 s: together
  // the whole connection cap.
  std::vector<std::unique_ptr<RawClaim>> claims;
  for (int i = 0; i < 4; ++i) {
    claims.push_back(std::make_unique<RawClaim>(d.app->port(), "alice-token", "general", 10000));
  }
  // One of them (the last to find the queue empty) is answered at once.
  auto first = answered(claims, std::chrono::seconds(5));
  REQUIRE(first.size() == 1);
  auto refused = claims[first[0]]->answer();
  CAPTURE(refused);
  CHECK(status_of(refused) == 429);
  CHECK(refused.find("Retry-After: 1\r\n") != std::string::npos);
  auto body = parse(refused.substr(refused.find("\r\n\r\n") + 4));
  CHECK(body.at("error").at("code").as_string() == "too_many_waiting_claims");
  CHECK(body.at("error").at("message").as_string() ==
        "agent alice has 3 claims waiting for work already, the limit "
        "(routing.max_waiting_claims_per_agent); wait for one to be answered before starting "
        "another");
  // Kept open: an idle keep-alive connection now.
  auto idle = std::move(claims[first[0]]);
  claims.erase(claims.begin() + static_cast<std::ptrdiff_t>(first[0]));
  CHECK(answered(claims, std::chrono::milliseconds(300)).empty());  // the other three wait

  // At the cap, the refused claim's connection is idle and makes room: the webhook is served.
  // (Without the limit all four waited, and the webhook got 503, which Twilio does not retry.)
  const std::string call =
      R"({"event":"ringing","call_id":"limit-1","from":"+14155550100","to":"+14155550199",)"
      R"("direction":"inbound","occurred_at":"2026-01-02T03:04:05Z"})";
  HttpClient hook(d.app->port());
  auto r = hook.request("POST", "/webhooks/calls/pbx", call,
                        {{"Content-Type", "application/json"},
                         {"X-Switchboard-Signature",
                          voice::pbx_signature_header("pbx-secret", now_ms() / 1000, call)}});
  CHECK(r.status == 200);
  // The limit is per agent: bob may wait while alice's three do.
  HttpClient bob(d.app->port());
  CHECK(d.claim("bob-token", "general", 200, &bob).status == 204);

  // Work arrives: one of alice's waiting claims takes it, and alice may wait again.
  std::string id = d.ingest("limit-1", "for a waiting claim");
  auto taken = answered(claims, std::chrono::seconds(5));
  REQUIRE(taken.size() == 1);
  auto got = claims[taken[0]]->answer();
  CHECK(status_of(got) == 200);
  CHECK(got.find(id) != std::string::npos);
  HttpClient again(d.app->port());
  CHECK(d.claim("alice-token", "general", 200, &again).status == 204);
}

TEST_CASE("a waiting claim whose client hung up gives its place under the limit back") {
  AgentDaemon d([](config::Config& c) { c.routing.max_waiting_claims_per_agent = 2; });
  auto claim = [&] {
    std::vector<std::unique_ptr<RawClaim>> one;
    one.push_back(std::make_unique<RawClaim>(d.app->port(), "alice-token", "general", 10000));
    return one;
  };
  std::vector<std::unique_ptr<RawClaim>> waiting;
  for (int i = 0; i < 2; ++i) {
    waiting.push_back(std::make_unique<RawClaim>(d.app->port(), "alice-token", "general", 10000));
  }
  CHECK(answered(waiting, std::chrono::milliseconds(300)).empty());
  {
    auto third = claim();
    REQUIRE(answered(third, std::chrono::seconds(5)).size() == 1);
    CHECK(status_of(third[0]->answer()) == 429);
  }
  waiting.erase(waiting.begin());  // its client hangs up, 10 s before wait_ms would end it
  // The daemon notices the hang-up and counts the claim no longer: a new one may wait.
  bool waits = eventually(
      [&] {
        auto next = claim();
        return answered(next, std::chrono::milliseconds(300)).empty();
      },
      std::chrono::seconds(5));
  CHECK(waits);
}
