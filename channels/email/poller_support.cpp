#include "channels/email/poller_support.hpp"

#include "channels/email/poller.hpp"

#include <charconv>
#include <fstream>
#include <sstream>

namespace sb::email {

std::optional<Cursor> parse_cursor(const std::string& value) {
  auto colon = value.find(':');
  if (colon == std::string::npos) {
    return std::nullopt;
  }
  Cursor c;
  const char* b = value.data();
  auto r1 = std::from_chars(b, b + colon, c.uidvalidity);
  auto r2 = std::from_chars(b + colon + 1, b + value.size(), c.last_uid);
  if (r1.ec != std::errc{} || r1.ptr != b + colon || r2.ec != std::errc{} ||
      r2.ptr != b + value.size() || c.uidvalidity == 0) {
    return std::nullopt;
  }
  return c;
}

std::string format_cursor(const Cursor& c) {
  return std::to_string(c.uidvalidity) + ":" + std::to_string(c.last_uid);
}

imap::ClientOptions account_options(const config::Imap& a, std::chrono::milliseconds io_timeout) {
  imap::ClientOptions opts;
  opts.host = a.host;
  opts.port = a.port;
  opts.tls = a.tls == "none"       ? imap::TlsMode::none
             : a.tls == "starttls" ? imap::TlsMode::starttls
                                   : imap::TlsMode::implicit;
  opts.username = a.username;
  opts.password = a.password;
  opts.io_timeout = io_timeout;
  if (a.auth == "xoauth2") {
    opts.auth = imap::AuthMode::xoauth2;
    opts.access_token = a.token;
    if (!a.token_file.empty()) {  // re-read on every connect: the token may have been rotated
      std::ifstream f(a.token_file);
      std::stringstream ss;
      ss << f.rdbuf();
      std::string t = ss.str();
      while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) {
        t.pop_back();
      }
      opts.access_token = t;
    }
  }
  return opts;
}

}  // namespace sb::email
