#include "agents/send_loop.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.hpp"
#include "core/provider_wait.hpp"
#include "core/time.hpp"

namespace sb::agents {
namespace asio = boost::asio;

namespace {
// Writing a result again after the database refused it: from 100 ms, doubling, at most 5 s
// apart.
constexpr std::chrono::milliseconds kFirstRecordRetry{100};
constexpr std::chrono::milliseconds kMaxRecordRetry{5000};
// Meta's 24-hour messaging window: the longest a reply of its channels waits out a pause.
constexpr std::chrono::milliseconds kMetaWindow = std::chrono::hours(24);

bool is_meta_channel(std::string_view channel) {
  return channel == "messenger" || channel == "instagram" || channel == "whatsapp";
}
}  // namespace

struct SendLoop::Outcome {
  std::string id, channel, account, state, error, provider_id;
  std::int64_t attempts = 0, next = 0;
  bool maybe_sent = false;  // this attempt's outcome was unknown
  bool paused = false;      // waits for a pause of its whole account (account_paused)
  std::vector<std::string> thread_keys;
  int failures = 0;                 // writes of it that failed
  std::function<void()> committed;  // io thread, once written
};

SendLoop::SendLoop(asio::io_context& io, Records& records, const SenderRegistry& senders,
                   Metrics& metrics, SendPolicy policy)
    : io_(io),
      records_(records),
      senders_(senders),
      policy_(policy),
      replies_(metrics, "switchboard_replies_total", {"channel", "account", "outcome"}),
      timer_(io) {}

void SendLoop::start() {
  supervised_ =
      Supervised::spawn(io_.get_executor(), {"agents", "[agents]", "the send loop", "send_loop"},
                        [this] { return run(); });
}

void SendLoop::kick() {
  asio::post(io_, [this] { timer_.cancel(); });
}

void SendLoop::stop() {
  asio::post(io_, [this] {
    stopping_ = true;
    timer_.cancel();
    if (supervised_) {
      supervised_->stop();  // a restart's back-off ends now
    }
  });
}

namespace {
std::string account_key(const std::string& channel, const std::string& account) {
  return channel + '\n' + account;
}
}  // namespace

asio::awaitable<void> SendLoop::run() {
  while (!stopping_) {
    std::int64_t now = now_ms();
    std::size_t dispatched = 0;
    // The rows in flight are still pending and due: left out of the query, with the accounts
    // at their share, so that they cannot fill its LIMIT and hold up every other account.
    auto left_out = [this] {
      std::pair<std::vector<std::string>, std::vector<std::string>> out;
      for (const auto& [id, account] : in_flight_) {
        out.first.push_back(id);
      }
      for (const auto& [account, n] : per_account_) {
        if (n >= policy_.max_in_flight_per_account) {
          out.second.push_back(account);
        }
      }
      return out;
    };
    bool read_failed = false;
    try {
      cap_waits(now);
      if (in_flight_.size() < policy_.max_in_flight) {
        auto [busy, full] = left_out();
        for (auto& job : records_.due_sends(now, 64, busy, full)) {
          if (in_flight_.size() >= policy_.max_in_flight) {
            break;
          }
          auto n = per_account_.find(account_key(job.channel, job.account));
          if (n != per_account_.end() && n->second >= policy_.max_in_flight_per_account) {
            continue;  // filled by this pass
          }
          dispatch(std::move(job));
          ++dispatched;
        }
      }
      if (read_failing_since_) {
        auto s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                  *read_failing_since_);
        logger("agents")->info("[agents] reading due sends works again, after {} s", s.count());
        read_failing_since_.reset();
      }
    } catch (const std::exception& e) {
      // Once per episode: every kick (a new reply, a finished send) runs this pass again, and a
      // lasting failure (I/O, a lock held by another process) would otherwise write a line for
      // each of them.
      read_failed = true;
      if (!read_failing_since_) {
        read_failing_since_ = std::chrono::steady_clock::now();
        logger("agents")->error(
            "[agents] reading due sends failed: {}; replies wait, tried again every second "
            "(logged again when it works)",
            e.what());
      }
    }
    // Sleep until the next due job (a kick or a finished send wakes us earlier). Rows due now
    // that this pass left are taken at once by the next; a pass that took none waits a little
    // (the read failed, say), not spinning.
    auto wait = std::chrono::milliseconds(60'000);
    try {
      auto [busy, full] = left_out();
      if (auto next = records_.next_send_at(busy, full);
          next && in_flight_.size() < policy_.max_in_flight) {
        std::int64_t ms = *next - now_ms();
        if (ms <= 0 && dispatched == 0) {
          ms = 50;
        }
        wait = std::chrono::milliseconds(std::clamp<std::int64_t>(ms, 0, 60'000));
      }
    } catch (const std::exception&) {
      wait = std::chrono::milliseconds(1000);
    }
    if (read_failed) {
      wait = std::max(wait, std::chrono::milliseconds(1000));  // not every 50 ms while it fails
    }
    timer_.expires_after(wait);
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void SendLoop::done_with(const std::string& id) {
  auto it = in_flight_.find(id);
  if (it == in_flight_.end()) {
    return;
  }
  if (auto n = per_account_.find(it->second); n != per_account_.end() && --n->second == 0) {
    per_account_.erase(n);
  }
  released_.erase(id);
  in_flight_.erase(it);
  busy_.store(in_flight_.size());
}

namespace {
OutboundMessage message_of(const SendJob& job) {
  return OutboundMessage{
      job.interaction_id, job.channel, job.account,    job.conversation_id, job.text,
      job.parent_payload, "",          job.maybe_sent, job.uncertain_since, job.planned_id,
      job.earlier_ids};
}

// message_of for Sender::interrupted: the cut attempt may have posted it too, so the first
// uncertain start is the earlier unknown outcome's, else the cut attempt's.
OutboundMessage interrupted_message_of(const SendJob& job) {
  OutboundMessage m = message_of(job);
  if (m.uncertain_since_ms == 0) {
    m.uncertain_since_ms = job.started_at;
  }
  return m;
}

// Sender::interrupted's `why` for a marked attempt of `job`; `how` adds how it was learned.
std::string stopped_while_out(const SendJob& job, const std::string& how = "") {
  return "the daemon stopped while the request was out (attempt " +
         std::to_string(job.attempts + 1) + ", started " + format_ms(job.started_at) +
         (how.empty() ? "" : "; " + how) + ")";
}
}  // namespace

void SendLoop::cap_waits(std::int64_t now) {
  // next_attempt_at is wall-clock time, scheduled at most the longest back-off or provider wait
  // ahead (a pause of the whole account: max_account_wait). A row due later than that was
  // scheduled before the clock was set back: left alone it would wait the whole step (a day,
  // say) on top; it waits the longest wait from now instead.
  if (capping_) {
    return;
  }
  const std::int64_t longest = std::max(policy_.max_backoff, policy_.max_provider_wait).count();
  const std::int64_t longest_paused = std::max(longest, policy_.max_account_wait.count());
  if (!records_.sends_due_after(now + longest, now + longest_paused)) {
    return;
  }
  capping_ = true;
  records_.cap_send_waits(
      now + longest, now + longest_paused,
      [this, longest, longest_paused](const std::string& err, int n) {
        asio::post(io_, [this, longest, longest_paused, err, n] {
          capping_ = false;
          if (!err.empty()) {
            logger("agents")->error(
                "[agents] bringing forward replies due too far ahead failed: {}", err);
            return;
          }
          if (n > 0) {
            logger("agents")->warn(
                "[agents] {} pending replies were due more than {} s ahead ({} s for one waiting "
                "out "
                "its account's pause), later than any wait the send loop schedules (the clock was "
                "set "
                "back since): each is due that far ahead now",
                n, longest / 1000, longest_paused / 1000);
          }
          timer_.cancel();
        });
      });
}

void SendLoop::dispatch(SendJob job) {
  Sender* sender = senders_.find(job.channel, job.account);
  auto account = account_key(job.channel, job.account);
  if (in_flight_.emplace(job.interaction_id, account).second) {
    ++per_account_[account];
  }
  busy_.store(in_flight_.size());
  if (!sender) {
    // The sender went away (a channel removed from the config since the reply was accepted).
    finished(job, SendResult::failed("no sender is configured for " + job.channel + " account " +
                                     job.account));
    return;
  }
  if (!sender->marks_attempts()) {
    hand_over(*sender, std::move(job));
    return;
  }
  if (job.started_at != 0) {
    // Marked and never answered: its request was out when the daemon stopped (kill -9, or a
    // stop whose drain ended first; in flight now it would have been left out of the query).
    // Handed over blindly it would reach the customer twice.
    finished(job, sender->interrupted(interrupted_message_of(job), stopped_while_out(job)));
    return;
  }
  // The mark is committed before the request may go out: a crash after it finds the mark, one
  // before it finds the send as it was (nothing went out). It shares the writer's group commit.
  std::int64_t at = now_ms();
  records_.send_started(job.interaction_id, at, [this, job, at](const std::string& err) mutable {
    asio::post(io_, [this, job = std::move(job), at, err]() mutable {
      if (!err.empty()) {
        finished(job, SendResult::retry("marking the attempt as started failed (" + err +
                                        "); nothing was sent"));
        return;
      }
      job.started_at = at;
      Sender* sender = senders_.find(job.channel, job.account);
      if (!sender) {
        finished(job, SendResult::failed("no sender is configured for " + job.channel +
                                         " account " + job.account));
        return;
      }
      out_[job.interaction_id] = job;
      hand_over(*sender, std::move(job));
    });
  });
}

void SendLoop::hand_over(Sender& sender, SendJob job) {
  sender.send(message_of(job), [this, job](SendResult r) {
    asio::post(io_, [this, job, r = std::move(r)]() mutable {
      out_.erase(job.interaction_id);
      // Settled as unknown at the end of the stop's drain: an answer that says no more (its
      // own outcome unknown) leaves that. One that knows (sent, or refused so that nothing
      // was posted) is recorded over it.
      if (settled_.erase(job.interaction_id) != 0 && r.status != SendResult::Status::sent &&
          r.unknown) {
        return;
      }
      finished(job, std::move(r));
    });
  });
}

std::future<void> SendLoop::settle_interrupted(std::string why) {
  auto p = std::make_shared<std::promise<void>>();
  auto f = p->get_future();
  asio::post(io_, [this, p, why = std::move(why)] {
    auto left = std::make_shared<std::size_t>(1);  // one for this pass, released below
    auto one_done = [p, left] {
      if (--*left == 0) {
        p->set_value();
      }
    };
    for (auto& [id, job] : out_) {
      Sender* sender = senders_.find(job.channel, job.account);
      if (!sender) {
        continue;
      }
      settled_.insert(id);
      ++*left;
      finished(job, sender->interrupted(interrupted_message_of(job), stopped_while_out(job, why)),
               one_done);
    }
    out_.clear();
    one_done();
  });
  return f;
}

void SendLoop::end_old_pauses() {
  // Each sender once, with every (channel, account) it is registered for.
  std::map<Sender*, std::vector<std::pair<std::string, std::string>>> registered;
  senders_.each([&](const std::string& channel, const std::string& account, Sender& s) {
    registered[&s].emplace_back(channel, account);
  });
  for (auto& [sender, accounts] : registered) {
    if (!sender->end_pause_of_old_credentials()) {
      continue;
    }
    for (auto& [channel, account] : accounts) {
      // A row with its sender may have been answered with the old pause just before it ended,
      // its result not recorded yet: recorded at the old reset, after the update below, it
      // would wait for it again.
      for (const auto& [id, key] : in_flight_) {
        if (key == account_key(channel, account)) {
          released_.insert(id);
        }
      }
      records_.release_paused_sends(
          channel, account, now_ms(), [this, channel, account](const std::string& err, int n) {
            asio::post(io_, [this, channel, account, err, n] {
              if (!err.empty()) {
                // They keep their old time, as after a restart: the first of them, or a new
                // reply, asks the provider then.
                logger("agents")->error(
                    "[{}:{}] bringing forward the replies held by the account's ended pause "
                    "failed: {}; they wait for its old end",
                    channel, account, err);
                return;
              }
              if (n > 0) {
                logger("agents")->info(
                    "[{}:{}] the account's pause ended early: {} held replies are due now", channel,
                    account, n);
              }
              timer_.cancel();
            });
          });
    }
  }
}

std::chrono::milliseconds send_backoff(const SendPolicy& policy, std::int64_t attempts,
                                       bool throttled) {
  const auto first = throttled ? policy.throttle_first_backoff : policy.first_backoff;
  // A throttled wait stays within the provider waits (max_provider_wait), the longest wait
  // cap_waits leaves alone.
  const auto most = throttled ? std::min(policy.throttle_max_backoff, policy.max_provider_wait)
                              : policy.max_backoff;
  return std::min<std::chrono::milliseconds>(
      first * (1LL << std::clamp<std::int64_t>(attempts - 1, 0, 20)), most);
}

void SendLoop::finished(const SendJob& job, SendResult r, std::function<void()> committed) {
  // Meta takes a reply only within 24 hours of the customer's last message (its messaging
  // window: Messenger's standard messaging, WhatsApp's customer service window). A pause of its
  // app, Page or number (codes 4, 32, 130429) that goes on and on held the reply pending forever,
  // and with it the later replies of its conversation (they wait behind it): once the reply is 24
  // hours old, Meta would refuse it anyway, so it fails, saying why.
  if (r.status == SendResult::Status::retry && r.account_paused && is_meta_channel(job.channel) &&
      job.created_at > 0 && now_ms() - job.created_at >= kMetaWindow.count()) {
    r = SendResult::failed(r.error +
                           "; given up: the reply is 24 hours old, past Meta's messaging window");
  }
  // A pause of the whole account (X's 24-hour posting limit) is no failure of this reply: it
  // keeps its attempts for failures of its own, however many pauses it waits through.
  const bool paused = r.status == SendResult::Status::retry && r.account_paused;
  std::int64_t attempts = job.attempts + (paused ? 0 : 1);
  std::string state = "sent";
  std::int64_t next = 0;
  auto log = logger("agents");
  if (paused) {
    // The sender logged the pause once for the account (it may hold many replies); each reply
    // shows it on its send state, the provider's message and when the pause ends.
    auto wait = bound_provider_wait(
        r.retry_after, WaitBounds{kMinProviderWait, policy_.max_account_wait}, "agents",
        job.channel, job.account, "reply " + job.interaction_id + ": the provider's account limit");
    if (released_.count(job.interaction_id) != 0) {
      wait = kMinProviderWait;  // asks the sender again, which knows whether a pause holds now
    }
    state = "pending";
    next = now_ms() + wait.count();
    log->debug("[{}:{}] reply {} waits {} ms for the account's limit (attempts stay {}): {}",
               job.channel, job.account, job.interaction_id, wait.count(), attempts, r.error);
  } else if (r.status == SendResult::Status::retry && attempts < policy_.max_attempts) {
    std::chrono::milliseconds backoff = send_backoff(policy_, attempts, r.throttled);
    if (r.retry_after.count() > 0) {
      // The provider's wait wins over our back-off, within bounds: a reset days ahead (its
      // clock, its units) would hold the reply that long.
      backoff = bound_provider_wait(
          r.retry_after, WaitBounds{kMinProviderWait, policy_.max_provider_wait}, "agents",
          job.channel, job.account, "reply " + job.interaction_id + ": the provider");
    }
    state = "pending";
    next = now_ms() + backoff.count();
    log->warn("[{}:{}] reply {} attempt {} failed, retrying in {} ms: {}", job.channel, job.account,
              job.interaction_id, attempts, backoff.count(), r.error);
  } else if (r.status != SendResult::Status::sent) {
    state = "failed";
    log->error("[{}:{}] reply {} failed after {} attempts: {}", job.channel, job.account,
               job.interaction_id, attempts, r.error);
  } else if (!r.error.empty()) {  // sent, with a note: how the sender knows (X's duplicate)
    log->info("[{}:{}] reply {} sent{}: {}", job.channel, job.account, job.interaction_id,
              r.provider_id.empty() ? "" : " as " + r.provider_id, r.error);
  } else {
    log->info("[{}:{}] reply {} sent as {}", job.channel, job.account, job.interaction_id,
              r.provider_id);
  }
  auto o = std::make_shared<Outcome>();
  o->id = job.interaction_id;
  o->channel = job.channel;
  o->account = job.account;
  o->state = state;
  o->error = r.error;
  o->provider_id = r.provider_id;
  o->attempts = attempts;
  o->next = next;
  o->maybe_sent = r.unknown;
  o->paused = paused;
  o->thread_keys = std::move(r.thread_keys);
  o->committed = std::move(committed);
  record(std::move(o));
}

// The row leaves in_flight_ only once its result is committed: until then it is still pending
// and due, and the next pass would hand it to the sender again.
void SendLoop::record(std::shared_ptr<Outcome> o) {
  records_.send_result(
      o->id, o->state, o->attempts, o->next, o->error, o->provider_id, o->maybe_sent, o->paused,
      o->thread_keys, [this, o](const std::string& err) {
        asio::post(io_, [this, o, err] {
          if (err.empty()) {
            // Counted now, not when the sender answered: until the commit the row is still
            // pending, and a result that is never written (a crash) is sent again, not failed.
            replies_.inc({o->channel, o->account,
                          o->state == "pending" ? std::string_view("retried") : o->state});
            if (o->failures > 0) {
              logger("agents")->info(
                  "[{}:{}] the result of reply {} ({}) is recorded after {} "
                  "failed writes",
                  o->channel, o->account, o->id, o->state, o->failures);
            }
            done_with(o->id);
            timer_.cancel();
            if (o->committed) {
              o->committed();
            }
            return;
          }
          ++o->failures;
          std::chrono::milliseconds delay =
              kFirstRecordRetry * (1 << std::min(o->failures - 1, 10));
          delay = std::min(delay, kMaxRecordRetry);
          logger("agents")->error(
              "[{}:{}] recording the result of reply {} ({}) failed: {}; it is kept and written "
              "again in {} ms, and the reply is not sent again meanwhile",
              o->channel, o->account, o->id, o->state, err, delay.count());
          auto t = std::make_shared<asio::steady_timer>(io_, delay);
          t->async_wait([this, o, t](boost::system::error_code) { record(o); });
        });
      });
}

}  // namespace sb::agents
