// Streams whose key refuses entries while Redis otherwise works (an operator's
// `SET sb:q:billing:normal x` makes XADD answer WRONGTYPE). Their rows stay in the outbox, in
// seq order; the rows of every other stream go on (DESIGN-NOTES invariant 4). A held stream is
// retried with back-off (1 s doubling to 30 s) by reading just its rows, from its first held
// one up to the watermark: the common path never reads a held row twice, and rows of the stream
// past the watermark are held by the common path as it reaches them, so none overtakes another.
// After a restart the held rows are simply the outbox's first rows again.
//
// A held row lies below Redis's projection mark: the call that refused it raised the mark past
// it (the rows after it went in), and so did every later call. Deleted once its retry is in,
// it would be a row the mark claims while a snapshot of Redis taken before the retry lacks its
// entry: Redis restarted from that snapshot, the re-projection (reproject.cpp) starts above
// that mark and never sends it again. So a row Redis takes below the mark (Row::below) gets a
// new outbox row above everything instead (requeue): the common path sends that one, the
// marker skips it, and the mark rises past it only once the entry is in Redis.
#include <algorithm>

#include "core/log.hpp"
#include "relay/parts.hpp"

namespace sb {
using namespace relay_detail;

// A row its stream refused (or that waits behind one that was). The first of an episode is
// logged; the rest are counted.
void Relay::hold(const Row& r) {
  auto [it, first] = held_.try_emplace(r.stream);
  Held& h = it->second;
  if (first) {
    auto now = std::chrono::steady_clock::now();
    h = Held{r.queue, r.priority, r.seq, 0, r.error, now, now + kFirstRetry, kFirstRetry};
    logger("relay")->error(
        "[relay] stream {} refuses interaction {}: {}; its rows wait in the outbox (retried "
        "with back-off), the other streams go on",
        r.stream, r.id, r.error);
  }
  ++h.rows;
}

bool Relay::retry_held(Conn& c) {
  if (held_.empty()) {
    return true;
  }
  auto now = std::chrono::steady_clock::now();
  std::vector<std::string> due;
  for (const auto& [stream, h] : held_) {
    if (h.retry_at <= now) {
      due.push_back(stream);
    }
  }
  bool whole = true;
  for (const auto& stream : due) {
    if (!retry(c, stream, held_.at(stream))) {
      whole = false;
      break;
    }
  }
  publish_held();
  return whole;
}

// Sends a held stream's rows again, in seq order, up to kBatch of them. The stream is released
// once all its rows up to the watermark went in; at the first one refused it waits longer.
bool Relay::retry(Conn& c, const std::string& stream, Held& h) {
  Reader& rd = *reader_;
  Batch b;
  rd.db.exec("BEGIN");
  rd.held.bind(1, h.from_seq).bind(2, watermark_).bind(3, h.queue).bind(4, h.priority);
  rd.held.bind(5, kBatch);
  read_rows(c, rd.held, b, true);
  rd.db.exec("COMMIT");
  bool whole = b.sent.empty() || send(c, b);
  Taken taken;
  const Row* stuck = nullptr;
  for (const Row& r : b.rows) {
    if (r.fate != Row::Fate::added) {
      stuck = &r;  // refused again, or Redis as a whole failed: this row and the rest wait
      break;
    }
    if (r.below) {
      taken.add_below(r);  // the mark passed it while it was held
    } else {
      taken.add(r, false, cfg_.prefix);  // other streams' held rows may lie between
    }
  }
  h.rows = std::max<std::int64_t>(0, h.rows - static_cast<std::int64_t>(taken.rows()));
  remove(taken);
  auto now = std::chrono::steady_clock::now();
  if (stuck) {
    h.from_seq = stuck->seq;
    if (stuck->fate == Row::Fate::refused) {
      h.error = stuck->error;
      h.backoff = std::min(h.backoff * 2, kLastRetry);
      h.retry_at = now + h.backoff;
    }  // else unsent: retried as soon as Redis is back (the loop reconnects)
  } else if (b.rows.size() == static_cast<std::size_t>(kBatch)) {
    h.from_seq = b.rows.back().seq + 1;  // more held rows: on with them next loop
    h.retry_at = now;
  } else {
    logger("relay")->info(
        "[relay] stream {} takes entries again after {} s; its held rows are "
        "delivered",
        stream, std::chrono::duration_cast<std::chrono::seconds>(now - h.since).count());
    held_.erase(stream);
  }
  return whole;
}

// Copies what held() answers (other threads: /metrics, /readyz) and the total.
void Relay::publish_held() {
  std::vector<HeldStream> view;
  std::int64_t total = 0;
  for (const auto& [stream, h] : held_) {
    view.push_back(HeldStream{stream, h.rows, h.error});
    total += h.rows;
  }
  held_rows_ = total;
  std::lock_guard lock(held_mu_);
  held_view_ = std::move(view);
}

std::vector<Relay::HeldStream> Relay::held() const {
  std::lock_guard lock(held_mu_);
  return held_view_;
}

}  // namespace sb
