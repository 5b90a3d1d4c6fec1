#pragma once
// A message the IMAP server cannot deliver must not stop its mailbox (issue 4, DESIGN-NOTES
// invariant 4). Dovecot, for one, drops the connection in the middle of the literal when a
// Maildir file is shorter than its S= size ("Cached message size larger than expected"), and
// answers `* BYE FETCH failed: Internal error occurred` when it cannot open the file: every
// UID FETCH naming that UID fails, and retrying the batch for ever holds back all later mail.
//
// A server restart or a network drop fails a FETCH the same way once, so the poller only
// narrows down after the same batch failed `batch_attempts` times in a row (each attempt a new
// session after back-off): it then fetches that batch's UIDs one at a time. A UID whose
// single-message FETCH failed in `uid_attempts` sessions is given up: a placeholder
// interaction flagged `malformed` and `unfetchable` is stored in the transaction that moves the
// cursor past it, and the next UIDs are fetched.
//
// This bookkeeping lives in the mailbox's loop, across its sessions (memory only: after a
// daemon restart the count starts again).
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/interaction.hpp"

namespace sb::email {

class FetchFailures {
 public:
  static constexpr int batch_attempts = 3;
  static constexpr int uid_attempts = 2;

  // A UID FETCH naming `count` UIDs from `lo` to `hi` failed, `why` as the server put it.
  void failed(std::uint64_t lo, std::uint64_t hi, std::size_t count, std::string why);
  // Every UID up to `uid` was fetched (or given up): what failed there is forgotten.
  void passed(std::uint64_t uid);
  // The next fetch starts after `fetched`: whether it must go UID by UID, up to range_hi().
  bool narrowing(std::uint64_t fetched) const {
    return batch_failures_ >= batch_attempts && fetched < hi_;
  }
  std::uint64_t range_lo() const { return lo_; }
  std::uint64_t range_hi() const { return hi_; }
  int batch_failures() const { return batch_failures_; }
  // `uid` alone failed before (in an earlier session).
  bool suspect(std::uint64_t uid) const { return uid == uid_ && uid_failures_ > 0; }
  // `uid` alone failed in uid_attempts sessions, and its own failures seen so far span at least
  // `failing_for` (a failure seen, not time passed: a server that recovered while the poller
  // waited out its back-off gets its retry): store the placeholder instead.
  bool give_up(std::uint64_t uid, std::chrono::milliseconds failing_for = {}) const {
    return uid == uid_ && uid_failures_ >= uid_attempts && uid_last_ - uid_first_ >= failing_for;
  }
  const std::string& reason() const { return why_; }

 private:
  std::uint64_t lo_ = 0;  // the failing batch
  std::uint64_t hi_ = 0;
  int batch_failures_ = 0;
  std::uint64_t uid_ = 0;  // the failing single UID
  int uid_failures_ = 0;
  std::chrono::steady_clock::time_point uid_first_, uid_last_;  // its first and latest failure
  std::string why_;
};

// "the server closed the session (BYE): FETCH failed: Internal error occurred..." from the
// error and the server's last words (Client::last_reply()).
std::string fetch_failure_text(const std::string& error, std::string_view server_reply);

// The placeholder of a message that could not be fetched: flags `malformed` and
// `unfetchable`, the reason in its text, an external id made of mailbox, UIDVALIDITY and UID
// (stable: a replay after a crash is a duplicate).
sb::Inbound unfetchable_inbound(std::string_view account, std::string_view mailbox,
                                std::uint64_t uidvalidity, std::uint64_t uid, std::string_view why);

}  // namespace sb::email
