// The claims an agent holds: POST /v1/agent/interactions/{id}/extend starts an item's
// claim_timeout again, and GET /v1/agent/claims lists what the agent holds. An agent that works
// an item longer than claim_timeout keeps it (it would otherwise be handed to the next claim,
// and its ack answer 409), and an agent app that restarted finds what it holds (nothing in the
// API said so: the items came back only after claim_timeout, to anyone).
#include <algorithm>
#include <boost/json.hpp>

#include "agents/service.hpp"
#include "core/time.hpp"

namespace sb::agents {
namespace json = boost::json;

namespace {
// About this many bytes of payloads in one list of claims (as a timeline page, kPageBytes).
constexpr std::size_t kClaimsBytes = 4 * 1024 * 1024;
}  // namespace

Service::Awaitable Service::extend(http::Request& r) {
  auto auth = agent_auth(r);
  if (!auth.agent) {
    co_return *auth.denied;
  }
  const auto& agent = *auth.agent;
  const std::string id = r.params["id"];
  // XCLAIM by the same consumer, idle 0 and JUSTID (scripts.cpp kFinish): the entry stays where
  // it is, its delivery count too; only the time since its claim starts again.
  auto f = co_await ops_.extend(id, agent.id, &agent.queues);
  if (!f.error.empty()) {
    co_return redis_unavailable("cannot extend: " + f.error);
  }
  if (f.status == Hold::foreign) {
    co_return item_forbidden(agent, "extend", id, f.queue);
  }
  if (f.status != Hold::held) {
    co_return not_held(id, agent, "extend", f);
  }
  const auto timeout = ops_.claim_timeout().count();
  co_return http::json(200, json::serialize(json::object{
                                {"id", id},
                                {"status", "held"},
                                {"claim_timeout_ms", timeout},
                                {"expires_at", format_ms(now_ms() + timeout)},
                            }));
}

Service::Awaitable Service::claims(http::Request& r) {
  auto auth = agent_auth(r);
  if (!auth.agent) {
    co_return *auth.denied;
  }
  const auto& agent = *auth.agent;
  const auto timeout = ops_.claim_timeout().count();
  json::array out;
  bool truncated = false;
  std::size_t bytes = 0;
  // XPENDING of the agent's consumer in each of its queues' streams (scripts.cpp kHeldBy): what
  // Redis says it holds, most urgent first, oldest first within a priority. An item released is
  // held by `_released:<agent>`, not by the agent, and is not listed.
  for (const auto& queue : agent.queues) {
    auto held = co_await ops_.held_by(queue, agent.id);
    if (!held.error.empty()) {
      co_return redis_unavailable("cannot list the claims: " + held.error);
    }
    truncated = truncated || held.truncated;
    for (const auto& e : held.entries) {
      json::object c{{"interaction_id", e.interaction_id},
                     {"queue", queue},
                     {"priority", e.stream.substr(e.stream.rfind(':') + 1)},
                     {"entry_id", e.entry_id},
                     {"deliveries", e.deliveries},
                     {"idle_ms", e.idle_ms},
                     // 0: its claim timed out; the next claim of the queue may hand it to
                     // someone else, an extend now keeps it.
                     {"expires_in_ms", std::max<std::int64_t>(0, timeout - e.idle_ms)}};
      // The interaction as stored now (an entry added by another producer may name none). Past
      // about kClaimsBytes of payloads the rest of the list comes without them, "truncated"
      // saying so (a payload holds up to a MiB of text, an email body; this runs on the io
      // thread, as the timeline, whose pages stop at the same size).
      if (bytes >= kClaimsBytes) {
        truncated = true;
        c["interaction"] = nullptr;
      } else if (auto payload = records_.payload(e.interaction_id)) {
        bytes += payload->size();
        json::error_code ec;
        auto v = json::parse(*payload, ec);
        c["interaction"] = ec ? json::value(*payload) : std::move(v);
      } else {
        c["interaction"] = nullptr;
      }
      out.push_back(std::move(c));
    }
  }
  json::object body{{"claims", std::move(out)}};
  if (truncated) {
    body["truncated"] = true;
  }
  co_return http::json(200, json::serialize(body));
}

}  // namespace sb::agents
