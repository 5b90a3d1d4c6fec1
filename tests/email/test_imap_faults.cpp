// Faults a real server is hard to provoke: a connection cut in the middle of a literal, a
// literal over the size cap. A scripted server on a loopback port plays them.
#include <doctest/doctest.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <istream>
#include <optional>
#include <vector>

#include "channels/email/imap_client.hpp"
#include "channels/email/imap_utf7.hpp"
#include "tests/email/loopback_client.hpp"

namespace asio = boost::asio;
using namespace sb::email::imap;
using sb::test::loopback_options;
using sb::test::open_inbox;
using sb::test::run_client;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

// Answers CAPABILITY, AUTHENTICATE, SELECT and UID SEARCH like Dovecot; on UID FETCH it sends
// `fetch_reply` and closes the connection. A `select_reply` ("NO ...") refuses the SELECT.
asio::awaitable<void> scripted_server(asio::ip::tcp::acceptor& acceptor, std::string fetch_reply,
                                      std::string select_reply = "") {
  auto [aec, sock] = co_await acceptor.async_accept(use_tuple);
  if (aec) {
    co_return;
  }
  auto send = [&](std::string s) -> asio::awaitable<void> {
    co_await asio::async_write(sock, asio::buffer(s), use_tuple);
  };
  co_await send("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN IDLE] ready\r\n");
  asio::streambuf in;
  while (true) {
    auto [ec, n] = co_await asio::async_read_until(sock, in, "\r\n", use_tuple);
    if (ec) {
      co_return;
    }
    std::istream is(&in);
    std::string line;
    std::getline(is, line);
    std::string tag = line.substr(0, line.find(' '));
    std::string cmd = line.substr(tag.size() + 1);
    if (cmd.rfind("AUTHENTICATE", 0) == 0) {
      co_await send(tag + " OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
    } else if (cmd.rfind("SELECT", 0) == 0 && !select_reply.empty()) {
      co_await send(tag + " " + select_reply + "\r\n");
    } else if (cmd.rfind("SELECT", 0) == 0) {
      co_await send("* 1 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n" + tag + " OK done\r\n");
    } else if (cmd.rfind("UID SEARCH", 0) == 0) {
      co_await send("* SEARCH 1\r\n" + tag + " OK done\r\n");
    } else if (cmd.rfind("UID FETCH", 0) == 0) {
      co_await send(fetch_reply);
      sock.close();
      co_return;
    } else {
      co_await send(tag + " BAD unknown\r\n");
    }
  }
}

boost::system::result<FetchBatch> fetch_against(std::string fetch_reply, ParserLimits limits,
                                                std::string* reply = nullptr,
                                                std::string* reply_code = nullptr,
                                                std::size_t max_fetch_bytes = 64u << 20) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::co_spawn(io, scripted_server(acceptor, fetch_reply), asio::detached);
  auto o = loopback_options(acceptor.local_endpoint().port());
  o.limits = limits;
  o.max_fetch_bytes = max_fetch_bytes;
  boost::system::result<FetchBatch> out = make_error_code(errc::protocol);
  REQUIRE(run_client(io, o, [&](Client& c) -> asio::awaitable<void> {
    co_await open_inbox(c);
    out = co_await c.fetch_new(0, 10);
    if (reply != nullptr) {
      *reply = c.last_reply();
      *reply_code = c.last_reply_code();
    }
    CHECK(c.last_fetch().lo == 1);
    CHECK(c.last_fetch().count == 1);
  }));
  return out;
}

}  // namespace

TEST_CASE("a refused SELECT is described with the command and the server's words") {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::co_spawn(io, scripted_server(acceptor, "", "NO [NONEXISTENT] Unknown Mailbox"),
                 asio::detached);
  std::string described;
  std::string before;
  run_client(io, loopback_options(acceptor.local_endpoint().port()),
             [&](Client& c) -> asio::awaitable<void> {
               REQUIRE_FALSE(co_await c.connect());
               REQUIRE_FALSE(co_await c.login());
               auto r = co_await c.select("Archive");
               REQUIRE_FALSE(r.has_value());
               CHECK(r.error() == make_error_code(errc::rejected));
               described = c.describe(r.error());
               // Another error than the client's last: only its own message.
               before = c.describe(make_error_code(errc::server_bye));
             });
  CHECK(described == "SELECT failed: command rejected (NO): \"NO [NONEXISTENT] Unknown Mailbox\"");
  CHECK(before == "server closed the session (BYE)");
}

TEST_CASE("connection cut during a literal: an error value, retryable, no partial message") {
  auto r = fetch_against(
      "* 1 FETCH (UID 1 RFC822.SIZE 100 BODY[] {100}\r\nFrom: a@b\r\n"
      "Subject: only forty bytes arrive\r\n",
      {});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == asio::error::eof);
  CHECK(retryable(r.error()));
}

TEST_CASE("literal over the cap: protocol error instead of buffering it") {
  ParserLimits limits;
  limits.max_literal = 50;
  auto r = fetch_against("* 1 FETCH (UID 1 BODY[] {100}\r\n", limits);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(errc::protocol));
}

TEST_CASE("one FETCH response of many literals: refused once it outgrows one response's cap") {
  // Each literal is under max_literal, so only the response's total can stop it: 4 MB of
  // literals in one response that never ends, against a cap of max_literal + max_line (80 KiB;
  // the text between the literals, 7 KB, stays under max_line).
  std::string flood = "* 1 FETCH (UID 1 BODY[] {10}\r\n0123456789";
  for (int i = 0; i < 400; ++i) {
    flood += " X-JUNK {10000}\r\n" + std::string(10000, 'j');
  }
  ParserLimits limits;
  limits.max_literal = 16 << 10;
  limits.max_line = 64 << 10;
  auto r = fetch_against(flood, limits);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(errc::protocol));
}

TEST_CASE("a whole FETCH then a clean close still yields the message") {
  auto r = fetch_against("* 1 FETCH (UID 1 BODY[] {5}\r\nhello)\r\n", {});
  // The tagged OK never came: the batch is not trusted, the caller refetches after reconnect.
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == asio::error::eof);
}

TEST_CASE("a FETCH refused with NO: the server's words and response code are kept") {
  // Tags: sb1 AUTHENTICATE, sb2 SELECT, sb3 UID SEARCH, sb4 UID FETCH.
  std::string reply;
  std::string code;
  auto r =
      fetch_against("sb4 NO [UNAVAILABLE] Temporary failure, try later\r\n", {}, &reply, &code);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(errc::rejected));
  CHECK(reply == "NO [UNAVAILABLE] Temporary failure, try later");
  CHECK(code == "UNAVAILABLE");
}

TEST_CASE("a FETCH answered with BYE: its text is kept for the log and the placeholder") {
  std::string reply;
  std::string code;
  auto r = fetch_against("* BYE FETCH failed: Internal error occurred.\r\n", {}, &reply, &code);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(errc::server_bye));
  CHECK(reply == "BYE FETCH failed: Internal error occurred.");
  CHECK(code.empty());
}

TEST_CASE("a message whose BODY[] is NIL fails the fetch (retryable), not an empty message") {
  // RFC 3501 allows NIL for BODY[]: the server cannot give the content. Stored as an empty mail
  // it got the synthetic id of the empty message, and every later NIL was dropped as its
  // duplicate while the cursor moved past them.
  auto r = fetch_against("* 1 FETCH (UID 1 RFC822.SIZE 2048 BODY[] NIL)\r\nsb4 OK done\r\n", {});
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(errc::body_unavailable));
  CHECK(retryable(r.error()));
  auto empty = fetch_against("* 1 FETCH (UID 1 BODY[] {0}\r\n)\r\nsb4 OK done\r\n", {});
  REQUIRE(empty.has_value());  // an empty literal is a (strange) message, and is kept
  CHECK(empty->messages.size() == 1);
}

TEST_CASE("modified UTF-7 mailbox names (RFC 3501 5.1.3)") {
  CHECK(encode_mailbox_name("INBOX") == "INBOX");
  CHECK(encode_mailbox_name("Entwürfe") == "Entw&APw-rfe");
  CHECK(encode_mailbox_name("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
  CHECK(encode_mailbox_name("A&B") == "A&-B");
  CHECK(encode_mailbox_name("😀") == "&2D3eAA-");
  CHECK_FALSE(encode_mailbox_name("\xff").has_value());
}

namespace {

// Plays the SASL exchange: records every line the client sends; `accept` decides the outcome.
// On rejection it sends the XOAUTH2-style error challenge and waits for the empty answer.
asio::awaitable<void> auth_server(asio::ip::tcp::acceptor& acceptor, std::string caps, bool accept,
                                  std::vector<std::string>& lines) {
  auto [aec, sock] = co_await acceptor.async_accept(use_tuple);
  if (aec) {
    co_return;
  }
  asio::streambuf in;
  auto send = [&](std::string s) -> asio::awaitable<void> {
    co_await asio::async_write(sock, asio::buffer(s), use_tuple);
  };
  auto read_line = [&]() -> asio::awaitable<std::optional<std::string>> {
    auto [ec, n] = co_await asio::async_read_until(sock, in, "\r\n", use_tuple);
    if (ec) {
      co_return std::nullopt;
    }
    std::istream is(&in);
    std::string line;
    std::getline(is, line);
    line.pop_back();  // '\r'
    lines.push_back(line);
    co_return line;
  };
  co_await send("* OK [CAPABILITY " + caps + "] ready\r\n");
  while (auto line = co_await read_line()) {
    std::string tag = line->substr(0, line->find(' '));
    if (line->find("AUTHENTICATE") == std::string::npos) {
      co_await send("* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + " OK done\r\n");
      continue;
    }
    bool has_ir = std::count(line->begin(), line->end(), ' ') == 3;
    if (!has_ir) {
      co_await send("+ \r\n");
      if (!co_await read_line()) {
        co_return;
      }
    }
    if (accept) {
      co_await send(tag + " OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
    } else {
      co_await send("+ eyJzdGF0dXMiOiI0MDEifQ==\r\n");
      if (!co_await read_line()) {
        co_return;
      }
      co_await send(tag + " NO [AUTHENTICATIONFAILED] Invalid credentials\r\n");
    }
  }
}

boost::system::error_code login_against(std::string caps, bool accept, AuthMode mode,
                                        std::vector<std::string>& lines,
                                        std::string password = "p w",
                                        std::string* described = nullptr) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::co_spawn(io, auth_server(acceptor, caps, accept, lines), asio::detached);
  auto o = loopback_options(acceptor.local_endpoint().port());
  o.username = "u@x";
  o.password = password;
  o.auth = mode;
  o.access_token = "tok";
  boost::system::error_code out;
  REQUIRE(run_client(io, o, [&](Client& c) -> asio::awaitable<void> {
    REQUIRE_FALSE(co_await c.connect());
    out = co_await c.login();
    if (described != nullptr) {
      *described = c.describe(out);
    }
  }));
  return out;
}

}  // namespace

TEST_CASE("XOAUTH2 with SASL-IR sends the bearer token in the initial response") {
  std::vector<std::string> lines;
  auto ec = login_against("IMAP4rev1 SASL-IR AUTH=XOAUTH2", true, AuthMode::xoauth2, lines);
  CHECK_FALSE(ec);
  REQUIRE_FALSE(lines.empty());
  CHECK(lines[0] == "sb1 AUTHENTICATE XOAUTH2 dXNlcj11QHgBYXV0aD1CZWFyZXIgdG9rAQE=");
}

TEST_CASE("XOAUTH2 rejected: the error challenge gets an empty line, then auth_failed") {
  std::vector<std::string> lines;
  auto ec = login_against("IMAP4rev1 AUTH=XOAUTH2", false, AuthMode::xoauth2, lines);
  CHECK(ec == make_error_code(errc::auth_failed));
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == "sb1 AUTHENTICATE XOAUTH2");
  CHECK(lines[1] == "dXNlcj11QHgBYXV0aD1CZWFyZXIgdG9rAQE=");
  CHECK(lines[2].empty());
}

TEST_CASE("XOAUTH2 not offered: capability_missing, nothing sent") {
  std::vector<std::string> lines;
  auto ec = login_against("IMAP4rev1 AUTH=PLAIN", true, AuthMode::xoauth2, lines);
  CHECK(ec == make_error_code(errc::capability_missing));
  CHECK(lines.empty());
}

TEST_CASE("PLAIN without SASL-IR answers the continuation") {
  std::vector<std::string> lines;
  auto ec = login_against("IMAP4rev1 AUTH=PLAIN", true, AuthMode::password, lines);
  CHECK_FALSE(ec);
  REQUIRE(lines.size() >= 2);
  CHECK(lines[0] == "sb1 AUTHENTICATE PLAIN");
  CHECK(lines[1] == "AHVAeABwIHc=");
}

TEST_CASE("no AUTH=PLAIN: LOGIN with quoted arguments") {
  std::vector<std::string> lines;
  auto ec = login_against("IMAP4rev1", true, AuthMode::password, lines);
  CHECK_FALSE(ec);
  REQUIRE_FALSE(lines.empty());
  CHECK(lines[0] == "sb1 LOGIN \"u@x\" \"p w\"");
}

TEST_CASE("a server that never stops answering one command: an error, not unbounded memory") {
  // 4 MB of untagged responses to a FETCH of one message; the client holds at most twice
  // max_fetch_bytes plus one literal (here 2 * 64 KiB + 16 KiB) before it gives up.
  std::string flood;
  for (int i = 0; i < 4000; ++i) {
    flood += "* OK " + std::string(1000, 'z') + "\r\n";
  }
  ParserLimits limits;
  limits.max_literal = 16 << 10;
  auto r = fetch_against(flood, limits, nullptr, nullptr, 64 << 10);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == make_error_code(errc::too_much_data));
  CHECK(retryable(r.error()));
}

TEST_CASE("a non-ASCII password without AUTH=PLAIN: the error says what the server lacks") {
  std::vector<std::string> lines;
  std::string described;
  auto ec = login_against("IMAP4rev1", true, AuthMode::password, lines, "p\xC3\xA4ss", &described);
  CHECK(ec == make_error_code(errc::capability_missing));
  CHECK(lines.empty());  // nothing was sent
  CHECK(described.find("LOGIN failed") == 0);
  CHECK(described.find("not plain ASCII") != std::string::npos);
  CHECK(described.find("AUTH=PLAIN") != std::string::npos);
  CHECK(described.find("p\xC3\xA4ss") == std::string::npos);
}

TEST_CASE("a refused login names the mechanism and the server's words, never the credentials") {
  std::vector<std::string> lines;
  std::string described;
  auto ec = login_against("IMAP4rev1 SASL-IR AUTH=XOAUTH2", false, AuthMode::xoauth2, lines, "p w",
                          &described);
  CHECK(ec == make_error_code(errc::auth_failed));
  CHECK(described ==
        "AUTHENTICATE XOAUTH2 failed: authentication failed: \"NO [AUTHENTICATIONFAILED] Invalid "
        "credentials\"");
}
