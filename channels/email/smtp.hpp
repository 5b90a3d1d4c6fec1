#pragma once
// Replies by email: the sb::Sender of one [[channels.smtp]] account, registered under
// ("email", <its `for` imap account>), so the reply route finds it from the interaction being
// answered. The reply is built with GMime (RFC 2047 headers, UTF-8 quoted-printable body) and
// handed to smtp::send.
//
// Threading: the Message-ID we send is "<sb.<conversation_id>.<outbound id>@<from domain>>",
// derived from the outbound interaction id when the reply is stored (planned_id()) and kept
// with it (sends.planned_id), so a send retried after a crash carries the same Message-ID, even
// when `from` changed domain in between, and later replies name the one it went out with
// (OutboundMessage::earlier_ids). It is known before the first attempt: planned_thread_keys()
// gives its key, "email:<imap account>:<Message-ID>", which the reply route records with the
// outbound interaction, in the transaction that stores it (and the send loop again with the
// result). The customer's answer names it in In-Reply-To / References and finds the conversation by
// that key, even though our sent message is not in the mailbox. The conversation id inside the
// Message-ID is never read back (threading.hpp): only the full id, as recorded, threads.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/sender.hpp"

namespace sb::email {

struct BuiltReply {
  std::string error;       // non-empty: cannot be built (permanent)
  std::string message_id;  // "<...>"
  std::string mail_from;   // envelope sender (bare address)
  std::string rcpt_to;     // envelope recipient (bare address)
  std::string data;        // the RFC 5322 message, CRLF line ends
};

// From (the account's `from`), To (the customer: the parent's Reply-To, else its sender, or
// its first recipient when the parent is outbound; never one of `own` nor the
// account's own `from`, which would mail ourselves: a loop), Subject "Re: <parent subject>"
// (the parent's reply prefixes stripped first, strip_reply_prefixes; controls as spaces),
// In-Reply-To (parent Message-ID; for our own earlier reply, the Message-ID
// it was sent with: message.earlier_ids, else reply_message_id() of its id), References
// (thread_json {"references":
// [...]}, else the parent's stored "references", else its In-Reply-To; then the parent's
// Message-ID), Message-ID (message.planned_id, else reply_message_id()), Date, MIME-Version,
// text/plain; charset=utf-8.
BuiltReply build_reply(const config::Smtp& account, const OutboundMessage& message,
                       std::int64_t now_ms, const std::set<std::string>& own = {});

// The addresses the email channel owns, lower-cased: every [[channels.imap]] username that is
// an address (a mailbox we poll) and every [[channels.smtp]] `from` and address username. A
// reply to any of them would come back in through a mailbox we poll.
std::set<std::string> own_addresses(const config::Channels& channels);

// "email:<imap account>:<message id>": the thread_record of an outbound interaction.
std::vector<std::string> reply_thread_keys(std::string_view imap_account,
                                           std::string_view message_id);

// The Message-ID build_reply gives the reply `outbound_id` in `conversation_id` from `account`:
// "<sb.<conversation_id>.<outbound_id lower-cased, letters, digits, '-' and '_' only>@<domain
// of from>>"; "" when it is not derived (no address in `from`/`username`, or an id with no
// letter or digit: build_reply makes a random one then).
std::string reply_message_id(const config::Smtp& account, std::string_view outbound_id,
                             std::string_view conversation_id);

class SmtpSender : public Sender {
 public:
  // Throws at start-up when ca_file cannot be read. `own` (lower-cased): addresses
  // of ours a reply must not go to (own_addresses() above); the account's `from` always is.
  SmtpSender(boost::asio::any_io_executor ex, config::Smtp account, std::set<std::string> own = {});
  void send(OutboundMessage message, Done done) override;
  bool own_identity(std::string_view type, std::string_view value) const override;
  std::vector<std::string> planned_thread_keys(std::string_view outbound_id,
                                               std::string_view conversation_id) const override;
  // reply_message_id() of the account as it is when the reply is stored.
  std::string planned_id(std::string_view outbound_id,
                         std::string_view conversation_id) const override;
  // A reload's new password for this account, when it alone changed (config::take_secrets).
  // On the io thread, where send() reads it (the send loop calls it there): the next send logs
  // in with it. Nothing else of the account changes, so own_identity() and
  // planned_thread_keys(), which other threads call, read what they always did.
  void take_secrets(const std::vector<config::Smtp>& fresh);

 private:
  boost::asio::any_io_executor ex_;
  config::Smtp account_;
  std::set<std::string> own_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
};

}  // namespace sb::email
