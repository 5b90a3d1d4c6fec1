#pragma once
// Error values of the IMAP client (STYLE 6: errors as values). Network failures keep their
// Asio codes (connection_refused, eof, timed_out ...); these are the IMAP-level ones.
#include <boost/system/error_code.hpp>

namespace sb::email::imap {

enum class errc {
  protocol = 1,        // the server's bytes broke the grammar or a parser limit
  rejected,            // tagged NO
  bad_command,         // tagged BAD
  server_bye,          // untagged BYE, connection closing
  auth_failed,         // AUTHENTICATE / LOGIN answered NO
  tls_required,        // tls = "none" to a non-loopback address
  capability_missing,  // e.g. STARTTLS requested but not offered
  body_unavailable,    // a message's BODY[] came back NIL: a failed fetch of it, not an empty mail
  too_much_data,       // one command's responses passed the client's memory bound
  message_missing,     // a UID FETCH answered OK twice without a message UID SEARCH still lists
};

const boost::system::error_category& imap_category();
boost::system::error_code make_error_code(errc e);

// Whether retrying the same account later can help (network trouble, server restart), or the
// operator must act (bad password, TLS policy).
bool retryable(const boost::system::error_code& ec);

}  // namespace sb::email::imap

template <>
struct boost::system::is_error_code_enum<sb::email::imap::errc> : std::true_type {};
