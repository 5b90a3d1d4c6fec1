#include "channels/email/batch_chain.hpp"

#include <pthread.h>

// GCC 12 false positive inside Asio's awaitable frame allocator (see imap_client.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "channels/email/mime.hpp"
#include "channels/email/poller.hpp"
#include "channels/email/threading.hpp"
#include "core/log.hpp"

namespace sb::email {
namespace asio = boost::asio;

struct BatchChain::Batch {
  std::vector<imap::FetchedMessage> raw;  // until parsed
  std::vector<std::uint64_t> uids;
  std::vector<Inbound> items;  // without our own mail read back (set_aside_own_mail)
  std::size_t own = 0;         // messages of ours set aside: in `uids`, not in `items`
  bool parsed = false;
  std::uint64_t after_done = 0;  // what its cursor says (set when submitted)
  // No messages: only the cursor is written, to record `after` settled (record_after).
  bool cursor_only = false;
};

BatchChain::BatchChain(asio::io_context& io, asio::thread_pool& parsers, Pipeline& pipeline,
                       Metrics& metrics, const config::Imap& account, std::string mailbox,
                       std::string prefix, Cursor start, std::set<std::string> own_addresses)
    : io_(io),
      parsers_(parsers),
      pipeline_(pipeline),
      metrics_(metrics),
      account_(account),
      mailbox_(std::move(mailbox)),
      prefix_(std::move(prefix)),
      own_addresses_(std::move(own_addresses)),
      uidvalidity_(start.uidvalidity),
      wake_(io, asio::steady_timer::time_point::max()),
      last_uid_(start.last_uid),
      after_done_(start.after_done),
      stored_after_done_(start.after_done) {}

void BatchChain::add(std::vector<imap::FetchedMessage> messages) {
  auto b = std::make_shared<Batch>();
  b->raw = std::move(messages);
  {
    std::lock_guard lock(mu_);
    queue_.push_back(b);
  }
  // The parse job holds the chain: its result arrives even if the session has ended by then
  // (and is then dropped by pump()).
  asio::post(parsers_, [self = shared_from_this(), b] {
    thread_local bool named = false;
    if (!named) {
      pthread_setname_np(pthread_self(), "sb-email-parse");  // for top -H, perf, bench_imap
      named = true;
    }
    auto log = logger("email");
    b->items.reserve(b->raw.size());
    b->uids.reserve(b->raw.size());
    for (auto& msg : b->raw) {
      ParsedEmail parsed = parse_email(msg.raw);
      if (msg.truncated) {  // over the fetch cap: only its first bytes were read
        parsed.truncated = true;
        parsed.malformed = true;
        parsed.problems.push_back("larger than the fetch cap: " + std::to_string(msg.size) +
                                  " bytes");
      }
      if (parsed.malformed) {
        std::string why;
        for (const auto& p : parsed.problems) {
          why += (why.empty() ? "" : ", ") + p;
        }
        log->warn("{} UID {} is malformed ({}); stored with flag malformed", self->prefix_, msg.uid,
                  why);
      }
      b->items.push_back(to_inbound(std::move(parsed), self->account_.name, self->mailbox_));
      b->uids.push_back(msg.uid);
    }
    b->raw.clear();
    b->raw.shrink_to_fit();
    self->set_aside_own_mail(*b);
    self->parsed(b);
  });
}

// Our own mail read back from a mailbox we poll: the copy of a reply sent here that the server
// files in Sent Items (or Gmail's All Mail, or a Bcc to the customer), or mail someone sent
// from a mail client as the support address to a customer. Stored, it was a new inbound
// message from us: queued as customer work, with a customer made for our own address, for
// every reply. Ours is a message whose Message-ID a reply stored here went out with
// (Store::sent_here: a reply's stored copy has its interaction id as external id, so the store
// finds no duplicate), or one From one of our addresses whose To and Cc name none of them and
// whose Reply-To names no one else: the shape of a copy of outgoing mail. Mail From us and
// addressed to us is someone's work for us: a contact form that mails From support@ To
// support@ (the customer only in the body, or in Reply-To), billing@ (another account of this
// daemon) handing a case over to support@, a colleague whose login is an account's username.
// It is stored with the flag `from_us`, so rules can route it, and its customer is the
// Reply-To when that names someone else, else none (From names us: Store's store_new). Set
// aside before the store, not stored: the reply is recorded already as its outbound
// interaction. Its UID stays in the batch, so the cursor moves past it and `after` applies to
// it as to the rest.
void BatchChain::set_aside_own_mail(Batch& b) const {
  auto log = logger("email");
  // Only ids of our form are looked up (make_message_id, reply_message_id: "<sb."): other mail
  // costs no read.
  std::vector<std::string> ids;
  for (const auto& in : b.items) {
    if (in.external_id.rfind("<sb.", 0) == 0) {
      ids.push_back(in.external_id);
    }
  }
  std::vector<std::string> sent;
  if (!ids.empty()) {
    try {
      sent = pipeline_.sent_here(ids);
    } catch (const std::exception& e) {
      // Told by From and To alone this time; a copy with another From is stored, as it was
      // before.
      log->warn("{} looking up our sent Message-IDs failed: {}", prefix_, e.what());
    }
  }
  auto own = [this](const std::optional<Identity>& who) {
    return who && own_addresses_.contains(who->value);
  };
  // Whether `in` is set aside; mail From us that is kept is marked `from_us` here.
  auto ours = [&](Inbound& in) {
    if (std::find(sent.begin(), sent.end(), in.external_id) != sent.end()) {
      return true;
    }
    if (!own(in.from)) {
      return false;
    }
    const bool to_us =
        std::any_of(in.to.begin(), in.to.end(), [&](const Identity& t) { return own(t); });
    const bool reply_to_other = in.reply_to && !own(in.reply_to);
    if (!to_us && !reply_to_other) {
      return true;
    }
    in.flags.emplace_back("from_us");
    if (reply_to_other) {
      in.customer_address = in.reply_to;
    }
    return false;
  };
  std::size_t kept = 0;
  for (std::size_t i = 0; i < b.items.size(); ++i) {
    if (ours(b.items[i])) {
      log->debug("{} UID {} is our own mail ({} from {}): not stored", prefix_, b.uids[i],
                 b.items[i].external_id, b.items[i].from ? b.items[i].from->value : "");
      ++b.own;
      continue;
    }
    if (kept != i) {
      b.items[kept] = std::move(b.items[i]);
    }
    ++kept;
  }
  b.items.resize(kept);
}

void BatchChain::add_built(std::uint64_t uid, Inbound item) {
  auto b = std::make_shared<Batch>();
  b->uids.push_back(uid);
  b->items.push_back(std::move(item));
  {
    std::lock_guard lock(mu_);
    queue_.push_back(b);
  }
  parsed(b);
}

void BatchChain::parsed(const std::shared_ptr<Batch>& b) {
  {
    std::lock_guard lock(mu_);
    b->parsed = true;
    pump();
  }
  wake();
}

// Submits the oldest batch when it is parsed and nothing is at the writer. Called with mu_ held,
// and submits with it held, so that once close() has returned nothing more is submitted.
void BatchChain::pump() {
  if (closed_ || failed_ || at_writer_ || queue_.empty() || !queue_.front()->parsed) {
    return;
  }
  auto b = queue_.front();
  at_writer_ = true;
  if (!b->cursor_only) {
    logger("email")->debug("{} submitting UIDs {}..{}", prefix_, b->uids.front(), b->uids.back());
    last_uid_ = b->uids.back();
  }
  if (account_.after == "keep") {
    after_done_ = last_uid_;  // nothing is ever due
  }
  b->after_done = std::min(after_done_, last_uid_);
  CursorUpdate cursor{account_.name, mailbox_,
                      format_cursor({uidvalidity_, last_uid_, b->after_done})};
  // `done` runs on the writer thread right after the COMMIT (Pipeline contract): it only
  // counts, logs and hands over the next batch, which the writer then finds queued.
  pipeline_.submit(std::move(b->items), std::move(cursor),
                   [self = shared_from_this(), b](std::vector<IngestOutcome> outcomes) {
                     self->committed(b, std::move(outcomes));
                   });
}

void BatchChain::committed(const std::shared_ptr<Batch>& b, std::vector<IngestOutcome> outcomes) {
  auto log = logger("email");
  std::size_t stored = 0;
  std::size_t dups = 0;
  std::string error;
  for (const auto& o : outcomes) {
    if (!o.error.empty()) {
      error = o.error;
      break;
    }
    stored += o.created ? 1 : 0;
    dups += o.duplicate ? 1 : 0;
  }
  {
    // Everything that reads the account or the metrics happens before at_writer_ is cleared:
    // the session may end (and the Poller go away) as soon as it sees it cleared.
    std::lock_guard lock(mu_);
    if (b->cursor_only) {
      // A failed cursor-only commit reports one outcome with the error (Pipeline::submit).
      if (!error.empty()) {
        log->error("{} recording `after` done up to UID {} failed: {}", prefix_, b->after_done,
                   error);
        failed_ = make_error_code(boost::system::errc::io_error);
      } else {
        stored_after_done_ = b->after_done;
      }
    } else if (!error.empty()) {
      // The transaction rolled back: neither messages nor cursor moved. Fetched again by the
      // next session; nothing later is submitted, so the cursor cannot skip these UIDs.
      log->error("{} storing UIDs {}..{} failed: {}", prefix_, b->uids.front(), b->uids.back(),
                 error);
      failed_ = make_error_code(boost::system::errc::io_error);
    } else {
      Labels labels{{"channel", "email"}, {"account", account_.name}};
      metrics_.inc("switchboard_interactions_total", labels, stored);
      metrics_.inc("switchboard_duplicates_total", labels, dups);
      if (b->own > 0) {
        log->info("{} stored UIDs {}..{}: {} new, {} duplicates, {} of our own mail set aside",
                  prefix_, b->uids.front(), b->uids.back(), stored, dups, b->own);
      } else {
        log->info("{} stored UIDs {}..{}: {} new, {} duplicates", prefix_, b->uids.front(),
                  b->uids.back(), stored, dups);
      }
      stored_after_done_ = b->after_done;
      // After close() the session is gone: its cursor says `after` is due for these UIDs, and
      // the next session applies it from there.
      if (account_.after != "keep" && !closed_) {
        committed_.push_back(b->uids);
      }
    }
    at_writer_ = false;
    queue_.pop_front();
    pump();
  }
  wake();
}

std::size_t BatchChain::pending() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

bool BatchChain::at_writer() const {
  std::lock_guard lock(mu_);
  return at_writer_;
}

boost::system::error_code BatchChain::failed() const {
  std::lock_guard lock(mu_);
  return failed_;
}

std::vector<std::vector<std::uint64_t>> BatchChain::take_committed() {
  std::lock_guard lock(mu_);
  return std::exchange(committed_, {});
}

void BatchChain::after_applied(std::uint64_t uid) {
  std::lock_guard lock(mu_);
  after_done_ = std::max(after_done_, uid);
}

void BatchChain::replace_stored_cursor() {
  std::lock_guard lock(mu_);
  stored_after_done_.reset();
}

bool BatchChain::record_after() {
  {
    std::lock_guard lock(mu_);
    if (closed_ || failed_ || !queue_.empty() ||
        stored_after_done_ == std::min(after_done_, last_uid_)) {
      return false;
    }
    auto b = std::make_shared<Batch>();
    b->parsed = true;
    b->cursor_only = true;
    queue_.push_back(b);
    pump();
  }
  wake();
  return true;
}

asio::awaitable<void> BatchChain::wait() {
  co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
}

// The timer belongs to the io thread: cancel it there. A wake posted while the session is not
// waiting is harmless: the session checks the state before it waits again.
void BatchChain::wake() {
  asio::post(io_, [self = shared_from_this()] { self->wake_.cancel(); });
}

void BatchChain::close() {
  {
    std::lock_guard lock(mu_);
    closed_ = true;
  }
  wake();
}

}  // namespace sb::email
