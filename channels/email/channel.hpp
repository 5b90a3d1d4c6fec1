#pragma once
// The email channel as the daemon sees it: the IMAP poller of every [[channels.imap]] account
// and the SMTP sender of every [[channels.smtp]] account, registered under ("email", `for`).
#include <boost/asio/io_context.hpp>
#include <memory>
#include <vector>

#include "channels/email/poller.hpp"
#include "channels/email/smtp.hpp"
#include "config/config.hpp"
#include "core/sender.hpp"
#include "http/metrics.hpp"
#include "storage/pipeline.hpp"

namespace sb::email {

class EmailChannel {
 public:
  EmailChannel(boost::asio::io_context& io, Pipeline& pipeline, Metrics& metrics,
               const config::Channels& channels, SenderRegistry& senders,
               PollerOptions options = {});
  void start();  // spawns the mailbox loops on the io_context
  void stop();   // after it returns nothing more is stored
  // A reload's new IMAP and SMTP passwords, of the accounts whose secrets alone changed
  // (config::take_secrets): on the io thread, from the next login and the next send on.
  void take_secrets(const config::Channels& fresh);

 private:
  std::unique_ptr<Poller> poller_;
  std::vector<std::shared_ptr<SmtpSender>> senders_;
};

}  // namespace sb::email
