// Claims and releases whose reply was lost: Redis ran the script, then the connection dropped
// before its answer reached the daemon, so the agent was answered 503 for something that
// happened. The agent's retry (what a 503 asks for) is answered as if the first reply had
// arrived. (Acks: Service::acked_before.)
#include <boost/asio/use_awaitable.hpp>

#include "agents/scripts.hpp"
#include "agents/service.hpp"
#include "core/log.hpp"

namespace sb::agents {
namespace asio = boost::asio;

namespace {
std::string claim_key(const std::string& agent, const std::string& queue) {
  return agent + '\n' + queue;
}
}  // namespace

void Service::claim_unsure(const std::string& agent, const std::string& queue) {
  unsure_claims_.put(claim_key(agent, queue), agent);
}

bool Service::take_unsure_claim(const std::string& agent, const std::string& queue) {
  if (unsure_claims_.by_id.empty()) {
    return false;  // the usual case: one test, no Redis call
  }
  return unsure_claims_.by_id.erase(claim_key(agent, queue)) > 0;
}

// The lost claim's entry is pending for the agent in Redis, and no claim record names it: an
// entry is known to be handed out to `agent` when its interaction is recorded as claimed, last by
// `agent`, with the delivery count Redis has now (a claim that timed out and was taken again by
// the lost claim counts one more delivery; a released one was recorded as queued). The events of
// claims answered before are committed first (Records::settled), so that an entry handed out a
// moment ago is not taken for the lost one.
asio::awaitable<ClaimResult> Service::lost_claim(const std::string& queue,
                                                 const std::string& agent) {
  ClaimResult none;
  auto held = co_await ops_.held_by(queue, agent);
  if (!held.error.empty()) {
    none.error = held.error;
    co_return none;
  }
  if (held.entries.empty()) {
    co_return none;  // the claim did not run (or found nothing): an ordinary claim follows
  }
  if (auto e = co_await records_.settled(); !e.empty()) {
    logger("agents")->warn("[agents:{}] {}'s claim after a lost reply: database: {}", queue, agent,
                           e);
    co_return none;  // not sure what is recorded: leave it to claim_timeout, as before
  }
  for (const auto& h : held.entries) {
    auto rec = records_.last_claim(h.interaction_id);
    if (!rec ||
        (rec->state == "claimed" && rec->actor == agent && rec->deliveries == h.deliveries)) {
      continue;  // handed out with an answer (or not one of ours)
    }
    auto c = co_await ops_.take_back(h, agent);
    if (!c.error.empty() || c.found) {
      if (c.found) {
        logger("agents")->info(
            "[agents:{}] {}'s claim reply was lost; interaction {} ({} {}) handed to its retry",
            queue, agent, c.interaction_id, c.stream, c.entry_id);
      }
      co_return c;
    }
  }
  co_return none;
}

// A release of `id` by `agent` that found it waiting in its queue (released, nobody claimed it
// since): its queue when a release of the same agent was answered 503 just before and the record
// still says this agent claimed it last, so that release did run; else "".
asio::awaitable<std::string> Service::released_before(const std::string& id,
                                                      const std::string& agent) {
  auto& unsure = unsure_releases_.by_id;
  auto it = unsure.find(id);
  if (it == unsure.end() || it->second != agent) {
    co_return std::string();
  }
  if (auto e = co_await records_.settled(); !e.empty()) {
    co_return std::string();
  }
  // Had that release not run, the item would still be held by this agent (answered 200 above),
  // or another agent claimed it after a timeout and released it (recorded as that agent's).
  auto rec = records_.last_claim(id);
  if (!rec || rec->state != "claimed" || rec->actor != agent) {
    co_return std::string();
  }
  unsure.erase(id);  // (`it` may be stale after the co_await)
  auto row = records_.find(id);
  if (!row || row->queue.empty()) {
    co_return std::string("unknown");
  }
  ops_.released_in(row->queue);
  co_return row->queue;
}

}  // namespace sb::agents
