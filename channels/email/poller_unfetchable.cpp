#include "channels/email/poller_state.hpp"
#include "core/log.hpp"

namespace sb::email {

// The batch of UIDs range_lo()..range_hi() failed batch_attempts times: each UID on its own. A
// UID that fails alone ends the session like any fetch failure; the next session (after the
// back-off) tries it alone again, and stores the placeholder once it failed uid_attempts times.
asio::awaitable<error_code> Poller::State::one_by_one(Mailbox& m, imap::Client& c,
                                                      BatchChain& chain, std::uint64_t& fetched,
                                                      std::size_t in_flight) {
  auto& failures = m.fetch_failures;
  const std::uint64_t hi = failures.range_hi();
  const std::uint64_t uidvalidity = c.mailbox().uidvalidity;
  auto uids = co_await c.search_uids(fetched + 1, hi);
  if (!uids) {
    co_return uids.error();
  }
  logger("email")->warn(
      "{} the FETCH of UIDs {}..{} failed {} times in a row ({}): fetching UIDs {}..{} one by one",
      m.prefix, failures.range_lo(), hi, failures.batch_failures(), failures.reason(), fetched + 1,
      hi);
  for (std::uint64_t uid : *uids) {
    if (stopping) {
      co_return error_code{};
    }
    if (failures.give_up(uid, m.account->unfetchable_after)) {
      give_up(m, chain, uidvalidity, uid);
    } else {
      if (failures.suspect(uid)) {
        // Everything before it is committed first: if it fails again, its placeholder is all
        // that is left to store, and the store does not need this connection.
        if (auto ec = co_await drain(m, c, chain, 0)) {
          co_return ec;
        }
      }
      auto one = co_await c.fetch_range(uid, uid);
      if (!one) {
        note_fetch_failure(m, c, one.error());
        if (failures.give_up(uid, m.account->unfetchable_after)) {
          give_up(m, chain, uidvalidity, uid);
          // The connection is gone (Dovecot closes it), the store is not: the placeholder
          // commits now, and the next session starts after it without the long back-off.
          while (chain.pending() > 0 && !chain.failed() && !stopping) {
            co_await chain.wait();
          }
          if (chain.pending() == 0) {
            m.failures = 0;
          }
        }
        co_return one.error();
      }
      note_vanished(m, *one);
      if (!one->messages.empty()) {
        chain.add(std::move(one->messages));
      }
    }
    fetched = uid;
    failures.passed(uid);
    if (auto ec = co_await drain(m, c, chain, in_flight - 1)) {
      co_return ec;
    }
  }
  fetched = std::max(fetched, hi);
  failures.passed(hi);
  co_return error_code{};
}

void Poller::State::note_fetch_failure(Mailbox& m, const imap::Client& c, error_code ec) {
  const auto& span = c.last_fetch();
  if (span.count == 0 || stopping) {
    return;  // the SEARCH before it failed, or stop() closed the connection
  }
  // RFC 5530 codes of a temporary state of the server, not of the message (and the THROTTLED
  // some providers answer with): never a reason to give a message up.
  const auto& code = c.last_reply_code();
  if (code == "UNAVAILABLE" || code == "INUSE" || code == "LIMIT" || code == "THROTTLED") {
    return;
  }
  // Dovecot drops the connection in the middle of the literal when a message file is shorter
  // than its recorded size: no BYE, just the end of the stream.
  std::string error =
      ec == asio::error::eof ? "the server closed the connection during the FETCH" : ec.message();
  m.fetch_failures.failed(span.lo, span.hi, span.count, fetch_failure_text(error, c.last_reply()));
}

void Poller::State::note_vanished(const Mailbox& m, const imap::FetchBatch& batch) {
  if (batch.vanished.empty()) {
    return;
  }
  std::string uids;
  for (std::size_t i = 0; i < batch.vanished.size() && i < 20; ++i) {
    uids += (uids.empty() ? "" : " ") + std::to_string(batch.vanished[i]);
  }
  if (batch.vanished.size() > 20) {
    uids += " ... (" + std::to_string(batch.vanished.size()) + " in all)";
  }
  bool one = batch.vanished.size() == 1;
  logger("email")->info(
      "{} {} {} {} listed but left out of the FETCH, and no longer listed: expunged meanwhile (by "
      "another client), nothing to store",
      m.prefix, one ? "UID" : "UIDs", uids, one ? "was" : "were");
}

void Poller::State::give_up(Mailbox& m, BatchChain& chain, std::uint64_t uidvalidity,
                            std::uint64_t uid) {
  const auto& why = m.fetch_failures.reason();
  logger("email")->error("{} UID {} cannot be fetched ({}); stored as malformed placeholder",
                         m.prefix, uid, why);
  metrics.inc("switchboard_email_unfetchable_total",
              {{"channel", "email"}, {"account", m.account->name}});
  chain.add_built(uid, unfetchable_inbound(m.account->name, m.name, uidvalidity, uid, why));
}

}  // namespace sb::email
