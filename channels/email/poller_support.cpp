#include "channels/email/poller_support.hpp"

#include "channels/email/poller.hpp"

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>
#include <system_error>

namespace sb::email {

std::optional<Cursor> parse_cursor(const std::string& value) {
  // Up to three numbers separated by ':'; the third (after_done) is optional.
  std::uint64_t n[3] = {0, 0, 0};
  std::size_t count = 0;
  const char* p = value.data();
  const char* end = value.data() + value.size();
  while (count < 3) {
    auto r = std::from_chars(p, end, n[count]);
    if (r.ec != std::errc{}) {
      return std::nullopt;
    }
    ++count;
    p = r.ptr;
    if (p == end || *p != ':') {
      break;
    }
    ++p;
  }
  if (p != end || count < 2 || n[0] == 0) {
    return std::nullopt;
  }
  Cursor c{n[0], n[1], count == 3 ? n[2] : n[1]};
  if (c.after_done > c.last_uid) {
    return std::nullopt;
  }
  return c;
}

std::string format_cursor(const Cursor& c) {
  std::string out = std::to_string(c.uidvalidity) + ":" + std::to_string(c.last_uid);
  if (c.after_due()) {
    out += ":" + std::to_string(c.after_done);
  }
  return out;
}

imap::ClientOptions account_options(const config::Imap& a, std::chrono::milliseconds io_timeout,
                                    std::string& problem) {
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
      if (!f) {
        problem = "token_file " + a.token_file + " cannot be read (" +
                  std::generic_category().message(errno) + "); nothing was sent to the server";
        return opts;
      }
      std::stringstream ss;
      ss << f.rdbuf();
      std::string t = ss.str();
      while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) {
        t.pop_back();
      }
      if (t.empty()) {
        problem = "token_file " + a.token_file + " is empty; nothing was sent to the server";
      }
      opts.access_token = t;
    }
  }
  return opts;
}

}  // namespace sb::email
