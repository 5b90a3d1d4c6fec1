#pragma once
// The batches of one mailbox session on their way from the IMAP connection to the store.
//
//   fetch (session coroutine) -> parse (parser pool, two batches at once) -> submit -> commit
//
// Every stage runs as soon as its input is ready, not at the pace of the fetch loop: a batch is
// handed to the parser pool the moment it is read, and submitted the moment it is parsed and
// the batch before it has committed. Submission stays strictly in UID order, one batch at the
// writer at a time, so a failed batch is never overtaken by a later cursor (DESIGN-NOTES
// invariant 2: each batch carries the cursor of its last UID, stored in its own transaction).
// After a failed commit nothing more is submitted; the session ends and the next one starts
// again from the committed cursor.
//
// Each batch's cursor also says up to which UID `after` is settled (poller.hpp, Cursor): the
// session reports each applied `after` (after_applied), the next batch's cursor carries it, and
// once the session has caught up, record_after() writes it on its own (a cursor-only
// transaction through the same queue, so it can never overtake or undo a batch's cursor).
//
// The hand-over happens on whichever thread completes the second condition: the parser thread
// that finished the batch, or the writer thread in the previous batch's commit callback. The
// writer then finds the next batch queued when it finishes a commit and goes on without
// sleeping; with a hop through the io thread in between, every batch waited twice for a CPU
// when the machine was busy (two wake-ups per batch). The state is guarded by a mutex; the
// session on the io thread is woken by a post.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/system/error_code.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "channels/email/imap_client.hpp"
#include "channels/email/poller.hpp"
#include "config/config.hpp"
#include "http/metrics.hpp"
#include "storage/pipeline.hpp"

namespace sb::email {

class BatchChain : public std::enable_shared_from_this<BatchChain> {
 public:
  // `account` and `metrics` must outlive the chain's last posted handler (the Poller's State
  // owns them and joins the pool first). `start`: the committed cursor this session goes on from
  // (of the mailbox's current UIDVALIDITY; {uidvalidity} for a mailbox read from the start).
  // `own_addresses`: ours (PollerOptions::own_addresses), for telling our own mail read back.
  BatchChain(boost::asio::io_context& io, boost::asio::thread_pool& parsers, Pipeline& pipeline,
             Metrics& metrics, const config::Imap& account, std::string mailbox, std::string prefix,
             Cursor start, std::set<std::string> own_addresses = {});

  // Takes a fetched batch (ascending UIDs, not empty): parsed on the pool right away, submitted
  // in order once parsed and once every earlier batch has committed.
  void add(std::vector<imap::FetchedMessage> messages);
  // A batch of one interaction that is already built (the placeholder of a message the server
  // cannot deliver, see unfetchable.hpp): submitted in order like the others, its cursor `uid`.
  void add_built(std::uint64_t uid, Inbound item);
  // Batches added and not yet committed (parsing, parsed, or at the writer).
  std::size_t pending() const;
  // A batch has been submitted and its commit outcome has not arrived yet.
  bool at_writer() const;
  // Set when a commit failed (nothing after it was or will be submitted).
  boost::system::error_code failed() const;
  // The UIDs of each batch committed since the last call, in order (for `after`).
  std::vector<std::vector<std::uint64_t>> take_committed();
  // io thread: `after` is settled (applied, or refused by the server) for every UID up to `uid`.
  // Carried by the next cursor written.
  void after_applied(std::uint64_t uid);
  // The stored cursor belongs to another UIDVALIDITY (or says `after` is due for UIDs that mean
  // nothing now): record_after() writes this session's start cursor even if nothing moved.
  void replace_stored_cursor();
  // When nothing is pending and the stored cursor says `after` is due for UIDs it has been
  // applied to since: queues a cursor-only write saying it is settled, and returns true (wait
  // for pending() == 0). Otherwise false.
  bool record_after();
  // io thread: suspends until the next parse result, commit outcome or wake().
  boost::asio::awaitable<void> wait();
  // Any thread.
  void wake();
  // The session is over: nothing more is submitted (a batch already at the writer finishes).
  void close();

 private:
  struct Batch;
  void set_aside_own_mail(Batch& b) const;  // parser thread
  void parsed(const std::shared_ptr<Batch>& b);
  void pump();  // with mu_ held
  void committed(const std::shared_ptr<Batch>& b, std::vector<IngestOutcome> outcomes);

  boost::asio::io_context& io_;
  boost::asio::thread_pool& parsers_;
  Pipeline& pipeline_;
  Metrics& metrics_;
  const config::Imap& account_;
  std::string mailbox_;
  std::string prefix_;
  const std::set<std::string> own_addresses_;
  std::uint64_t uidvalidity_;
  boost::asio::steady_timer wake_;  // io thread only
  // Guards everything below. Recursive: a Pipeline may run `done` inside submit() (a stopped
  // writer fails the job at once), and pump() submits with the lock held.
  mutable std::recursive_mutex mu_;
  std::deque<std::shared_ptr<Batch>> queue_;  // UID order; front() is the next to commit
  bool at_writer_ = false;                    // queue_.front() has been submitted
  bool closed_ = false;
  boost::system::error_code failed_;
  std::vector<std::vector<std::uint64_t>> committed_;
  std::uint64_t last_uid_;    // of the last batch submitted (the cursor the store holds next)
  std::uint64_t after_done_;  // `after` settled up to this UID (after_applied)
  // The after_done of the last cursor committed; nullopt: the stored cursor must be replaced.
  std::optional<std::uint64_t> stored_after_done_;
};

}  // namespace sb::email
