#pragma once
// Small pieces of the poller: the IMAP client options of a [[channels.imap]] account.
#include <chrono>

#include "channels/email/imap_client.hpp"
#include "config/config.hpp"

namespace sb::email {

// Host, port, TLS mode, credentials; for auth = "xoauth2" with token_file the file is read now
// (on every connect), so a rotated token is picked up by the next session.
imap::ClientOptions account_options(const config::Imap& account,
                                    std::chrono::milliseconds io_timeout);

}  // namespace sb::email
