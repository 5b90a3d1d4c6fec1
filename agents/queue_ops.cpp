#include "agents/queue_ops.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "agents/scripts.hpp"
#include "routing/rules.hpp"

namespace sb::agents {
namespace asio = boost::asio;

namespace {

constexpr const char* kTransferMarkerTtl = "3600";

std::string field(const RValue& fields, std::string_view name) {
  for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
    if (fields.elements[i].str == name) {
      return fields.elements[i + 1].str;
    }
  }
  return {};
}

FinishResult to_finish(const RValue& v) {
  FinishResult r;
  if (v.is_error() || v.type != RValue::Type::array) {
    r.error = v.is_error() ? v.str : "unexpected reply from redis";
    return r;
  }
  switch (v.int_at(0)) {
    case 1:
      r.status = Hold::held;
      break;
    case 2:
      r.status = Hold::repeated;
      r.new_entry_id = v.str_at(1);
      break;
    case -1:
      r.status = Hold::other;
      r.holder = v.str_at(1);
      break;
    case -2:
      r.status = Hold::refused;
      r.refusal = v.str_at(1);
      break;
    case -3:
      r.status = Hold::foreign;
      r.queue = v.str_at(1);
      break;
    case -4:
      r.status = Hold::gone;
      r.stream = v.str_at(1);
      r.refusal = v.str_at(2);
      break;
    default:
      r.status = Hold::not_held;
  }
  return r;
}

// One consumer's result of the claim script (or of take_back): {found, stream, entry id,
// deliveries, fields[, 1 for a new entry]}.
ClaimResult to_claim(const RValue& e) {
  ClaimResult r;
  r.found = e.int_at(0) == 1;
  if (r.found) {
    r.stream = e.str_at(1);
    r.entry_id = e.str_at(2);
    r.deliveries = e.int_at(3);
    r.interaction_id = field(e.at(4), "interaction_id");
    r.priority = field(e.at(4), "priority");
    r.payload = field(e.at(4), "payload");
    r.kind = field(e.at(4), "kind");
    r.fresh = e.int_at(5) == 1;
  }
  return r;
}

// The dead letters and the dead-letter key's refusal of a claim script's reply.
void take_dead(const RValue& v, ClaimResult& r) {
  const auto& dead = v.at(1).elements;
  for (std::size_t i = 0; i + 1 < dead.size(); i += 2) {
    // "<queue> <entry id>", or "<queue>" from a version that did not keep the entry's id (queue
    // names have no spaces).
    const std::string& v = dead[i + 1].str;
    auto sp = v.find(' ');
    r.dead.push_back(
        {dead[i].str, v.substr(0, sp), sp == std::string::npos ? std::string() : v.substr(sp + 1)});
  }
  r.dead_refused = v.str_at(2);
}

// The scripts' form of a QueueList: " a b " (found with a plain substring search of " q "), or
// "*" for any queue.
std::string queues_arg(QueueList queues) {
  if (queues == nullptr) {
    return "*";
  }
  std::string out = " ";
  for (const auto& q : *queues) {
    out += q + " ";
  }
  return out;
}

}  // namespace

std::int64_t entry_ms(const std::string& id) {
  try {
    return std::stoll(id.substr(0, id.find('-')));
  } catch (const std::exception&) {
    return -1;
  }
}

QueueOps::QueueOps(RedisExec& redis, std::string prefix, std::chrono::milliseconds claim_timeout,
                   int max_deliveries)
    : redis_(redis),
      prefix_(std::move(prefix)),
      claim_timeout_(claim_timeout),
      max_deliveries_(max_deliveries),
      sweep_every_(std::clamp(claim_timeout / 10, std::chrono::milliseconds(10),
                              std::chrono::milliseconds(100))) {}

asio::awaitable<ClaimResult> QueueOps::claim(const std::string& queue, const std::string& agent) {
  // Not a coroutine: async_initiate with use_awaitable already returns the awaitable. The claim
  // joins the others of this turn of the io loop for the same queue; the first one schedules
  // the script run that serves them all (send_claims).
  return asio::async_initiate<decltype(asio::use_awaitable), void(ClaimResult)>(
      [this](auto handler, std::string queue, std::string agent) {
        auto ex = asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        auto& batch = claims_[queue];
        batch.push_back({std::move(agent), [h, ex](ClaimResult r) {
                           asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
                         }});
        if (batch.size() == 1) {
          asio::post(redis_.io(), [this, queue] { send_claims(queue); });
        }
      },
      asio::use_awaitable, queue, agent);
}

void QueueOps::send_claims(const std::string& queue) {
  auto batch = std::make_shared<std::vector<PendingClaim>>();
  batch->swap(claims_[queue]);
  if (batch->empty()) {
    return;
  }
  auto keys = claim_keys(queue);
  auto now = std::chrono::steady_clock::now();
  auto& next = next_sweep_[queue];
  bool sweep = now >= next;
  if (sweep) {
    next = now + sweep_every_;
    last_sweep_[queue] = now;
  }
  auto args = claim_args(sweep, queue);
  for (const auto& c : *batch) {
    args.push_back(c.agent);
  }
  redis_.eval(kClaim, std::move(keys), std::move(args), [this, batch, queue](RValue v) {
    if (v.is_error() || v.type != RValue::Type::array) {
      for (auto& c : *batch) {
        ClaimResult r;
        r.error = v.is_error() ? v.str : "unexpected reply from redis";
        c.done(std::move(r));
      }
      return;
    }
    const auto& results = v.at(0);
    for (std::size_t j = 0; j < batch->size(); ++j) {
      ClaimResult r = to_claim(results.at(j));
      if (j == 0) {  // reported (logged, recorded) once
        take_dead(v, r);
      }
      (*batch)[j].done(std::move(r));
    }
    repark_reply(queue, v.at(4));
    if (v.int_at(3) == 1) {
      // A claim passed over an item its agent released: it waits for another agent's claim,
      // which must look for it (not in sweep_every_), as right after the release.
      released_in(queue);
    }
  });
}

std::vector<std::string> QueueOps::claim_args(bool sweep, const std::string& queue) const {
  return {std::to_string(claim_timeout_.count()),
          std::to_string(max_deliveries_),
          sweep ? "1" : "0",
          queue,
          std::to_string(release_idle().count()),
          kReleasedConsumer,
          std::to_string(kReleasedIdleMinMs),
          repark_arg(queue)};
}

std::vector<std::string> QueueOps::claim_keys(const std::string& queue) const {
  std::vector<std::string> keys;
  for (const char* p : kPriorities) {
    keys.push_back(stream(queue, p));
  }
  keys.push_back(dead_stream(queue));
  keys.push_back(prefix_ + ":held");
  keys.push_back(prefix_ + ":dead-unrecorded");
  return keys;
}

asio::awaitable<ClaimResult> QueueOps::sweep(const std::string& queue) {
  ClaimResult r;
  auto now = std::chrono::steady_clock::now();
  // next_sweep_ is the claims' own: a pass must not make a claim skip its look for timed-out
  // and released entries, which it does not take.
  auto& last = last_sweep_[queue];
  if (now - last < sweep_every_) {
    co_return r;  // a claim's sweep did it lately
  }
  last = now;
  RValue v = co_await async_eval(redis_, kClaim, claim_keys(queue), claim_args(true, queue),
                                 asio::use_awaitable);
  if (v.is_error() || v.type != RValue::Type::array) {
    r.error = v.is_error() ? v.str : "unexpected reply from redis";
    co_return r;
  }
  repark_reply(queue, v.at(4));
  take_dead(v, r);
  co_return r;
}

asio::awaitable<FinishResult> QueueOps::finish(const std::string& interaction_id,
                                               const std::string& agent, QueueList queues,
                                               const char* mode) {
  // Batched per turn of the io loop, as claims are (send_finishes).
  return asio::async_initiate<decltype(asio::use_awaitable), void(FinishResult)>(
      [this](auto handler, std::string id, std::string agent, std::string mode,
             std::string queues) {
        auto ex = asio::get_associated_executor(handler);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        finishes_.push_back({std::move(id), std::move(agent), std::move(mode), std::move(queues),
                             [h, ex](FinishResult r) {
                               asio::post(ex,
                                          [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
                             }});
        if (finishes_.size() == 1) {
          asio::post(redis_.io(), [this] { send_finishes(); });
        }
      },
      asio::use_awaitable, interaction_id, agent, std::string(mode), queues_arg(queues));
}

void QueueOps::send_finishes() {
  auto batch = std::make_shared<std::vector<PendingFinish>>();
  batch->swap(finishes_);
  if (batch->empty()) {
    return;
  }
  std::vector<std::string> args{std::to_string(release_idle().count()), kReleasedConsumer,
                                prefix_ + ":q:"};
  for (const auto& f : *batch) {
    args.insert(args.end(), {f.id, f.agent, f.mode, f.queues});
  }
  redis_.eval(kFinish, {prefix_ + ":held"}, std::move(args), [batch](RValue v) {
    for (std::size_t j = 0; j < batch->size(); ++j) {
      const RValue& one = v.type == RValue::Type::array ? v.at(j) : v;
      auto r = to_finish(one);
      if (r.status == Hold::held) {
        r.stream = one.str_at(1);
        r.entry_id = one.str_at(2);
      }
      (*batch)[j].done(std::move(r));
    }
  });
}

std::string QueueOps::queue_of_stream(const std::string& stream) const {
  auto head = prefix_ + ":q:";
  if (!stream.starts_with(head)) {
    return {};
  }
  auto rest = stream.substr(head.size());
  auto colon = rest.rfind(':');
  return colon == std::string::npos ? rest : rest.substr(0, colon);
}

std::string QueueOps::queue_of_dead_stream(const std::string& stream) const {
  auto head = prefix_ + ":dead:";
  return stream.starts_with(head) ? stream.substr(head.size()) : std::string();
}

asio::awaitable<FinishResult> QueueOps::ack(const std::string& id, const std::string& agent,
                                            QueueList queues) {
  co_return co_await finish(id, agent, queues, "ack");
}

asio::awaitable<FinishResult> QueueOps::release(const std::string& id, const std::string& agent,
                                                QueueList queues) {
  co_return co_await park(id, agent, queues, "release");
}

asio::awaitable<FinishResult> QueueOps::give_back(const std::string& id, const std::string& agent) {
  co_return co_await park(id, agent, nullptr, "give_back");
}

asio::awaitable<FinishResult> QueueOps::park(const std::string& id, const std::string& agent,
                                             QueueList queues, const char* mode) {
  auto r = co_await finish(id, agent, queues, mode);
  if (r.status == Hold::held) {
    // The next claim from that queue (another agent's) takes it at once.
    if (auto queue = queue_of_stream(r.stream); !queue.empty()) {
      released_in(queue);
    }
  }
  co_return r;
}

asio::awaitable<HeldList> QueueOps::held_by(const std::string& queue, const std::string& agent) {
  std::vector<std::string> keys;
  for (const char* p : kPriorities) {
    keys.push_back(stream(queue, p));
  }
  // An agent holds a handful at a time; more than this per priority is not a lost claim's doing.
  // One more is asked for, to tell a priority cut at the limit from one that holds exactly it.
  std::vector<std::string> args{agent, std::to_string(kHeldListed + 1)};
  RValue v =
      co_await async_eval(redis_, kHeldBy, std::move(keys), std::move(args), asio::use_awaitable);
  HeldList out;
  if (v.is_error() || v.type != RValue::Type::array) {
    out.error = v.is_error() ? v.str : "unexpected reply from redis";
    co_return out;
  }
  std::size_t in_stream = 0;
  for (const auto& e : v.elements) {
    if (!out.entries.empty() && out.entries.back().stream != e.str_at(0)) {
      in_stream = 0;
    }
    if (++in_stream > kHeldListed) {
      out.truncated = true;
      continue;
    }
    out.entries.push_back({e.str_at(0), e.str_at(1), e.str_at(3), e.int_at(2), e.int_at(4)});
  }
  co_return out;
}

asio::awaitable<ClaimResult> QueueOps::take_back(const HeldEntry& e, const std::string& agent) {
  std::vector<std::string> keys{e.stream, prefix_ + ":held"};
  std::vector<std::string> args{e.entry_id, agent, std::to_string(e.deliveries),
                                std::to_string(max_deliveries_)};
  RValue v =
      co_await async_eval(redis_, kTakeBack, std::move(keys), std::move(args), asio::use_awaitable);
  if (v.is_error() || v.type != RValue::Type::array) {
    ClaimResult r;
    r.error = v.is_error() ? v.str : "unexpected reply from redis";
    co_return r;
  }
  co_return to_claim(v);
}

asio::awaitable<FinishResult> QueueOps::extend(const std::string& id, const std::string& agent,
                                               QueueList queues) {
  co_return co_await finish(id, agent, queues, "extend");
}

asio::awaitable<FinishResult> QueueOps::holds(const std::string& id, const std::string& agent,
                                              QueueList queues) {
  co_return co_await finish(id, agent, queues, "check");
}

asio::awaitable<FinishResult> QueueOps::transfer(const std::string& id, const std::string& agent,
                                                 QueueList queues, const std::string& queue,
                                                 const std::string& priority,
                                                 const std::string& payload, std::int64_t at,
                                                 const DeadLetter* dead,
                                                 const EntryOrigin* origin) {
  auto target = stream(queue, priority);
  std::vector<std::string> keys{prefix_ + ":held", target, prefix_ + ":transferred:" + id,
                                prefix_ + ":transfer-unrecorded"};
  if (dead != nullptr) {
    keys.push_back(dead_stream(dead->queue));
    keys.push_back(prefix_ + ":dead-unrecorded");
  }
  std::vector<std::string> args{id,
                                agent,
                                priority,
                                payload,
                                agent + " " + target,
                                kTransferMarkerTtl,
                                prefix_ + ":q:",
                                queues_arg(queues),
                                queue,
                                std::to_string(at),
                                dead != nullptr ? dead->entry_id : std::string()};
  if (dead != nullptr && origin != nullptr) {
    args.insert(args.end(),
                {origin->conversation_id, origin->customer_id, origin->channel, origin->kind});
  }
  RValue v =
      co_await async_eval(redis_, kTransfer, std::move(keys), std::move(args), asio::use_awaitable);
  auto r = to_finish(v);
  if (r.status == Hold::held) {
    r.new_entry_id = v.str_at(1);
    r.stream = v.str_at(2);
    r.note = v.str_at(3);
    r.earlier_note = v.str_at(4);
    r.rebuilt = v.str_at(5) == "rebuilt";
  } else if (r.status == Hold::repeated) {
    r.note = v.str_at(2);
  }
  co_return r;
}

asio::awaitable<UnrecordedTransfers> QueueOps::unrecorded_transfers() {
  // (GCC 12: a braced list inside a co_await expression does not compile; name them.)
  std::vector<std::string> keys{prefix_ + ":transfer-unrecorded"}, args;
  RValue v = co_await async_eval(redis_, kUnrecordedTransfers, std::move(keys), std::move(args),
                                 asio::use_awaitable);
  UnrecordedTransfers out;
  if (v.is_error() || v.type != RValue::Type::array) {
    out.error = v.is_error() ? v.str : "unexpected reply from redis";
    co_return out;
  }
  for (std::size_t i = 0; i + 1 < v.elements.size(); i += 2) {
    out.notes.emplace_back(v.elements[i].str, v.elements[i + 1].str);
  }
  co_return out;
}

void QueueOps::forget_transfers(const std::vector<std::pair<std::string, std::string>>& notes) {
  std::vector<std::string> args;
  for (const auto& [id, note] : notes) {
    args.push_back(id);
    args.push_back(note);
  }
  // Fire and forget: should this fail, the next periodic pass finds the notes again, and their
  // record is skipped (Records::transferred knows the new entry id).
  redis_.eval(kForgetTransfers, {prefix_ + ":transfer-unrecorded"}, std::move(args), [](RValue) {});
}

void QueueOps::forget_dead(const std::vector<DeadLetter>& dead) {
  std::vector<std::string> ids;
  for (const auto& d : dead) {
    ids.push_back(d.interaction_id);
  }
  // Fire and forget: should this fail, the next sweep reports them again, and recording a dead
  // letter twice changes nothing (Records::dead_lettered).
  redis_.eval(kForgetDead, {prefix_ + ":dead-unrecorded"}, std::move(ids), [](RValue) {});
}

std::vector<std::string> QueueOps::stat_keys(const std::string& queue) const {
  std::vector<std::string> keys;
  for (const char* p : kPriorities) {
    keys.push_back(stream(queue, p));
  }
  keys.push_back(dead_stream(queue));
  return keys;
}

namespace {
QueueStats to_stats(const RValue& v) {
  QueueStats s;
  if (v.is_error() || v.type != RValue::Type::array) {
    s.error = v.is_error() ? v.str : "unexpected reply from redis";
    return s;
  }
  for (std::size_t i = 0; i < 4; ++i) {
    const auto& p = v.at(i);
    s.by_priority[i].waiting = p.int_at(0);
    s.by_priority[i].claimed = p.int_at(1);
    s.by_priority[i].oldest_ms = p.str_at(2).empty() ? -1 : entry_ms(p.str_at(2));
    s.by_priority[i].exact = p.int_at(3) != 0;
  }
  s.dead = v.int_at(4);
  return s;
}
}  // namespace

asio::awaitable<QueueStats> QueueOps::stats(const std::string& queue) {
  std::vector<std::string> args{std::to_string(claim_timeout_.count()),
                                std::to_string(kStatsCountLimit),
                                std::to_string(max_deliveries_),
                                std::to_string(release_idle().count()),
                                kReleasedConsumer,
                                std::to_string(kReleasedIdleMinMs),
                                repark_arg(queue)};
  auto keys = stat_keys(queue);
  RValue v =
      co_await async_eval(redis_, kStats, std::move(keys), std::move(args), asio::use_awaitable);
  if (!v.is_error() && v.type == RValue::Type::array) {
    repark_reply(queue, v.at(5));
  }
  co_return to_stats(v);
}

}  // namespace sb::agents
