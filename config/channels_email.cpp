// [[channels.imap]] and [[channels.smtp]].
#include <strings.h>

#include <set>
#include <string>

#include "config/channels_common.hpp"
#include "config/validate.hpp"

namespace sb::config::detail {

namespace {

// Default ports by TLS mode when `port` is not given (RFC 8314: 993/465 implicit TLS;
// 143/587 for STARTTLS or plaintext submission; 25 for plain SMTP relay).
std::uint16_t default_port(const std::string& tls, std::uint16_t implicit, std::uint16_t starttls,
                           std::uint16_t none) {
  if (tls == "starttls") {
    return starttls;
  }
  return tls == "none" ? none : implicit;
}

}  // namespace

void read_imap(TableReader& r, ChannelNames& names, Imap& out) {
  names.read(r, "imap", out.name);
  r.str("host", out.host, true);
  r.one_of("tls", out.tls, {"implicit", "starttls", "none"});
  if (!r.port("port", out.port) && !r.has("port")) {
    out.port = default_port(out.tls, 993, 143, 143);
  }
  check_plaintext(r, out.host, out.tls);
  r.str("ca_file", out.ca_file);
  r.str("username", out.username, true);
  r.one_of("auth", out.auth, {"password", "xoauth2"});
  const bool xoauth2 = out.auth == "xoauth2";
  r.secret("password", out.password, !xoauth2);
  // XOAUTH2 (RFC 7628 style SASL): a static token, or a file an external refresher rewrites.
  const bool has_token = r.has("token") || r.has("token_env");
  // token_file is not the secret's file form (read once per load) but a path kept and read at
  // each login, as the refresher rewrites it between reloads.
  r.secret("token", out.token, false, /*file_form=*/false);
  r.str("token_file", out.token_file);
  if (xoauth2 && !has_token && out.token_file.empty()) {
    r.ctx().add(r.line_of_key("auth"),
                "channels.imap with auth = \"xoauth2\" needs token, "
                "token_env or token_file");
  }
  if (xoauth2 && has_token && !out.token_file.empty()) {
    r.ctx().add(r.line_of_key("token_file"),
                "give only one of channels.imap.token(_env) and channels.imap.token_file");
  }
  if (r.strings("mailboxes", out.mailboxes, false, true)) {
    // Each mailbox is polled with its own cursor; one listed twice was polled twice, and two
    // pollers raced on one cursor. INBOX is case-insensitive (RFC 3501 section 5.1), other names
    // are not.
    std::set<std::string> seen;
    for (const std::string& mailbox : out.mailboxes) {
      std::string key = mailbox;
      if (key.size() == 5 && strncasecmp(key.c_str(), "INBOX", 5) == 0) {
        key = "INBOX";
      }
      if (!seen.insert(key).second) {
        r.ctx().add(r.line_of_key("mailboxes"),
                    "channels.imap.mailboxes lists \"" + mailbox + "\" twice");
      }
    }
  }
  r.duration("poll_interval", out.poll_interval);
  r.duration("unfetchable_after", out.unfetchable_after);
  read_backfill(r, out.backfill);
  std::string after;
  if (r.str("after", after)) {
    if (is_valid_after(after)) {
      out.after = after;
    } else {
      r.ctx().add(r.line_of_key("after"),
                  "channels.imap.after must be keep, seen or "
                  "move:<Folder> (got \"" +
                      after + "\")");
    }
  }
  r.finish();
}

void read_smtp(TableReader& r, ChannelNames& names, Smtp& out) {
  names.read(r, "smtp", out.name);
  if (r.str("for", out.for_account, true) && !names.has_imap(out.for_account)) {
    r.ctx().add(r.line_of_key("for"), "channels.smtp.for names no [[channels.imap]] account: \"" +
                                          out.for_account + "\"");
  }
  r.str("host", out.host, true);
  r.one_of("tls", out.tls, {"implicit", "starttls", "none"});
  if (!r.port("port", out.port) && !r.has("port")) {
    out.port = default_port(out.tls, 465, 587, 25);
  }
  check_plaintext(r, out.host, out.tls);
  r.str("ca_file", out.ca_file);
  // Authentication is optional (a local relay may take mail without it), but a username
  // without a password is a mistake.
  r.str("username", out.username);
  r.secret("password", out.password, !out.username.empty());
  r.str("from", out.from, true);
  r.finish();
}

}  // namespace sb::config::detail
