// POST /v1/agent/claim of SPEC section 3 "Agents": the most urgent, oldest item of a queue,
// long-polling up to wait_ms; a reload (SIGHUP) applies to claims that are waiting.
#include <boost/json.hpp>

#include "agents/service.hpp"
#include "core/log.hpp"
#include "core/stalls.hpp"
#include "core/time.hpp"

namespace sb::agents {
namespace json = boost::json;

namespace {

constexpr std::int64_t kMaxWaitMs = 30'000;

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    out += (out.empty() ? "" : ", ") + s;
  }
  return out;
}

// A claim that waited, then found a new entry (never delivered: not a redelivery or a released
// item, whose ids are older than their return) on its periodic re-check rather than by a
// wake-up: the item sat in the stream while an agent waited for work. The relay wakes waiting
// claims for every entry it adds, so this points at a wake-up lost, or at an entry added by
// another producer (which wakes nobody). Its age comes from the entry id (Redis's clock, so a
// Redis host whose clock is far off would be counted too).
void note_missed_wakeup(const std::string& queue, const std::string& agent_id,
                        const ClaimResult& c) {
  std::int64_t added_ms = entry_ms(c.entry_id);
  std::int64_t sat = now_ms() - added_ms;
  if (added_ms > 0 && sat > kStallThreshold.count()) {
    note_stall(Stall::claim,
               fmt::format("agent {} waited for work in queue {} while interaction {} sat {} ms "
                           "in {}; the claim's re-check found it, no wake-up did (entries added "
                           "by another producer than the relay wake nobody)",
                           agent_id, queue, c.interaction_id, sat, c.stream));
  }
}

}  // namespace

// A call is queued once, when it ends, and the relay copies its payload into the stream entry
// then; what comes after only updates its row: Twilio's RecordingStatusCallback and Telnyx's
// call.recording.saved normally follow the final status, a PBX may send `missed` and then
// `voicemail` with the recording, a machine-detection result may follow the hangup. So the claim
// of a call answers the row's payload as it is now (one indexed read on this thread's read
// connection; other kinds keep the entry's copy: their rows do not change once queued), with the
// queue and priority of the stream it was claimed from: a transfer moves the entry at once, and
// its record reaches the row a moment later. The entry's copy when the row cannot be read.
std::string Service::current_call(ClaimResult& c, const std::string& queue) {
  std::optional<std::string> row;
  try {
    row = records_.payload(c.interaction_id);
  } catch (const std::exception& e) {
    logger("agents")->warn(
        "[agents:{}] call {}: its stored payload cannot be read ({}); the claim answers the "
        "stream entry's copy, made when it was queued",
        queue, c.interaction_id, e.what());
  }
  json::error_code ec;
  json::value v = row ? json::parse(*row, ec) : json::value();
  if (!row || ec || !v.is_object()) {
    return std::move(c.payload);
  }
  v.as_object()["queue"] = queue;
  v.as_object()["priority"] = c.priority;
  return json::serialize(v);
}

// A claim's place among its agent's waiting claims (waiting_claims_), from its first wait until
// it is answered.
struct Service::WaitingClaim {
  Service& service;
  std::string agent_id;  // empty: not counted (yet)
  ~WaitingClaim() {
    if (agent_id.empty()) {
      return;
    }
    auto it = service.waiting_claims_.find(agent_id);
    if (it != service.waiting_claims_.end() && --it->second <= 0) {
      service.waiting_claims_.erase(it);
    }
  }
  // False when the agent has its limit of claims waiting already.
  bool enter(const std::string& agent) {
    int& n = service.waiting_claims_[agent];
    if (n >= service.max_waiting_claims_) {
      return false;
    }
    ++n;
    agent_id = agent;
    return true;
  }
};

http::Response Service::claim_forbidden(const config::Agent& agent, const std::string& queue) {
  return http::error(403, "forbidden",
                     "agent " + agent.id + " may not claim from queue \"" + queue +
                         "\"; its queues are: " + join(agent.queues));
}

http::Response Service::item_forbidden(const config::Agent& agent, const char* verb,
                                       const std::string& id, const std::string& queue) {
  return http::error(403, "forbidden",
                     "agent " + agent.id + " may not " + verb + " interaction " + id +
                         " in queue \"" + queue + "\"; its queues are: " + join(agent.queues));
}

void Service::dead_letters_refused(const std::string& queue, const std::string& error) {
  auto now = std::chrono::steady_clock::now();
  auto [it, first] = dead_refusal_logged_.try_emplace(queue, now);
  if (!first && now - it->second < std::chrono::minutes(1)) {
    return;
  }
  it->second = now;
  logger("agents")->error(
      "[agents:{}] the dead-letter stream {} refuses entries ({}): items of queue {} delivered "
      "max_deliveries times stay pending for their last holder, not handed out again, until the "
      "key is a stream again (DEL it)",
      queue, ops_.dead_stream(queue), error, queue);
}

Service::Awaitable Service::claim(http::Request& r) {
  auto call = agent_call(r);
  if (call.denied) {
    co_return *call.denied;
  }
  // Re-read after a reload (recheck): a waiting claim serves the agents configured now.
  AgentPtr agent = call.agent;
  std::uint64_t epoch = call.epoch;
  auto* body = &call.body;
  auto* qv = body->if_contains("queue");
  if (!qv || !qv->is_string() || qv->as_string().empty()) {
    co_return http::error(400, "invalid_field", "field \"queue\" (a queue name) is required");
  }
  std::string queue(qv->as_string());
  std::int64_t wait_ms = 0;
  if (auto* w = body->if_contains("wait_ms"); w && !w->is_null()) {
    if (!w->is_int64() && !w->is_uint64()) {
      co_return http::error(400, "invalid_field", "field \"wait_ms\" must be an integer (ms)");
    }
    wait_ms = w->is_int64() ? w->as_int64() : kMaxWaitMs;
    if (wait_ms < 0) {
      co_return http::error(400, "invalid_field", "field \"wait_ms\" must not be negative");
    }
    wait_ms = std::min(wait_ms, kMaxWaitMs);  // SPEC: max 30000
  }
  if (std::find(agent->queues.begin(), agent->queues.end(), queue) == agent->queues.end()) {
    co_return claim_forbidden(*agent, queue);
  }
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  bool woken = false, waited = false;
  WaitingClaim counted{*this, {}};
  for (;;) {
    if (waited && r.peer_gone && r.peer_gone()) {
      // The agent's client hung up while it waited (its own timeout was shorter than wait_ms):
      // nobody would read an item claimed now, and it would sit held until claim_timeout. A
      // wake-up this claim took goes on to the next waiter. (Checked after a wait only: the
      // syscall stays off the path of claims answered at once.)
      if (woken) {
        waiters_.notify(queue);
      }
      co_return http::Response{204, "application/json", "", {}};
    }
    if (auto denied = recheck(r, agent, epoch, queue)) {
      co_return *denied;  // a reload removed the agent, changed its token, or took the queue
    }
    auto generation = waiters_.generation(queue);
    const std::string agent_id = agent->id;
    ClaimResult c;
    if (take_unsure_claim(agent_id, queue)) {
      c = co_await lost_claim(queue, agent_id);  // what an earlier claim's lost reply held
    }
    if (c.error.empty() && !c.found) {
      c = co_await ops_.claim(queue, agent_id);
    }
    if (!c.error.empty()) {
      // Redis may have run the claim before its reply was lost: the entry it took is held by
      // this agent, and its next claim from this queue is handed that entry (lost_claim). Should
      // the agent not come back, it returns to the queue after claim_timeout, as any unfinished
      // one does.
      claim_unsure(agent_id, queue);
      auto unavailable = http::error(
          503, "redis_unavailable",
          "cannot claim: " + c.error +
              "; nothing was handed out, try again (an item this claim may have taken goes to "
              "your next claim from this queue)");
      unavailable.headers.emplace_back("Retry-After", "1");
      co_return unavailable;
    }
    report_dead(queue, c);
    if (c.found) {
      // A reload that came while the claim ran: the item is not handed to an agent that is no
      // longer allowed to take it, but goes back to its queue at once (a release does not
      // count as a failed delivery).
      auto denied = recheck(r, agent, epoch, queue);
      if (denied || agent->id != agent_id) {
        // (Any queue: the reload may have taken this one from the agent.)
        auto back = co_await ops_.give_back(c.interaction_id, agent_id);
        if (!back.error.empty()) {
          logger("agents")->warn(
              "[agents:{}] interaction {} claimed by {} across a reload, not handed out; "
              "giving it back failed ({}): it returns after claim_timeout",
              queue, c.interaction_id, agent_id, back.error);
        }
        waiters_.notify(queue);
        if (denied) {
          co_return *denied;
        }
        continue;  // the same token now names another agent id: claim for that one
      }
      if (waited && !woken && c.fresh) {
        note_missed_wakeup(queue, agent_id, c);
      }
      if (woken) {
        // Pass the wake-up on to two more: a relay batch of n items reaches n waiting agents
        // in about log2(n) rounds instead of n.
        waiters_.notify(queue);
        waiters_.notify(queue);
      }
      json::object d{{"queue", queue}, {"priority", c.priority}, {"deliveries", c.deliveries}};
      records_.event(c.interaction_id, agent_id, "claim", json::serialize(d), "claimed");
      json::object delivery{
          {"stream", c.stream}, {"entry_id", c.entry_id}, {"deliveries", c.deliveries}};
      // The payload is the relay's interaction JSON; an entry added by another producer may
      // carry something else, which is passed on as a string rather than breaking the answer.
      std::string payload = c.kind == "call" ? current_call(c, queue) : std::move(c.payload);
      std::string interaction = payload.starts_with('{') && payload.ends_with('}')
                                    ? payload
                                    : json::serialize(json::value(payload));
      co_return http::json(200, "{\"interaction\":" + interaction +
                                    ",\"delivery\":" + json::serialize(delivery) + "}");
    }
    auto now = std::chrono::steady_clock::now();
    if (stopping_ || now >= until) {
      co_return http::Response{204, "application/json", "", {}};
    }
    if (generation != waiters_.generation(queue)) {
      continue;  // work arrived while the claim ran
    }
    // Counted from its first wait: a claim answered at once holds its connection no longer than
    // any request. (A claim that found nothing and is refused here took nothing either.)
    if (counted.agent_id.empty() && !counted.enter(agent_id)) {
      auto busy = http::error(
          429, "too_many_waiting_claims",
          "agent " + agent_id + " has " + std::to_string(max_waiting_claims_) +
              " claims waiting for work already, the limit "
              "(routing.max_waiting_claims_per_agent); wait for one to be answered before "
              "starting another");
      busy.headers.emplace_back("Retry-After", "1");
      co_return busy;
    }
    woken = co_await waiters_.wait(queue, std::min(until, now + tick_), agent_id);
    waited = true;
  }
}

}  // namespace sb::agents
