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

#include "channels/email/batch_chain.hpp"
#include "channels/email/imap_client.hpp"
#include "channels/email/poller_state.hpp"
#include "channels/email/poller_support.hpp"
#include "core/log.hpp"
#include "core/time.hpp"

namespace sb::email {

namespace {

// A session that stayed up this long after catching up was a working one: the back-off starts
// afresh when it ends, whatever ended it.
constexpr std::chrono::seconds kHealthySession{30};

// Whether `after` that failed with `ec` is the next session's to try again: a refusal (NO,
// BAD) would come again; anything else broke the connection.
bool after_left_for_next_session(error_code ec) {
  return ec && ec != imap::errc::rejected && ec != imap::errc::bad_command;
}

// "168h" for the log, as the config file would say it.
std::string duration_text(milliseconds d) {
  auto ms = d.count();
  for (auto [unit, name] : {std::pair{3600000LL, "h"}, {60000LL, "m"}, {1000LL, "s"}}) {
    if (ms % unit == 0) {
      return std::to_string(ms / unit) + name;
    }
  }
  return std::to_string(ms) + "ms";
}

}  // namespace

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
    // The factory holds the state by plain pointers (the mailbox holds it: a shared one would
    // be a cycle); `on_end` holds it until the mailbox's loop has ended for good.
    m->supervised = Supervised::spawn(
        s->io.get_executor(), {"email", m->prefix, "the poller", "email_poller"},
        [st = s.get(), mb = m.get()] { return st->run(*mb); },
        [s] {
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
      if (m->supervised != nullptr) {
        m->supervised->stop();  // a restart's back-off ends now
      }
      if (m->client != nullptr) {
        m->client->close();
      }
      if (m->chain != nullptr) {
        m->chain->wake();
      }
      m->timer->cancel();
    }
  });
  std::unique_lock lock(s->mu);
  if (!s->cv.wait_for(lock, std::chrono::seconds(10), [&] { return s->running == 0; })) {
    logger("email")->warn("[email] {} mailbox loops did not stop within 10 s", s->running);
  }
}

void Poller::take_secrets(const std::vector<config::Imap>& fresh) {
  // In place: the mailboxes point into `accounts`.
  for (auto& a : state_->accounts) {
    config::take_secrets(a, fresh);
  }
}

asio::awaitable<void> Poller::State::run(Mailbox& m) {
  auto log = logger("email");
  while (!stopping) {
    m.why.clear();
    try {
      error_code ec = co_await session(m);
      if (m.why.empty()) {
        m.why = ec.message();
      }
    } catch (const std::exception& e) {
      // Not expected (failures are values), but one must not end this mailbox's polling for
      // good: it is a failed session like any other.
      m.why = std::string("session ended by an exception: ") + e.what();
    }
    if (stopping) {
      break;
    }
    count_error(m);
    if (m.caught_up_at && std::chrono::steady_clock::now() - *m.caught_up_at >= kHealthySession) {
      m.failures = 0;
    }
    m.caught_up_at.reset();
    milliseconds delay = backoff(m.failures++);
    log->warn("{} session ended: {}; reconnecting in {} ms", m.prefix, m.why, delay.count());
    m.timer->expires_after(delay);
    co_await m.timer->async_wait(asio::as_tuple(asio::use_awaitable));
  }
  log->info("{} stopped", m.prefix);
}

asio::awaitable<error_code> Poller::State::session(Mailbox& m) {
  auto log = logger("email");
  const auto& a = *m.account;
  std::string problem;
  imap::ClientOptions client_options = account_options(a, options.io_timeout, problem);
  if (!problem.empty()) {
    m.why = std::move(problem);
    co_return make_error_code(boost::system::errc::no_such_file_or_directory);
  }
  client_options.max_fetch_bytes = options.max_fetch_bytes;
  imap::Client c(io.get_executor(), *m.tls, std::move(client_options));
  m.client = &c;
  struct Release {
    Mailbox& m;
    ~Release() { m.client = nullptr; }
  } release{m};

  if (auto ec = co_await c.connect()) {
    co_return ended(m, c, ec);
  }
  if (auto ec = co_await c.login()) {
    co_return ended(m, c, ec);
  }
  auto status = co_await c.select(m.name);
  if (!status) {
    co_return ended(m, c, status.error());
  }
  Cursor start{status->uidvalidity};
  bool replace_cursor = false;
  std::optional<std::string> committed;
  std::optional<std::int64_t> committed_at;
  try {
    committed = pipeline.cursor(a.name, m.name);
    committed_at = pipeline.cursor_written_at(a.name, m.name);
  } catch (const std::exception& e) {
    // SQLITE_BUSY past the busy timeout, an I/O error: this session fails; the next one, after
    // the back-off, reads the cursor again.
    m.why = std::string("reading the committed cursor failed: ") + e.what();
    co_return make_error_code(boost::system::errc::io_error);
  }
  auto cur = committed ? parse_cursor(*committed) : std::nullopt;
  if (cur && cur->uidvalidity == status->uidvalidity) {
    start = *cur;
  } else if (cur) {
    // RFC 3501 2.3.1.1: the old UIDs mean nothing now. The mailbox is read again (below: from
    // where); what was already stored comes back as duplicates of its Message-ID and is
    // dropped by the store.
    log->warn(
        "{} UIDVALIDITY changed from {} to {}: re-reading the mailbox, deduplicating by "
        "Message-ID",
        m.prefix, cur->uidvalidity, status->uidvalidity);
    if (cur->after_due()) {
      // Those UIDs may name other messages now, not yet stored: never apply `after` to them.
      // The re-read applies it to every message it stores.
      log->info("{} dropping `after` ({}) still due for UIDs {}..{} of UIDVALIDITY {}", m.prefix,
                a.after, cur->after_done + 1, cur->last_uid, cur->uidvalidity);
      replace_cursor = true;
    }
  }
  // A mailbox with no cursor (first start, a mailbox added to the list, a renamed account)
  // reads what `backfill` says, from the UID it returns on. One whose UIDVALIDITY changed (a
  // server's index rebuilt, the mailbox moved or restored) is read again from the mail received
  // a day before the last commit: what arrived since (while the daemon was down, say) was never
  // stored, and only its Message-ID tells it from what was, which comes back as duplicates and
  // is dropped. Older mail not stored is what `backfill` skipped at the first start (years of
  // an inbox under "none"): read whole, all of it would be stored and queued as new, and get
  // `after`. Under "all" too: nothing was skipped, and reading a box of 200k messages whole
  // would download all of it only to find duplicates; old mail moved in during the downtime
  // is not read (README). A duration reads at least as far back as a first start would now.
  // The day of slack: a commit covers what was fetched before it, and INTERNALDATE is the
  // server's clock.
  const bool reread = cur && cur->uidvalidity != status->uidvalidity;
  const bool backfill = reread ? committed_at.has_value() : !cur && a.backfill.has_value();
  const bool back_duration = a.backfill && a.backfill->count() > 0;
  if (backfill) {
    const std::int64_t now = now_ms();
    std::optional<std::int64_t> since;  // INTERNALDATE from which mail is read; none: nothing
    if (back_duration) {
      since = now - a.backfill->count();
    }
    if (reread) {
      const std::int64_t slack = *committed_at - 24 * 3600 * 1000;
      since = since ? std::min(*since, slack) : slack;
    }
    auto from = co_await backfill_start(c, *status, since);
    if (!from) {
      co_return ended(m, c, from.error());
    }
    start = Cursor{status->uidvalidity, from->uid, from->uid};
    if (reread) {
      log->info(
          "{} UIDVALIDITY changed: reading {} of {} messages, from the first received since {} "
          "(a day before the last commit{}); the {} before it are not read (stored already, or "
          "{})",
          m.prefix, from->reads, status->exists, format_rfc3339(*since),
          back_duration ? ", or backfill " + duration_text(*a.backfill) + " if earlier" : "",
          status->exists - std::min<std::uint64_t>(status->exists, from->reads),
          !a.backfill ? "moved in with an older date: backfill = all"
                      : "skipped by backfill = " +
                            (back_duration ? duration_text(*a.backfill) : std::string("none")));
    } else {
      log->info("{} first sync reads back {}: {} of {} messages", m.prefix,
                a.backfill->count() > 0 ? duration_text(*a.backfill) : "none", from->reads,
                status->exists);
    }
  }
  log->info("{} selected (UIDVALIDITY {}, {} messages), new mail after UID {}{}", m.prefix,
            status->uidvalidity, status->exists, start.last_uid,
            c.has_capability("IDLE") ? ", IDLE" : ", polling");
  if (m.fetch_failures_uidvalidity != status->uidvalidity) {
    m.fetch_failures = {};  // its UIDs name other messages now
    m.fetch_failures_uidvalidity = status->uidvalidity;
  }

  // Fetching runs ahead of parsing and storing (see batch_chain.hpp) by at most
  // max_batches_in_flight batches: the memory bound of a session.
  auto chain = std::make_shared<BatchChain>(io, parsers, pipeline, metrics, a, m.name, m.prefix,
                                            start, options.own_addresses);
  if (replace_cursor || backfill) {
    chain->replace_stored_cursor();
  }
  m.chain = chain.get();
  struct Forget {
    Mailbox& m;
    ~Forget() { m.chain = nullptr; }
  } forget{m};
  error_code ec;
  if (backfill && chain->record_after()) {
    // The start is committed, alone, before anything is fetched: a session that ends before
    // its first commit must not leave the next one to choose again (backfill = "none" would
    // skip the mail that arrived in between, a duration would move on), and a restart must not
    // read the skipped messages again whatever backfill says by then. A failed write ends the
    // session here; the next one finds no cursor and chooses again, having skipped nothing.
    ec = co_await drain(m, c, *chain, 0);
  }
  if (!ec) {
    ec = co_await apply_due_after(m, c, *chain, start);
  }
  m.first_session = false;
  if (!ec) {
    ec = co_await sync(m, c, *chain, *status, start.last_uid);
  }
  // Nothing more is submitted; a batch already at the writer is awaited, so the next session
  // reads a cursor that no commit of this one can still move. `after` not applied by now is
  // due in that cursor: the next session applies it.
  chain->close();
  while (chain->at_writer()) {
    co_await chain->wait();
  }
  co_return ended(m, c, ec);
}

namespace {

// UIDs whose INTERNALDATE one UID FETCH asks for: the command line stays short (Dovecot refuses
// lines over imap_max_line_length, 64 KiB) where the listed UIDs are scattered.
constexpr std::size_t kDatesPerFetch = 500;

}  // namespace

// The first sync of a mailbox with `backfill` set, or its re-read after a UIDVALIDITY change:
// the UID after which it reads, and how many messages that leaves to read. No `since` ("none"):
// the last UID before UIDNEXT of the SELECT, so only mail arriving from now on is read. A time:
// the UID before the first message whose INTERNALDATE is at or after it. UID SEARCH SINCE lists
// the candidates by day (a day early: SEARCH compares dates only, RFC 3501 6.4.4, in whatever
// timezone the server reads them), and their INTERNALDATEs pick the first one exactly. Every
// message after it is read: an older one further up (moved in from another folder later) too,
// as the cursor is one UID and `after` applies to whole UID ranges (poller.hpp, Cursor).
asio::awaitable<boost::system::result<Poller::State::Start>> Poller::State::backfill_start(
    imap::Client& c, const imap::MailboxStatus& status, std::optional<std::int64_t> since) {
  std::uint64_t last = status.uidnext == 0 ? 0 : status.uidnext - 1;
  if (status.uidnext == 0) {  // the server did not say: the highest UID there is
    auto all = co_await c.search_uids(1, 0);
    if (!all) {
      co_return all.error();
    }
    last = all->empty() ? 0 : all->back();
  }
  std::uint64_t from = last;
  std::size_t reads = 0;
  if (since && last > 0) {
    const std::int64_t cutoff = *since;
    auto listed = co_await c.search_since(1, last, cutoff - 24 * 3600 * 1000);
    if (!listed) {
      co_return listed.error();
    }
    std::optional<std::uint64_t> first;
    for (std::size_t i = 0; i < listed->size() && !first; i += kDatesPerFetch) {
      std::size_t end = std::min(listed->size(), i + kDatesPerFetch);
      auto dated = co_await c.internal_dates({listed->begin() + i, listed->begin() + end});
      if (!dated) {
        co_return dated.error();
      }
      for (const auto& d : *dated) {
        // A date that does not parse: read from it. One more than a day ahead of our clock (a
        // migrated mailbox, a sender's clock years off) says nothing about when the message
        // came: taken at its word, one such message low in the mailbox would start the sync
        // there and read nearly all of it.
        if (!d.unix_ms || (*d.unix_ms >= cutoff && *d.unix_ms <= now_ms() + 24 * 3600 * 1000)) {
          first = d.uid;
          break;
        }
      }
    }
    if (first) {
      from = *first - 1;
      auto rest = co_await c.search_uids(*first, last);
      if (!rest) {
        co_return rest.error();
      }
      reads = rest->size();
    }
  }
  co_return Start{from, reads};
}

// `after` that the committed cursor says is due (its session ended between the commit and
// `after`: a crash, a restart, a dropped connection). Every message in the mailbox up to the
// cursor's UID has been stored, so `after` goes to whatever the range still holds: a message
// moved already is not there any more (or, moved by COPY without UIDPLUS, is there flagged
// \Deleted and left out), and \Seen twice is harmless.
asio::awaitable<error_code> Poller::State::apply_due_after(Mailbox& m, imap::Client& c,
                                                           BatchChain& chain, const Cursor& start) {
  if (!start.after_due()) {
    co_return error_code{};
  }
  auto log = logger("email");
  const auto& a = *m.account;
  const char* when = m.first_session ? "the restart" : "the last session ended";
  if (a.after == "keep") {
    log->info("{} after = keep now: nothing applied to UIDs {}..{}, committed before {}", m.prefix,
              start.after_done + 1, start.last_uid, when);
  } else {
    // For a move, only what is not flagged \Deleted: without MOVE, a move is COPY and \Deleted,
    // and without UIDPLUS the originals stay (flagged) in the mailbox. A move already done
    // before the session ended would copy them again.
    bool move = a.after.rfind("move:", 0) == 0;
    auto uids = co_await c.search_uids(start.after_done + 1, start.last_uid, move);
    if (!uids) {
      log->warn("{} listing UIDs {}..{} for `after` failed: {}", m.prefix, start.after_done + 1,
                start.last_uid, c.describe(uids.error()));
      if (after_left_for_next_session(uids.error())) {
        co_return uids.error();
      }
    } else if (uids->empty()) {
      log->info(
          "{} `after` ({}) was due for UIDs {}..{}, committed before {}: none is left in the "
          "mailbox",
          m.prefix, a.after, start.after_done + 1, start.last_uid, when);
    } else {
      log->info("{} applying after ({}) to {} messages committed before {} (UIDs {}..{})", m.prefix,
                a.after, uids->size(), when, uids->front(), uids->back());
      error_code ec = co_await apply_after(m, c, *uids);
      if (after_left_for_next_session(ec)) {
        co_return ec;
      }
    }
  }
  // Settled (or refused by the server, which would refuse again): the next cursor says so.
  chain.after_applied(start.last_uid);
  co_return error_code{};
}

// Fetches everything after `last`, then waits for new mail (IDLE or polling), until an error
// or stop().
asio::awaitable<error_code> Poller::State::sync(Mailbox& m, imap::Client& c, BatchChain& chain,
                                                const imap::MailboxStatus& status,
                                                std::uint64_t last) {
  auto log = logger("email");
  const auto& a = *m.account;
  const milliseconds wait = std::min(a.poll_interval, options.idle_refresh);
  const std::size_t in_flight = std::max<std::size_t>(1, options.max_batches_in_flight);
  std::uint64_t fetched = last;
  auto& failures = m.fetch_failures;
  // UIDs per FETCH: options.batch, fewer where messages are large, so that one batch's bodies
  // stay near the client's max_fetch_bytes (memory: in_flight batches of about that) and few
  // bodies are dropped over it and fetched again.
  std::size_t count = options.batch;
  while (!stopping) {
    log->debug("{} fetching after UID {}", m.prefix, fetched);
    // A batch that failed batch_attempts times is fetched UID by UID (unfetchable.hpp); the
    // batches before it as usual, up to its first UID.
    std::uint64_t cap = 0;
    if (failures.narrowing(fetched)) {
      if (fetched + 1 >= failures.range_lo()) {
        if (auto ec = co_await one_by_one(m, c, chain, fetched, in_flight)) {
          co_return ec;
        }
        continue;
      }
      cap = failures.range_lo() - 1;
    }
    // Below the UIDNEXT of SELECT, UID ranges need no UID SEARCH (which would list every
    // remaining UID again for each batch); past it, SEARCH finds what arrived since.
    // Where UIDs are sparse (Gmail's INBOX, a mailbox that after = move keeps empty) most
    // ranges come back empty, a round trip each: SEARCH lists only what exists, and is used
    // then unless the list would be long (every batch lists the rest again).
    // (Two statements, not `?:` with a co_await in each arm: GCC 12 mis-destroys those.)
    bool sparse = status.uidnext - 1 - fetched > 4 * status.exists && status.exists <= 20000;
    bool ranged = status.uidnext > fetched + 1 + count && !sparse;
    std::uint64_t hi = fetched + count;
    if (cap != 0) {
      hi = std::min(hi, cap);
    }
    boost::system::result<imap::FetchBatch> batch = imap::FetchBatch{};
    if (ranged) {
      batch = co_await c.fetch_range(fetched + 1, hi);
    } else {
      batch = co_await c.fetch_new(fetched, count, cap);
    }
    if (!batch) {
      note_fetch_failure(m, c, batch.error());
      co_return batch.error();
    }
    if (c.mailbox().uidvalidity != status.uidvalidity) {
      // The server announced a new UIDVALIDITY mid-session: start over with a fresh SELECT.
      m.why = "the server announced a new UIDVALIDITY " + std::to_string(c.mailbox().uidvalidity) +
              " (was " + std::to_string(status.uidvalidity) + ")";
      co_return make_error_code(boost::system::errc::state_not_recoverable);
    }
    if (ranged) {
      fetched = batch->covered_to;  // a range whose messages were all expunged still moves on
      batch->more = true;
    } else if (cap != 0 && !batch->more) {
      fetched = std::max(fetched, cap);  // everything up to the failing batch was listed
    }
    batch->more = batch->more || cap != 0;
    note_vanished(m, *batch);
    if (!batch->messages.empty()) {
      std::uint64_t average = std::max<std::uint64_t>(1, batch->bytes / batch->messages.size());
      count = std::clamp<std::size_t>(c.max_fetch_bytes() / average, 1, options.batch);
      fetched = std::max(fetched, batch->messages.back().uid);
      chain.add(std::move(batch->messages));
    }
    failures.passed(fetched);
    if (batch->more) {
      if (auto ec = co_await drain(m, c, chain, in_flight - 1)) {
        co_return ec;
      }
      continue;
    }
    // Caught up: everything committed (and `after` applied) before waiting for new mail, and
    // the cursor updated to say `after` is done, so a restart does not apply it again.
    if (auto ec = co_await drain(m, c, chain, 0)) {
      co_return ec;
    }
    if (chain.record_after()) {
      if (auto ec = co_await drain(m, c, chain, 0)) {
        co_return ec;
      }
    }
    // The back-off starts afresh only once the session has caught up AND then waited for new
    // mail once (an IDLE that ended well, a poll interval), or stayed up kHealthySession after
    // catching up (run()). A server that accepts the login and SELECT and then fails every time
    // (throttling, a message it cannot read), or that breaks every IDLE, would otherwise be
    // reconnected to twice a second for ever.
    if (!m.caught_up_at) {
      m.caught_up_at = std::chrono::steady_clock::now();
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
    m.failures = 0;
  }
  co_return error_code{};
}

// Waits until at most `limit` batches are pending, applying `after` to each committed batch on
// the way (the connection is idle here: no command is in progress).
asio::awaitable<error_code> Poller::State::drain(Mailbox& m, imap::Client& c, BatchChain& chain,
                                                 std::size_t limit) {
  while (true) {
    if (auto ec = co_await apply_after(m, c, chain)) {
      co_return ec;
    }
    if (auto ec = chain.failed()) {
      co_return ec;
    }
    if (chain.pending() <= limit || stopping) {
      // A batch committed since apply_after() took the committed ones left the queue unseen
      // by it: take it now. (A batch leaves the queue in the same locked step that lists it
      // as committed, so none slips past both.) Left, its `after` waited for the next new mail
      // or IDLE refresh and record_after() found nothing to record: the cursor stayed below
      // the last UID, the last batch not marked \Seen.
      co_return co_await apply_after(m, c, chain);
    }
    // No suspension since pending() was read: a commit after it posts its wake-up to this
    // thread, which runs it only once this wait is armed.
    co_await chain.wait();
  }
}

// `after = seen | move:Folder`, only for batches whose commit is done. The cursor committed
// with them says `after` is due for their UIDs until a later cursor says it is done, so a crash
// before that point is made good by the next start (apply_due_after). A refusal (NO, BAD) is
// logged and counted, not fatal: the messages are stored. When the connection broke, the
// session ends here: this batch and the ones after it stay due in the cursor for the next one.
asio::awaitable<error_code> Poller::State::apply_after(Mailbox& m, imap::Client& c,
                                                       BatchChain& chain) {
  for (const auto& uids : chain.take_committed()) {
    error_code ec = co_await apply_after(m, c, uids);
    if (after_left_for_next_session(ec)) {
      co_return ec;
    }
    chain.after_applied(uids.back());
  }
  co_return error_code{};
}

asio::awaitable<error_code> Poller::State::apply_after(Mailbox& m, imap::Client& c,
                                                       const std::vector<std::uint64_t>& uids) {
  auto log = logger("email");
  const auto& a = *m.account;
  error_code ec;
  if (uids.empty()) {
    co_return ec;
  }
  if (a.after == "seen") {
    ec = co_await c.mark_seen(uids);
    if (ec) {
      log->warn("{} marking UIDs {}..{} \\Seen failed: {}", m.prefix, uids.front(), uids.back(),
                c.describe(ec));
    }
  } else if (a.after.rfind("move:", 0) == 0) {
    std::string folder = a.after.substr(5);
    ec = co_await c.move(uids, folder);
    if (ec) {
      log->warn("{} moving UIDs {}..{} to {} failed: {}", m.prefix, uids.front(), uids.back(),
                folder, c.describe(ec));
    }
  }
  if (ec) {
    count_error(m);
  }
  co_return ec;
}

}  // namespace sb::email
