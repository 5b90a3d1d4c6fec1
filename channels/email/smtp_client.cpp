#include "channels/email/smtp_client.hpp"
#include "channels/email/base64.hpp"
#include "core/printable.hpp"

// GCC 12 false positive inside Asio's awaitable frame allocator (see imap_client.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace sb::email::smtp {
namespace asio = boost::asio;
using boost::system::error_code;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_reply = 64 * 1024;  // a server's reply, all lines together

struct Reply {
  int code = 0;
  std::string text;                // all lines' text, joined by "; "
  std::vector<std::string> lines;  // text of each line (EHLO keywords)
};

class Session {
 public:
  Session(asio::any_io_executor ex, asio::ssl::context& tls, const Options& o)
      : o_(o), stream_(ex, tls), timer_(ex) {}
  ~Session() { *alive_ = false; }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  asio::awaitable<error_code> connect() {
    tcp::resolver resolver(stream_.get_executor());
    arm();
    auto [rec, eps] = co_await resolver.async_resolve(o_.host, std::to_string(o_.port), use_tuple);
    if (rec) {
      disarm();
      co_return rec;
    }
    auto [cec, ep] = co_await asio::async_connect(stream_.next_layer(), eps, use_tuple);
    disarm();
    co_return timed_out_ ? asio::error::timed_out : cec;
  }

  // SNI plus RFC 6125 host name check; a mismatch fails the handshake.
  asio::awaitable<error_code> handshake() {
    SSL_set_tlsext_host_name(stream_.native_handle(), o_.host.c_str());
    stream_.set_verify_mode(asio::ssl::verify_peer);
    stream_.set_verify_callback(asio::ssl::host_name_verification(o_.host));
    arm();
    auto [ec] = co_await stream_.async_handshake(asio::ssl::stream_base::client, use_tuple);
    disarm();
    tls_ = !ec;
    // RFC 3207 5: anything the server sent before the handshake must be discarded (command
    // injection); the buffer only holds plaintext bytes at this point.
    buf_.clear();
    co_return timed_out_ ? asio::error::timed_out : ec;
  }

  asio::awaitable<error_code> write(std::string_view data) {
    arm();
    auto [ec, n] =
        tls_ ? co_await asio::async_write(stream_, asio::buffer(data), use_tuple)
             : co_await asio::async_write(stream_.next_layer(), asio::buffer(data), use_tuple);
    disarm();
    co_return timed_out_ ? asio::error::timed_out : ec;
  }

  // One reply, possibly multi-line ("250-..." continues, "250 ..." ends it), of at most
  // max_reply bytes in all: the buffer's cap bounds one line, and a server sending "250-x" lines
  // without end (each in time for the deadline) would otherwise fill memory.
  asio::awaitable<error_code> read(Reply& r, std::chrono::milliseconds timeout = {}) {
    r = {};
    std::size_t total = 0;
    while (true) {
      arm(timeout);
      auto dyn = asio::dynamic_buffer(buf_, max_reply);
      auto [ec, n] =
          tls_ ? co_await asio::async_read_until(stream_, dyn, "\r\n", use_tuple)
               : co_await asio::async_read_until(stream_.next_layer(), dyn, "\r\n", use_tuple);
      disarm();
      if (timed_out_) {
        co_return asio::error::timed_out;
      }
      if (ec) {
        co_return ec;
      }
      total += n;
      if (total > max_reply) {
        co_return asio::error::message_size;
      }
      std::string line = buf_.substr(0, n - 2);
      buf_.erase(0, n);
      if (!smtp_reply_line(line)) {
        // Another service on this port (an IMAP or POP3 server's greeting, an HTTP proxy):
        // trying again later reaches the same one, so the failure is permanent (failure()).
        not_smtp_ = line;
        co_return asio::error::invalid_argument;
      }
      r.code = std::stoi(line.substr(0, 3));
      std::string text = line.size() > 4 ? line.substr(4) : "";
      r.text += (r.text.empty() ? "" : "; ") + text;
      r.lines.push_back(text);
      if (line.size() == 3 || line[3] == ' ') {
        co_return error_code{};
      }
    }
  }

  // `reply_timeout`: how long the reply may take (0: the step timeout).
  asio::awaitable<error_code> command(std::string_view line, Reply& r,
                                      std::chrono::milliseconds reply_timeout = {}) {
    if (auto ec = co_await write(std::string(line) + "\r\n")) {
      co_return ec;
    }
    co_return co_await read(r, reply_timeout);
  }

  void close() {
    error_code ignored;
    stream_.next_layer().close(ignored);
  }

  // What failed at `step` with `ec`: temporary (network, TLS, a deadline), unless the server's
  // answer was not SMTP at all, which no retry changes.
  Outcome failure(const error_code& ec, std::string_view step) const {
    if (!not_smtp_.empty()) {
      return {Outcome::Status::permanent, 0,
              std::string(step) +
                  ": the server's answer is not an SMTP reply (another service on this port?): "
                  "\"" +
                  printable(not_smtp_, 120) + "\""};
    }
    return {Outcome::Status::temporary, 0, std::string(step) + ": " + ec.message()};
  }

 private:
  // RFC 5321 4.2: Reply-code ("2".."5", "0".."5", a digit), then SP, "-" or the line's end.
  static bool smtp_reply_line(std::string_view line) {
    return line.size() >= 3 && line[0] >= '2' && line[0] <= '5' && line[1] >= '0' &&
           line[1] <= '5' && line[2] >= '0' && line[2] <= '9' &&
           (line.size() == 3 || line[3] == ' ' || line[3] == '-');
  }

  // A watchdog per operation: on expiry the socket is closed, which fails the pending
  // operation; the session is unusable afterwards, and the caller gives up on it.
  // `alive_` and the generation guard against an expiry already queued when the operation
  // finished (or the session ended).
  void arm(std::chrono::milliseconds timeout = {}) {
    timed_out_ = false;
    std::uint64_t gen = ++gen_;
    timer_.expires_after(timeout.count() > 0 ? timeout : o_.timeout);
    timer_.async_wait([this, alive = alive_, gen](error_code ec) {
      if (!ec && *alive && gen == gen_) {
        timed_out_ = true;
        close();
      }
    });
  }
  void disarm() {
    ++gen_;
    timer_.cancel();
  }

  const Options& o_;
  asio::ssl::stream<tcp::socket> stream_;
  asio::steady_timer timer_;
  std::string buf_;
  std::string not_smtp_;  // the line that was not an SMTP reply
  bool tls_ = false;
  bool timed_out_ = false;
  std::uint64_t gen_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

Outcome from_reply(const Reply& r, std::string_view step) {
  Outcome o;
  o.code = r.code;
  o.status = r.code >= 500 ? Outcome::Status::permanent : Outcome::Status::temporary;
  o.error = std::string(step) + ": " + std::to_string(r.code) + " " + r.text;
  return o;
}

// The EHLO keywords (extensions) for an error message: printable, cut.
std::string extensions(const Reply& ehlo) {
  std::string out;
  for (std::size_t i = 1; i < ehlo.lines.size(); ++i) {  // the first line is the greeting
    out += (out.empty() ? "" : ", ") + ehlo.lines[i];
  }
  return out.empty() ? "none" : printable(out, 200);
}

// RFC 4954 3: "AUTH" SP mechanisms; the pre-standard "AUTH=" form (old Outlook-era servers)
// as well. Upper-cased.
std::vector<std::string> auth_mechanisms(const Reply& ehlo) {
  std::vector<std::string> out;
  for (const auto& l : ehlo.lines) {
    if (l.size() < 5 || (l[4] != ' ' && l[4] != '=') ||
        !std::equal(l.begin(), l.begin() + 4, "AUTH", [](char a, char b) {
          return std::toupper(static_cast<unsigned char>(a)) == b;
        })) {
      continue;
    }
    std::string word;
    for (char c : l.substr(5) + " ") {
      if (c == ' ') {
        if (!word.empty() && std::find(out.begin(), out.end(), word) == out.end()) {
          out.push_back(word);
        }
        word.clear();
      } else {
        word += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      }
    }
  }
  return out;
}

bool has_keyword(const Reply& ehlo, std::string_view kw) {
  for (const auto& l : ehlo.lines) {
    if (l.size() >= kw.size() && std::equal(kw.begin(), kw.end(), l.begin(), [](char a, char b) {
          return std::toupper(a) == std::toupper(b);
        })) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string dot_stuff(std::string_view data) {
  std::string out;
  out.reserve(data.size() + data.size() / 50 + 2);
  bool line_start = true;
  for (std::size_t i = 0; i < data.size(); ++i) {
    char c = data[i];
    if (line_start && c == '.') {
      out += '.';
    }
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n') {
        ++i;
      }
      out += "\r\n";
      line_start = true;
      continue;
    }
    out += c;
    line_start = false;
  }
  if (!line_start) {
    out += "\r\n";
  }
  return out;
}

asio::awaitable<Outcome> send(asio::any_io_executor ex, asio::ssl::context& tls, Options o,
                              Envelope env) {
  Session s(ex, tls, o);
  Reply r;
  if (auto ec = co_await s.connect()) {
    co_return s.failure(ec, "connect");
  }
  if (o.tls == "implicit") {
    if (auto ec = co_await s.handshake()) {
      co_return s.failure(ec, "TLS handshake");
    }
  }
  if (auto ec = co_await s.read(r)) {
    co_return s.failure(ec, "greeting");
  }
  if (r.code != 220) {
    co_return from_reply(r, "greeting");
  }
  const std::string ehlo = "EHLO " + o.helo_name;
  if (auto ec = co_await s.command(ehlo, r)) {
    co_return s.failure(ec, "EHLO");
  }
  if (r.code != 250) {
    co_return from_reply(r, "EHLO");
  }
  if (o.tls == "starttls") {
    if (!has_keyword(r, "STARTTLS")) {
      // Never sent in plain text instead: a man in the middle strips "250-STARTTLS" from the
      // EHLO reply for exactly that (RFC 3207 6), and the password would cross readable.
      co_return Outcome{
          Outcome::Status::permanent, 0,
          "EHLO: the server does not offer STARTTLS (tls = \"starttls\"); it offers: " +
              extensions(r)};
    }
    if (auto ec = co_await s.command("STARTTLS", r)) {
      co_return s.failure(ec, "STARTTLS");
    }
    if (r.code != 220) {
      co_return from_reply(r, "STARTTLS");
    }
    if (auto ec = co_await s.handshake()) {
      co_return s.failure(ec, "TLS handshake");
    }
    // RFC 3207 4.2: forget what EHLO said before TLS and ask again.
    if (auto ec = co_await s.command(ehlo, r)) {
      co_return s.failure(ec, "EHLO");
    }
    if (r.code != 250) {
      co_return from_reply(r, "EHLO");
    }
  }
  if (!o.username.empty()) {
    auto mechanisms = auth_mechanisms(r);
    auto offered = [&mechanisms](std::string_view m) {
      return std::find(mechanisms.begin(), mechanisms.end(), m) != mechanisms.end();
    };
    if (offered("PLAIN")) {
      std::string creds = std::string(1, '\0') + o.username + '\0' + o.password;
      if (auto ec = co_await s.command("AUTH PLAIN " + base64(creds), r)) {
        co_return s.failure(ec, "AUTH");
      }
    } else if (offered("LOGIN")) {
      if (auto ec = co_await s.command("AUTH LOGIN", r)) {
        co_return s.failure(ec, "AUTH");
      }
      if (r.code == 334) {
        if (auto ec = co_await s.command(base64(o.username), r)) {
          co_return s.failure(ec, "AUTH");
        }
      }
      if (r.code == 334) {
        if (auto ec = co_await s.command(base64(o.password), r)) {
          co_return s.failure(ec, "AUTH");
        }
      }
    } else {
      std::string names;
      for (const auto& m : mechanisms) {
        names += (names.empty() ? "" : " ") + m;
      }
      co_return Outcome{Outcome::Status::permanent, 0,
                        "AUTH: the server offers neither AUTH PLAIN nor AUTH LOGIN (username is "
                        "set); " +
                            (names.empty() ? std::string("its EHLO names no AUTH mechanism at all")
                                           : "it offers AUTH " + printable(names, 120))};
    }
    if (r.code != 235) {
      co_return from_reply(r, "AUTH");
    }
  }
  if (auto ec = co_await s.command("MAIL FROM:<" + env.mail_from + ">", r)) {
    co_return s.failure(ec, "MAIL FROM");
  }
  if (r.code != 250) {
    co_return from_reply(r, "MAIL FROM");
  }
  for (const auto& rcpt : env.rcpt_to) {
    if (auto ec = co_await s.command("RCPT TO:<" + rcpt + ">", r)) {
      co_return s.failure(ec, "RCPT TO");
    }
    if (r.code != 250 && r.code != 251) {
      co_return from_reply(r, "RCPT TO");
    }
  }
  if (auto ec = co_await s.command("DATA", r)) {
    co_return s.failure(ec, "DATA");
  }
  if (r.code != 354) {
    co_return from_reply(r, "DATA");
  }
  if (auto ec = co_await s.command(dot_stuff(env.data) + ".", r, o.final_reply_timeout)) {
    co_return s.failure(ec, "message body");
  }
  if (r.code != 250) {
    co_return from_reply(r, "message body");
  }
  // The message is accepted; QUIT is a courtesy and its failure changes nothing.
  co_await s.command("QUIT", r);
  s.close();
  co_return Outcome{Outcome::Status::sent, 250, {}};
}

}  // namespace sb::email::smtp
