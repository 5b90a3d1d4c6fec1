#pragma once
// Small pieces of the poller: the IMAP client options of a [[channels.imap]] account.
#include <chrono>

#include "channels/email/imap_client.hpp"
#include "config/config.hpp"

namespace sb::email {

// Host, port, TLS mode, credentials; for auth = "xoauth2" with token_file the file is read now
// (on every connect), so a rotated token is picked up by the next session. A token_file that
// cannot be read, or is empty, sets `problem` (naming the file, never its content): the
// session then fails without connecting, as an empty token would only be refused, and the log
// would blame the server's "invalid credentials" instead of the file.
imap::ClientOptions account_options(const config::Imap& account,
                                    std::chrono::milliseconds io_timeout, std::string& problem);

}  // namespace sb::email
