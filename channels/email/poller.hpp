#pragma once
// The IMAP side of the email channel at run time: one coroutine per (account, mailbox) on the
// App's io_context. Each one connects, reads the committed cursor "uidvalidity:last_uid",
// fetches new UIDs in batches, stores each batch through Pipeline::submit together with the
// new cursor (one transaction, DESIGN-NOTES invariant 2), applies `after` only once that commit
// is done, then waits in IDLE (or polls). Fetching, MIME parsing and storing overlap (see
// batch_chain.hpp). A changed UIDVALIDITY re-reads the whole mailbox: the
// external_id of an email is its Message-ID (a hash of the raw bytes when it has none), and the
// store drops what was already stored under it with the same content hash (Inbound::content_hash:
// another message under a stored id is kept, as "<id>#<hash>").
//
// Failures (network, server, storage) end the session; it reconnects after a jittered
// exponential back-off. Mailboxes never wait on each other: every one has its own connection.
// A message the server cannot deliver (every FETCH naming it fails) is narrowed down across
// sessions and stored as a `malformed` placeholder (unfetchable.hpp). `after` that is due for
// committed UIDs when a session ends (it dropped, or the daemon stopped or crashed) is recorded
// in the cursor (see Cursor) and applied by the next session, in this process or the next one.
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "http/metrics.hpp"
#include "storage/pipeline.hpp"

namespace sb::email {

struct PollerOptions {
  std::size_t batch = 200;                // messages per UID FETCH
  std::size_t max_batches_in_flight = 3;  // fetched and not yet committed, per mailbox
  // Bodies one batch holds (imap::ClientOptions::max_fetch_bytes): a mailbox's memory is about
  // max_batches_in_flight times this, however large its messages.
  std::size_t max_fetch_bytes = 64u << 20;
  std::chrono::milliseconds idle_refresh{10 * 60 * 1000};  // IDLE re-issued at least this often
  std::chrono::milliseconds min_backoff{500};
  std::chrono::milliseconds max_backoff{5 * 60 * 1000};
  std::chrono::milliseconds io_timeout{60000};
  // Our addresses (smtp.hpp own_addresses): mail From one of them is our own, read back, not
  // customer work (BatchChain::set_aside_own_mail).
  std::set<std::string> own_addresses;
};

// A mailbox's committed position. "uidvalidity:last_uid" when `after` is settled for every
// committed UID; "uidvalidity:last_uid:after_done" when it is not known to be applied to UIDs
// after_done+1..last_uid (committed; `after` on its way, or lost with its session: a crash, a
// restart, a dropped connection). Both parts move in the batch's own transaction, so a crash
// between a commit and its `after` leaves the cursor saying what is due, and the next session
// applies it after SELECT to what that UID range still holds: every message in it was stored
// (invariant 2), and `after` twice is harmless (a move skips what is flagged \Deleted: the
// originals a COPY-based move leaves). A later cursor (the next batch's, or one written
// on its own once caught up) says it is settled. One range, not a list: batches commit, and get
// `after`, in UID order. parse_cursor: nullopt for anything else (treated as no cursor).
struct Cursor {
  std::uint64_t uidvalidity = 0;
  std::uint64_t last_uid = 0;
  std::uint64_t after_done = 0;  // <= last_uid
  bool after_due() const { return after_done < last_uid; }
};
std::optional<Cursor> parse_cursor(const std::string& value);
std::string format_cursor(const Cursor& c);

class Poller {
 public:
  Poller(boost::asio::io_context& io, Pipeline& pipeline, Metrics& metrics,
         std::vector<config::Imap> accounts, PollerOptions options = {});
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  // Spawns one coroutine per (account, mailbox), started again after a back-off if an exception
  // escapes it (core/supervise.hpp). Call once the io_context runs (or is about to).
  void start();
  // Closes every connection and cancels every wait, then waits (bounded) until the coroutines
  // have ended: after stop() returns nothing more is submitted. Call from outside the io thread.
  void stop();
  // A reload's new password (or xoauth2 token) of an account whose secrets alone changed
  // (config::take_secrets). On the io thread, which runs the sessions: each reads its account
  // when it logs in, so the next login uses it; a session already logged in keeps its login.
  void take_secrets(const std::vector<config::Imap>& fresh);

  struct Mailbox;  // one (account, mailbox) loop's state, in poller.cpp

 private:
  struct State;
  std::shared_ptr<State> state_;
  bool stopped_ = false;
};

}  // namespace sb::email
