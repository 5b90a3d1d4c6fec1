#include "channels/email/unfetchable.hpp"

#include <algorithm>

namespace sb::email {

void FetchFailures::failed(std::uint64_t lo, std::uint64_t hi, std::size_t count, std::string why) {
  // The same batch again (or one overlapping it: the next session may start its batches a
  // little earlier or later) counts as a repeat; anything else starts a new count. A single UID
  // of the batch being fetched one by one keeps the batch's range.
  bool repeat = batch_failures_ > 0 && lo <= hi_ && hi >= lo_;
  bool inside = repeat && lo >= lo_ && hi <= hi_;
  batch_failures_ = repeat ? batch_failures_ + 1 : 1;
  if (!inside) {
    lo_ = lo;
    hi_ = hi;
  }
  if (count == 1) {
    auto now = std::chrono::steady_clock::now();
    if (uid_ == lo && uid_failures_ > 0) {
      ++uid_failures_;
    } else {
      uid_failures_ = 1;
      uid_first_ = now;
    }
    uid_last_ = now;
    uid_ = lo;
  }
  why_ = std::move(why);
}

void FetchFailures::passed(std::uint64_t uid) {
  if (uid >= hi_) {
    lo_ = hi_ = 0;
    batch_failures_ = 0;
  }
  if (uid >= uid_) {
    uid_ = 0;
    uid_failures_ = 0;
  }
}

std::string fetch_failure_text(const std::string& error, std::string_view server_reply) {
  if (server_reply.empty()) {
    return error;
  }
  return error + ": " + std::string(server_reply);
}

sb::Inbound unfetchable_inbound(std::string_view account, std::string_view mailbox,
                                std::uint64_t uidvalidity, std::uint64_t uid,
                                std::string_view why) {
  sb::Inbound in;
  in.channel = "email";
  in.account = std::string(account);
  in.kind = "email";
  std::string where = std::string(mailbox) + " UID " + std::to_string(uid) + " (UIDVALIDITY " +
                      std::to_string(uidvalidity) + ")";
  in.external_id = "<unfetchable." + std::to_string(uidvalidity) + "." + std::to_string(uid) + "." +
                   std::string(mailbox) + "@switchboard.invalid>";
  in.subject = "(message could not be fetched)";
  in.text = "message could not be fetched from the server: " + std::string(why) +
            "\n\nIMAP mailbox " + where +
            ". The message is still on the server; ask its administrator to repair it.";
  in.flags = {"malformed", "unfetchable"};
  return in;
}

}  // namespace sb::email
