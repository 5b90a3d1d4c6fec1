#include "channels/email/poller.hpp"

// GCC 12 false positive inside Asio's awaitable frame allocator (see imap_client.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "channels/email/imap_client.hpp"
#include "channels/email/mime.hpp"
#include "channels/email/poller_support.hpp"
#include "channels/email/threading.hpp"
#include "core/log.hpp"
#include "storage/async_pipeline.hpp"

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
  std::unique_ptr<asio::steady_timer> timer;
  int failures = 0;
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
  // MIME parsing runs here, off the io thread, while the next batch is read. Declared last:
  // destroyed (joined) first, before the mailboxes its jobs read.
  asio::thread_pool parsers{2};

  asio::awaitable<void> run(Mailbox& m);
  asio::awaitable<error_code> session(Mailbox& m);
  struct InFlight;
  std::shared_ptr<InFlight> start_parse(Mailbox& m, imap::FetchBatch& batch,
                                        std::uint64_t uidvalidity);
  asio::awaitable<error_code> advance(Mailbox& m, imap::Client& c,
                                      std::shared_ptr<InFlight>& parsing,
                                      std::shared_ptr<InFlight>& inflight);
  void submit(const Mailbox& m, const std::shared_ptr<InFlight>& f);
  asio::awaitable<error_code> finish_batch(Mailbox& m, imap::Client& c, InFlight& f);
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

Poller::Poller(asio::io_context& io, Pipeline& pipeline, Metrics& metrics,
               std::vector<config::Imap> accounts, PollerOptions options)
    : state_(std::make_shared<State>(io, pipeline, metrics, std::move(accounts), options)) {
  for (const auto& a : state_->accounts) {
    for (const auto& mb : a.mailboxes) {
      auto m = std::make_unique<Mailbox>();
      m->account = &a;
      m->name = mb;
      m->prefix = "[email:" + a.name + "] " + mb + ":";
      m->tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
      m->tls->set_verify_mode(asio::ssl::verify_peer);
      m->tls->set_default_verify_paths();
      if (!a.ca_file.empty()) {
        m->tls->load_verify_file(a.ca_file);  // throws at start-up: a config error
      }
      m->timer = std::make_unique<asio::steady_timer>(io);
      state_->mailboxes.push_back(std::move(m));
    }
  }
}

Poller::~Poller() {
  stop();
}

void Poller::start() {
  auto s = state_;
  for (auto& m : s->mailboxes) {
    {
      std::lock_guard lock(s->mu);
      ++s->running;
    }
    asio::co_spawn(s->io, s->run(*m), [s, prefix = m->prefix](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          logger("email")->error("{} poller ended by an exception: {}", prefix, ex.what());
        }
      }
      std::lock_guard lock(s->mu);
      --s->running;
      s->cv.notify_all();
    });
  }
}

void Poller::stop() {
  if (stopped_) {
    return;  // the destructor after an explicit stop: the io_context may not run any more
  }
  stopped_ = true;
  auto s = state_;
  asio::post(s->io, [s] {
    s->stopping = true;
    for (auto& m : s->mailboxes) {
      if (m->client != nullptr) {
        m->client->close();
      }
      m->timer->cancel();
    }
  });
  std::unique_lock lock(s->mu);
  if (!s->cv.wait_for(lock, std::chrono::seconds(10), [&] { return s->running == 0; })) {
    logger("email")->warn("[email] {} mailbox loops did not stop within 10 s", s->running);
  }
}

asio::awaitable<void> Poller::State::run(Mailbox& m) {
  auto log = logger("email");
  while (!stopping) {
    error_code ec = co_await session(m);
    if (stopping) {
      break;
    }
    count_error(m);
    milliseconds delay = backoff(m.failures++);
    log->warn("{} session ended: {}; reconnecting in {} ms", m.prefix, ec.message(), delay.count());
    m.timer->expires_after(delay);
    co_await m.timer->async_wait(asio::as_tuple(asio::use_awaitable));
  }
  log->info("{} stopped", m.prefix);
}

asio::awaitable<error_code> Poller::State::session(Mailbox& m) {
  auto log = logger("email");
  const auto& a = *m.account;
  imap::Client c(io.get_executor(), *m.tls, account_options(a, options.io_timeout));
  m.client = &c;
  struct Release {
    Mailbox& m;
    ~Release() { m.client = nullptr; }
  } release{m};

  if (auto ec = co_await c.connect()) {
    co_return ec;
  }
  if (auto ec = co_await c.login()) {
    co_return ec;
  }
  auto status = co_await c.select(m.name);
  if (!status) {
    co_return status.error();
  }
  m.failures = 0;  // connected and selected: the next failure starts the back-off afresh
  std::uint64_t last = 0;
  auto committed = pipeline.cursor(a.name, m.name);
  auto cur = committed ? parse_cursor(*committed) : std::nullopt;
  if (cur && cur->uidvalidity == status->uidvalidity) {
    last = cur->last_uid;
  } else if (cur) {
    // RFC 3501 2.3.1.1: the old UIDs mean nothing now. Everything is read again; what was
    // already stored comes back as duplicates of its Message-ID and is dropped by the store.
    log->warn(
        "{} UIDVALIDITY changed from {} to {}: re-reading the mailbox, deduplicating by "
        "Message-ID",
        m.prefix, cur->uidvalidity, status->uidvalidity);
  }
  log->info("{} selected (UIDVALIDITY {}, {} messages), new mail after UID {}{}", m.prefix,
            status->uidvalidity, status->exists, last,
            c.has_capability("IDLE") ? ", IDLE" : ", polling");

  const milliseconds wait = std::min(a.poll_interval, options.idle_refresh);
  // A three-stage pipeline: batch N+1 is read from the server while batch N is parsed on the
  // parser pool and batch N-1 is committed by the writer. A batch is submitted only once the
  // previous one is known to be committed, so a failed batch is never overtaken by a later
  // cursor.
  std::shared_ptr<InFlight> parsing;
  std::shared_ptr<InFlight> inflight;
  std::uint64_t fetched = last;
  while (!stopping) {
    log->debug("{} fetching after UID {}", m.prefix, fetched);
    // Below the UIDNEXT of SELECT, UID ranges need no UID SEARCH (which would list every
    // remaining UID again for each batch); past it, SEARCH finds what arrived since.
    // (Two statements, not `?:` with a co_await in each arm: GCC 12 mis-destroys those.)
    bool ranged = status->uidnext > fetched + 1 + options.batch;
    boost::system::result<imap::FetchBatch> batch = imap::FetchBatch{};
    if (ranged) {
      batch = co_await c.fetch_range(fetched + 1, fetched + options.batch);
    } else {
      batch = co_await c.fetch_new(fetched, options.batch);
    }
    if (!batch) {
      co_return batch.error();
    }
    if (c.mailbox().uidvalidity != status->uidvalidity) {
      // The server announced a new UIDVALIDITY mid-session: start over with a fresh SELECT.
      co_return make_error_code(boost::system::errc::state_not_recoverable);
    }
    if (ranged) {
      fetched += options.batch;  // a range whose messages were all expunged still moves on
      batch->more = true;
      if (batch->messages.empty()) {
        continue;
      }
    }
    if (!batch->messages.empty()) {
      fetched = std::max(fetched, batch->messages.back().uid);
      if (parsing) {
        if (auto ec = co_await advance(m, c, parsing, inflight)) {
          co_return ec;
        }
      }
      parsing = start_parse(m, *batch, status->uidvalidity);
      if (batch->more) {
        continue;
      }
    }
    if (parsing) {
      if (auto ec = co_await advance(m, c, parsing, inflight)) {
        co_return ec;
      }
    }
    if (inflight) {
      if (auto ec = co_await finish_batch(m, c, *inflight)) {
        co_return ec;
      }
      inflight.reset();
    }
    if (stopping) {
      break;
    }
    if (c.has_capability("IDLE")) {
      log->debug("{} IDLE for up to {} ms", m.prefix, wait.count());
      auto r = co_await c.idle(wait);
      if (!r) {
        co_return r.error();
      }
    } else {
      m.timer->expires_after(wait);
      co_await m.timer->async_wait(asio::as_tuple(asio::use_awaitable));
    }
  }
  co_return error_code{};
}

// A batch handed to the writer: its outcomes arrive on the io thread and wake the waiter.
// Both events arrive on the io thread and cancel the timer; waiters re-check the flags, so an
// event that comes before the wait is never lost.
struct Poller::State::InFlight {
  explicit InFlight(asio::io_context& io) : timer(io, asio::steady_timer::time_point::max()) {}
  asio::steady_timer timer;
  std::vector<imap::FetchedMessage> raw;
  bool parsed = false;
  bool done = false;
  std::vector<IngestOutcome> outcomes;
  std::vector<std::uint64_t> uids;
  std::vector<Inbound> items;
  std::optional<CursorUpdate> cursor;
};

// Parses the batch on the parser pool; `parsed` is set on the io thread when it is done.
std::shared_ptr<Poller::State::InFlight> Poller::State::start_parse(Mailbox& m,
                                                                    imap::FetchBatch& batch,
                                                                    std::uint64_t uidvalidity) {
  auto f = std::make_shared<InFlight>(io);
  f->raw = std::move(batch.messages);
  asio::post(parsers, [this, &m, f, uidvalidity] {
    auto log = logger("email");
    const auto& a = *m.account;
    f->items.reserve(f->raw.size());
    for (auto& msg : f->raw) {
      ParsedEmail parsed = parse_email(msg.raw);
      if (parsed.malformed) {
        std::string why;
        for (const auto& p : parsed.problems) {
          why += (why.empty() ? "" : ", ") + p;
        }
        log->warn("{} UID {} is malformed ({}); stored with flag malformed", m.prefix, msg.uid,
                  why);
      }
      f->items.push_back(to_inbound(std::move(parsed), a.name, m.name));
      f->uids.push_back(msg.uid);
    }
    f->raw.clear();
    f->cursor = CursorUpdate{a.name, m.name, format_cursor({uidvalidity, f->uids.back()})};
    asio::post(io, [f] {
      f->parsed = true;
      f->timer.cancel();
    });
  });
  return f;
}

// Waits for `parsing` to be parsed and `inflight` to be committed, then submits `parsing`.
asio::awaitable<error_code> Poller::State::advance(Mailbox& m, imap::Client& c,
                                                   std::shared_ptr<InFlight>& parsing,
                                                   std::shared_ptr<InFlight>& inflight) {
  while (!parsing->parsed) {
    co_await parsing->timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  if (inflight) {
    if (auto ec = co_await finish_batch(m, c, *inflight)) {
      co_return ec;
    }
  }
  inflight = std::move(parsing);
  submit(m, inflight);
  co_return error_code{};
}

// Stores the batch with its cursor in one transaction; finish_batch awaits the commit.
void Poller::State::submit(const Mailbox& m, const std::shared_ptr<InFlight>& f) {
  logger("email")->debug("{} submitting UIDs {}..{}", m.prefix, f->uids.front(), f->uids.back());
  async_submit(pipeline, std::move(f->items), std::move(f->cursor),
               asio::bind_executor(io, [f](std::vector<IngestOutcome> out) {
                 f->outcomes = std::move(out);
                 f->done = true;
                 f->timer.cancel();
               }));
}

// Awaits the commit of a batch, then (committed) applies `after`.
asio::awaitable<error_code> Poller::State::finish_batch(Mailbox& m, imap::Client& c, InFlight& f) {
  auto log = logger("email");
  const auto& a = *m.account;
  while (!f.done) {
    co_await f.timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  const auto& uids = f.uids;
  std::size_t stored = 0;
  std::size_t dups = 0;
  for (const auto& o : f.outcomes) {
    if (!o.error.empty()) {
      // The transaction rolled back: neither messages nor cursor moved. Fetch again later.
      log->error("{} storing UIDs {}..{} failed: {}", m.prefix, uids.front(), uids.back(), o.error);
      co_return make_error_code(boost::system::errc::io_error);
    }
    stored += o.created ? 1 : 0;
    dups += o.duplicate ? 1 : 0;
  }
  Labels labels{{"channel", "email"}, {"account", a.name}};
  metrics.inc("switchboard_interactions_total", labels, stored);
  metrics.inc("switchboard_duplicates_total", labels, dups);
  log->info("{} stored UIDs {}..{}: {} new, {} duplicates", m.prefix, uids.front(), uids.back(),
            stored, dups);

  // Only now, with the commit done, may the server-side state change: a crash before this
  // point leaves the messages unread/in place, and they are already stored, so nothing is lost.
  if (a.after == "seen") {
    if (auto ec = co_await c.mark_seen(uids)) {
      count_error(m);
      log->warn("{} marking UIDs {}..{} \\Seen failed: {}", m.prefix, uids.front(), uids.back(),
                ec.message());
    }
  } else if (a.after.rfind("move:", 0) == 0) {
    std::string folder = a.after.substr(5);
    if (auto ec = co_await c.move(uids, folder)) {
      count_error(m);
      log->warn("{} moving UIDs {}..{} to {} failed: {}", m.prefix, uids.front(), uids.back(),
                folder, ec.message());
    }
  }
  co_return error_code{};
}

}  // namespace sb::email
