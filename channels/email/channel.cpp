#include "channels/email/channel.hpp"

#include "channels/email/smtp.hpp"
#include "core/log.hpp"

namespace sb::email {

EmailChannel::EmailChannel(boost::asio::io_context& io, Pipeline& pipeline, Metrics& metrics,
                           const config::Channels& channels, SenderRegistry& senders,
                           PollerOptions options) {
  // Every account's sender knows all our addresses: a reply through one account to another's
  // mailbox loops just the same. So does the poller: our mail read back from any of them (a
  // Sent folder, a Bcc) is not customer work.
  std::set<std::string> own = own_addresses(channels);
  if (!channels.imap.empty()) {
    options.own_addresses = own;
    poller_ = std::make_unique<Poller>(io, pipeline, metrics, channels.imap, options);
  }
  // `for` names the imap account a smtp account answers for (config validation checks it).
  for (const auto& s : channels.smtp) {
    senders_.push_back(std::make_shared<SmtpSender>(io.get_executor(), s, own));
    senders.add("email", s.for_account, senders_.back());
    logger("email")->info("[email:{}] replies go out through smtp {} ({}:{})", s.for_account,
                          s.name, s.host, s.port);
  }
}

void EmailChannel::start() {
  if (poller_) {
    poller_->start();
  }
}

void EmailChannel::take_secrets(const config::Channels& fresh) {
  if (poller_) {
    poller_->take_secrets(fresh.imap);
  }
  for (const auto& s : senders_) {
    s->take_secrets(fresh.smtp);
  }
}

void EmailChannel::stop() {
  if (poller_) {
    poller_->stop();
  }
}

}  // namespace sb::email
