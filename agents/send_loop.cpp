#include "agents/send_loop.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.hpp"
#include "core/time.hpp"

namespace sb::agents {
namespace asio = boost::asio;

SendLoop::SendLoop(asio::io_context& io, Records& records, const SenderRegistry& senders,
                   SendPolicy policy)
    : io_(io), records_(records), senders_(senders), policy_(policy), timer_(io) {}

void SendLoop::start() {
  asio::co_spawn(io_, run(), [](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        logger("agents")->error("[agents] the send loop ended by an exception: {}", ex.what());
      }
    }
  });
}

void SendLoop::kick() {
  asio::post(io_, [this] { timer_.cancel(); });
}

void SendLoop::stop() {
  asio::post(io_, [this] {
    stopping_ = true;
    timer_.cancel();
  });
}

asio::awaitable<void> SendLoop::run() {
  while (!stopping_) {
    std::int64_t now = now_ms();
    try {
      for (auto& job : records_.due_sends(now, 64)) {
        if (!in_flight_.contains(job.interaction_id)) {
          dispatch(std::move(job));
        }
      }
    } catch (const std::exception& e) {
      logger("agents")->error("[agents] reading due sends failed: {}", e.what());
    }
    // Sleep until the next due job (a kick or a finished send wakes us earlier).
    auto wait = std::chrono::milliseconds(60'000);
    try {
      if (auto next = records_.next_send_at(); next && in_flight_.size() == 0) {
        wait = std::chrono::milliseconds(std::clamp<std::int64_t>(*next - now_ms(), 0, 60'000));
      } else if (next) {
        wait = std::chrono::milliseconds(std::clamp<std::int64_t>(*next - now_ms(), 50, 60'000));
      }
    } catch (const std::exception&) {
      wait = std::chrono::milliseconds(1000);
    }
    timer_.expires_after(wait);
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void SendLoop::dispatch(SendJob job) {
  Sender* sender = senders_.find(job.channel, job.account);
  in_flight_.insert(job.interaction_id);
  if (!sender) {
    // The sender went away (a channel removed from the config since the reply was accepted).
    finished(job, SendResult::failed("no sender is configured for " + job.channel + " account " +
                                     job.account));
    return;
  }
  OutboundMessage m{job.interaction_id, job.channel,        job.account, job.conversation_id,
                    job.text,           job.parent_payload, ""};
  sender->send(std::move(m), [this, job](SendResult r) {
    asio::post(io_, [this, job, r = std::move(r)]() mutable { finished(job, std::move(r)); });
  });
}

void SendLoop::finished(const SendJob& job, SendResult r) {
  std::int64_t attempts = job.attempts + 1;
  std::string state = "sent";
  std::int64_t next = 0;
  auto log = logger("agents");
  if (r.status == SendResult::Status::retry && attempts < policy_.max_attempts) {
    std::chrono::milliseconds backoff =
        policy_.first_backoff * (1LL << std::min<std::int64_t>(attempts - 1, 20));
    backoff = std::min(backoff, policy_.max_backoff);
    if (r.retry_after.count() > 0) {
      backoff = r.retry_after;
    }
    state = "pending";
    next = now_ms() + backoff.count();
    log->warn("[{}:{}] reply {} attempt {} failed, retrying in {} ms: {}", job.channel, job.account,
              job.interaction_id, attempts, backoff.count(), r.error);
  } else if (r.status != SendResult::Status::sent) {
    state = "failed";
    log->error("[{}:{}] reply {} failed after {} attempts: {}", job.channel, job.account,
               job.interaction_id, attempts, r.error);
  } else {
    log->info("[{}:{}] reply {} sent as {}", job.channel, job.account, job.interaction_id,
              r.provider_id);
  }
  records_.send_result(job.interaction_id, state, attempts, next, r.error, r.provider_id,
                       std::move(r.thread_keys), [this, id = job.interaction_id] {
                         asio::post(io_, [this, id] {
                           in_flight_.erase(id);
                           timer_.cancel();
                         });
                       });
}

}  // namespace sb::agents
