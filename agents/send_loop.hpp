#pragma once
// The durable outbound queue of agent replies: a loop on the io thread hands due `sends` rows
// to the Sender registered for their (channel, account), records each result through the
// writer, and retries `retry` results with exponential back-off (the provider's retry_after
// when given) up to a maximum number of attempts. Rows still pending after a restart are
// picked up again on start; a send interrupted by a crash is handed over again (senders use
// the outbound id as an idempotency key where the provider has one), but for a sender without
// one (Sender::marks_attempts): its attempts are marked in a commit before they go out, and a
// marked one found pending is settled as an unknown outcome (Sender::interrupted).
//
// Replies of one conversation reach the customer in the order they were stored: one that waits
// for a retry (a throttle, a pause of its account) or whose marked attempt is out holds the
// later ones of its conversation until its result is recorded (Records::due_sends).
//
// next_attempt_at is wall-clock time: a row due later than the longest wait the loop schedules
// (the clock set back since) is brought forward to that wait from now.
//
// A row stays in flight, never handed to a sender again, from its dispatch until its result is
// committed: the row is still `pending` and due until then, and a result whose write failed
// (the disk full, say) is kept in memory and written again with back-off rather than dropped,
// which would have sent the reply again on the next pass.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "agents/records.hpp"
#include "core/provider_wait.hpp"
#include "core/sender.hpp"
#include "core/supervise.hpp"
#include "http/metrics.hpp"

namespace sb::agents {

struct SendPolicy {
  std::chrono::milliseconds first_backoff{1000};
  std::chrono::milliseconds max_backoff{5 * 60 * 1000};
  // The longest wait a provider may ask for (retry_after; core/provider_wait.hpp).
  std::chrono::milliseconds max_provider_wait = kMaxSendWait;
  // The longest pause of a whole account (SendResult::account_paused: X's 24-hour limit),
  // which does not spend attempts.
  std::chrono::milliseconds max_account_wait = kMaxAccountWait;
  int max_attempts = 8;
  // The back-off of a retry the provider throttled without naming a wait
  // (SendResult::throttled): from a minute, doubling, at most 15 minutes, so that the 8
  // attempts span an hour (1+2+4+8+15+15+15 minutes between them), the longest a Meta rate
  // limit lasts, where a second's doubling gives up after about 2 minutes.
  std::chrono::milliseconds throttle_first_backoff{60 * 1000};
  std::chrono::milliseconds throttle_max_backoff{15 * 60 * 1000};
  // Replies with their senders at once, in all and per (channel, account): a provider that
  // hangs (a stalled SMTP server) holds at most its account's share, and the other accounts'
  // replies go on.
  std::size_t max_in_flight = 128;
  std::size_t max_in_flight_per_account = 16;
};

// The wait before the next attempt of a reply whose attempt number `attempts` (from 1) asked
// for a retry with no wait of its provider's: exponential back-off, the longer one of
// SendPolicy for a throttled attempt.
std::chrono::milliseconds send_backoff(const SendPolicy& policy, std::int64_t attempts,
                                       bool throttled);

class SendLoop {
 public:
  SendLoop(boost::asio::io_context& io, Records& records, const SenderRegistry& senders,
           Metrics& metrics, SendPolicy policy = {});
  // Spawns the loop on the io_context; an exception that escapes it restarts it after a back-off
  // (core/supervise.hpp).
  void start();
  void kick();  // a new job was committed (any thread)
  void stop();  // io thread or after the io_context stopped: no more dispatches
  // Replies handed to a sender whose result is not committed yet (any thread): shutdown waits a
  // while for them (App::stop), since one dropped now is sent again after the restart (or,
  // for a sender that marks its attempts, settled as an unknown outcome: settle_interrupted).
  std::size_t in_flight() const { return busy_.load(); }
  // The end of a stop's wait for in_flight() (any thread; `why` says how long it waited): the
  // attempts handed to a sender that marks them (Sender::marks_attempts) and not answered yet
  // are settled as the restart would settle them (Sender::interrupted), so that kill -9 and a
  // stop end the same way, and the operator sees it now. An answer that still comes is dropped,
  // but for `sent`, which is recorded over it. The future is ready once their results are
  // committed.
  std::future<void> settle_interrupted(std::string why);
  // After a reload applied new secrets (io thread): the senders whose account pause ended with
  // the old credentials (Sender::end_pause_of_old_credentials) have the replies it held brought
  // forward, due now; none of their attempts is spent or marked, and the rows with a sender
  // stay with it (a result of such a row that still brings the old pause's wait is tried again
  // in a second instead).
  void end_old_pauses();

 private:
  struct Outcome;  // the result of one attempt, kept until it is committed
  boost::asio::awaitable<void> run();
  void dispatch(SendJob job);
  void hand_over(Sender& sender, SendJob job);
  void cap_waits(std::int64_t now);
  // `committed` runs on the io thread once the result is committed.
  void finished(const SendJob& job, SendResult r, std::function<void()> committed = nullptr);
  void record(std::shared_ptr<Outcome> o);

  boost::asio::io_context& io_;
  Records& records_;
  const SenderRegistry& senders_;
  SendPolicy policy_;
  // switchboard_replies_total{channel,account,outcome}: each attempt's result once it is
  // committed (sent, failed, or retried: a retry scheduled).
  CounterCache replies_;
  boost::asio::steady_timer timer_;
  std::shared_ptr<Supervised> supervised_;  // run(), once started
  // Rows with their senders or awaiting their record -> their account ("<channel>\n<account>"),
  // and how many each account has. io thread only.
  std::map<std::string, std::string> in_flight_;
  std::map<std::string, std::size_t> per_account_;
  std::atomic<std::size_t> busy_{0};  // in_flight_.size(), for other threads
  void done_with(const std::string& id);
  bool stopping_ = false;
  bool capping_ = false;  // a cap_send_waits is with the writer
  // Marked attempts with their senders, no answer yet; and those of them settled at the end of
  // a stop's drain (settle_interrupted). io thread only.
  std::map<std::string, SendJob> out_;
  std::set<std::string> settled_;
  // Rows in flight when their account's pause ended (end_old_pauses): a pause their result
  // brings was learned before. io thread only.
  std::set<std::string> released_;
  // Since when reading the due sends fails (logged once at the start, once at the end), or
  // nullopt while it works. io thread only.
  std::optional<std::chrono::steady_clock::time_point> read_failing_since_;
};

}  // namespace sb::agents
