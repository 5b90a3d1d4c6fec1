#pragma once
// The state of the Poller's loops, shared by poller.cpp (sessions, sync, `after`) and
// poller_unfetchable.cpp (narrowing down a FETCH that keeps failing). Private to the poller.

// GCC 12 false positive inside Asio's awaitable frame allocator (see imap_client.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>

#include "channels/email/batch_chain.hpp"
#include "channels/email/imap_client.hpp"
#include "channels/email/poller.hpp"
#include "channels/email/unfetchable.hpp"
#include "core/supervise.hpp"

namespace sb::email {
namespace asio = boost::asio;
using boost::system::error_code;
using std::chrono::milliseconds;

struct Poller::Mailbox {
  const config::Imap* account = nullptr;
  std::string name;
  std::string prefix;  // "[email:support] INBOX:" for log lines
  std::unique_ptr<asio::ssl::context> tls;
  imap::Client* client = nullptr;  // the live session, closed by stop()
  BatchChain* chain = nullptr;     // its batches, woken by stop()
  std::unique_ptr<asio::steady_timer> timer;
  std::shared_ptr<Supervised> supervised;  // run(), restarted if an exception escapes it
  int failures = 0;
  // When this session first caught up (nullopt before): a session that then stays up for
  // kHealthySession starts the back-off afresh when it ends.
  std::optional<std::chrono::steady_clock::time_point> caught_up_at;
  FetchFailures fetch_failures;                  // a FETCH that keeps failing, across sessions
  std::uint64_t fetch_failures_uidvalidity = 0;  // the UIDs it names are of this UIDVALIDITY
  // `after` still due from an earlier session is not kept here but in the committed cursor
  // (poller.hpp, Cursor), so that it survives a restart or a crash.
  bool first_session = true;  // for the log line: due from before the restart, or the drop
  std::string why;            // what ended the last session, for the log (Client::describe)
};

struct Poller::State {
  State(asio::io_context& i, Pipeline& p, Metrics& mx, std::vector<config::Imap> a, PollerOptions o)
      : io(i), pipeline(p), metrics(mx), accounts(std::move(a)), options(o) {}
  asio::io_context& io;
  Pipeline& pipeline;
  Metrics& metrics;
  std::vector<config::Imap> accounts;
  PollerOptions options;
  std::vector<std::unique_ptr<Mailbox>> mailboxes;
  bool stopping = false;  // io thread only
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;  // guarded by mu
  std::mt19937_64 rng{std::random_device{}()};
  // MIME parsing runs here, off the io thread, while the next batch is read; two batches at
  // once. Declared last: destroyed (joined) first, before the mailboxes its jobs read.
  asio::thread_pool parsers{2};

  asio::awaitable<void> run(Mailbox& m);
  asio::awaitable<error_code> session(Mailbox& m);
  // Keeps what failed for run()'s log line, while the session's client still knows (unless the
  // session said it already).
  static error_code ended(Mailbox& m, const imap::Client& c, error_code ec) {
    if (m.why.empty()) {
      m.why = c.describe(ec);
    }
    return ec;
  }
  asio::awaitable<error_code> sync(Mailbox& m, imap::Client& c, BatchChain& chain,
                                   const imap::MailboxStatus& status, std::uint64_t last);
  asio::awaitable<error_code> drain(Mailbox& m, imap::Client& c, BatchChain& chain,
                                    std::size_t limit);
  asio::awaitable<error_code> one_by_one(Mailbox& m, imap::Client& c, BatchChain& chain,
                                         std::uint64_t& fetched, std::size_t in_flight);
  void note_fetch_failure(Mailbox& m, const imap::Client& c, error_code ec);
  // UIDs a FETCH left out that another client expunged meanwhile (FetchBatch::vanished): logged.
  static void note_vanished(const Mailbox& m, const imap::FetchBatch& batch);
  void give_up(Mailbox& m, BatchChain& chain, std::uint64_t uidvalidity, std::uint64_t uid);
  struct Start {
    std::uint64_t uid = 0;  // read after this UID
    std::size_t reads = 0;  // messages after it (for the log)
  };
  static asio::awaitable<boost::system::result<Start>> backfill_start(
      imap::Client& c, const imap::MailboxStatus& status, std::optional<std::int64_t> since);
  asio::awaitable<error_code> apply_due_after(Mailbox& m, imap::Client& c, BatchChain& chain,
                                              const Cursor& start);
  asio::awaitable<error_code> apply_after(Mailbox& m, imap::Client& c, BatchChain& chain);
  asio::awaitable<error_code> apply_after(Mailbox& m, imap::Client& c,
                                          const std::vector<std::uint64_t>& uids);
  void count_error(const Mailbox& m) {
    metrics.inc("switchboard_channel_errors_total",
                {{"channel", "email"}, {"account", m.account->name}});
  }
  milliseconds backoff(int failures) {
    auto base = options.min_backoff * (1LL << std::min(failures, 16));
    base = std::min<milliseconds>(base, options.max_backoff);
    // Jitter: a random point in [base/2, base], so accounts failing together spread out.
    std::uniform_int_distribution<long long> d(base.count() / 2, base.count());
    return milliseconds(d(rng));
  }
};

}  // namespace sb::email
