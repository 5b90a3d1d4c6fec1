#include "channels/email/batch_chain.hpp"

#include <pthread.h>

// GCC 12 false positive inside Asio's awaitable frame allocator (see imap_client.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "channels/email/mime.hpp"
#include "channels/email/poller.hpp"
#include "channels/email/threading.hpp"
#include "core/log.hpp"
#include "storage/async_pipeline.hpp"

namespace sb::email {
namespace asio = boost::asio;

struct BatchChain::Batch {
  std::vector<imap::FetchedMessage> raw;  // until parsed
  std::vector<std::uint64_t> uids;
  std::vector<Inbound> items;
  bool parsed = false;
};

BatchChain::BatchChain(asio::io_context& io, asio::thread_pool& parsers, Pipeline& pipeline,
                       Metrics& metrics, const config::Imap& account, std::string mailbox,
                       std::string prefix, std::uint64_t uidvalidity)
    : io_(io),
      parsers_(parsers),
      pipeline_(pipeline),
      metrics_(metrics),
      account_(account),
      mailbox_(std::move(mailbox)),
      prefix_(std::move(prefix)),
      uidvalidity_(uidvalidity),
      wake_(io, asio::steady_timer::time_point::max()) {}

void BatchChain::add(std::vector<imap::FetchedMessage> messages) {
  auto b = std::make_shared<Batch>();
  b->raw = std::move(messages);
  queue_.push_back(b);
  // The parse job holds the chain: its result is posted back even if the session has ended
  // by then (and is then dropped by pump()).
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
      if (parsed.malformed) {
        std::string why;
        for (const auto& p : parsed.problems) {
          why += (why.empty() ? "" : ", ") + p;
        }
        log->warn("{} UID {} is malformed ({}); stored with flag malformed", self->prefix_,
                  msg.uid, why);
      }
      b->items.push_back(to_inbound(std::move(parsed), self->account_.name, self->mailbox_));
      b->uids.push_back(msg.uid);
    }
    b->raw.clear();
    b->raw.shrink_to_fit();
    asio::post(self->io_, [self, b] { self->parsed(b); });
  });
}

void BatchChain::parsed(const std::shared_ptr<Batch>& b) {
  b->parsed = true;
  pump();
  wake_.cancel();
}

// Submits the oldest batch when it is parsed and nothing is at the writer.
void BatchChain::pump() {
  if (closed_ || failed_ || at_writer_ || queue_.empty() || !queue_.front()->parsed) {
    return;
  }
  auto b = queue_.front();
  at_writer_ = true;
  logger("email")->debug("{} submitting UIDs {}..{}", prefix_, b->uids.front(), b->uids.back());
  CursorUpdate cursor{account_.name, mailbox_, format_cursor({uidvalidity_, b->uids.back()})};
  async_submit(pipeline_, std::move(b->items), std::move(cursor),
               asio::bind_executor(io_, [self = shared_from_this(), b](auto outcomes) {
                 self->committed(b, std::move(outcomes));
               }));
}

void BatchChain::committed(const std::shared_ptr<Batch>& b, std::vector<IngestOutcome> outcomes) {
  auto log = logger("email");
  at_writer_ = false;
  queue_.pop_front();
  std::size_t stored = 0;
  std::size_t dups = 0;
  for (const auto& o : outcomes) {
    if (!o.error.empty()) {
      // The transaction rolled back: neither messages nor cursor moved. Fetched again by the
      // next session; nothing later is submitted, so the cursor cannot skip these UIDs.
      log->error("{} storing UIDs {}..{} failed: {}", prefix_, b->uids.front(), b->uids.back(),
                 o.error);
      failed_ = make_error_code(boost::system::errc::io_error);
      wake_.cancel();
      return;
    }
    stored += o.created ? 1 : 0;
    dups += o.duplicate ? 1 : 0;
  }
  Labels labels{{"channel", "email"}, {"account", account_.name}};
  metrics_.inc("switchboard_interactions_total", labels, stored);
  metrics_.inc("switchboard_duplicates_total", labels, dups);
  log->info("{} stored UIDs {}..{}: {} new, {} duplicates", prefix_, b->uids.front(),
            b->uids.back(), stored, dups);
  if (account_.after != "keep" && !closed_) {
    committed_.push_back(std::move(b->uids));
  }
  pump();
  wake_.cancel();
}

std::vector<std::vector<std::uint64_t>> BatchChain::take_committed() {
  return std::exchange(committed_, {});
}

asio::awaitable<void> BatchChain::wait() {
  co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
}

void BatchChain::close() {
  closed_ = true;
  wake_.cancel();
}

}  // namespace sb::email
