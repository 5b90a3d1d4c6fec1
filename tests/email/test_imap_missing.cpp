// The IMAP client against a scripted server (scripted_imap.hpp): a UID FETCH answered OK that
// leaves out a message UID SEARCH listed is fetched again, and then either found expunged or
// failed - never passed over; a greeting that is not IMAP and a SELECT without UIDVALIDITY are
// errors that say what the server sent.
#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <functional>

#include "channels/email/imap_client.hpp"
#include "tests/email/loopback_client.hpp"
#include "tests/email/scripted_imap.hpp"

namespace asio = boost::asio;
using namespace sb::email::imap;
using sb::test::loopback_options;
using sb::test::open_inbox;
using sb::test::run_client;
using sb::test::ScriptedImap;

namespace {

std::string mail(int n) {
  return "From: c" + std::to_string(n) + "@example.com\r\nSubject: message " + std::to_string(n) +
         "\r\nMessage-ID: <m" + std::to_string(n) + "@example.com>\r\n\r\nbody " +
         std::to_string(n) + "\r\n";
}

// Connects, logs in and selects INBOX, then runs `body` on the client; bounded in time.
void with_client(ScriptedImap& server, const std::function<asio::awaitable<void>(Client&)>& body,
                 std::size_t max_fetch_bytes = 64u << 20) {
  server.start();
  asio::io_context io;
  auto o = loopback_options(server.port);
  o.max_fetch_bytes = max_fetch_bytes;
  REQUIRE(run_client(io, o, [&](Client& c) -> asio::awaitable<void> {
    co_await open_inbox(c);
    co_await body(c);
  }));
}

std::vector<std::uint64_t> uids_of(const FetchBatch& b) {
  std::vector<std::uint64_t> out;
  for (const auto& m : b.messages) {
    out.push_back(m.uid);
  }
  return out;
}

using Uids = std::vector<std::uint64_t>;

// Leaves `uid` out of the first `times` UID FETCH commands that name it.
ScriptedImap::Omit leave_out(std::uint64_t uid, int times) {
  auto seen = std::make_shared<int>(0);
  return [uid, times, seen](int, const Uids& asked, std::set<std::uint64_t>&) {
    std::set<std::uint64_t> out;
    if (std::find(asked.begin(), asked.end(), uid) != asked.end() && (*seen)++ < times) {
      out.insert(uid);
    }
    return out;
  };
}

}  // namespace

TEST_CASE(
    "a UID FETCH answered OK without a message SEARCH listed, twice, fails the fetch - never "
    "passed over") {
  ScriptedImap server;
  for (int i = 1; i <= 3; ++i) {
    server.add(i, mail(i));
  }
  server.omit = leave_out(2, 1000);
  boost::system::result<FetchBatch> out = FetchBatch{};
  std::string described;
  Client::FetchSpan span;
  with_client(server, [&](Client& c) -> asio::awaitable<void> {
    out = co_await c.fetch_new(0, 10);
    if (!out) {
      described = c.describe(out.error());
    }
    span = c.last_fetch();
  });
  REQUIRE_FALSE(out.has_value());
  CHECK(out.error() == make_error_code(errc::message_missing));
  CHECK(retryable(out.error()));
  MESSAGE(described);
  CHECK(described.find("UID FETCH failed: the server answered the UID FETCH with OK but left out "
                       "a message it still lists") == 0);
  CHECK(described.find("UID 2 was left out twice, and UID SEARCH still lists it") !=
        std::string::npos);
  // The span of the batch, for the poller's retries and its narrowing down to UID 2.
  CHECK(span.lo == 1);
  CHECK(span.hi == 3);
  CHECK(span.count == 3);
  auto cmds = server.commands();
  REQUIRE(cmds.size() >= 4);
  CHECK(cmds[cmds.size() - 3].rfind("UID FETCH 1:3 (", 0) == 0);
  CHECK(cmds[cmds.size() - 2].rfind("UID FETCH 2 (", 0) == 0);  // once more, alone
  CHECK(cmds.back() == "UID SEARCH UID 2:2");                   // still there?
}

TEST_CASE(
    "a message left out of a UID FETCH once comes with the second FETCH - the batch is whole") {
  ScriptedImap server;
  for (int i = 1; i <= 4; ++i) {
    server.add(i, mail(i));
  }
  server.omit = leave_out(2, 1);
  boost::system::result<FetchBatch> out = FetchBatch{};
  with_client(server,
              [&](Client& c) -> asio::awaitable<void> { out = co_await c.fetch_new(0, 10); });
  REQUIRE(out.has_value());
  CHECK(uids_of(*out) == Uids{1, 2, 3, 4});
  CHECK(out->vanished.empty());
  CHECK(out->messages[1].raw == mail(2));
  CHECK(out->bytes == mail(1).size() + mail(2).size() + mail(3).size() + mail(4).size());
  CHECK(server.count("UID SEARCH") == 1);  // found at once: no SEARCH after it
}

TEST_CASE(
    "a message expunged by another client between SEARCH and FETCH is reported vanished, not "
    "failed") {
  ScriptedImap server;
  for (int i = 1; i <= 3; ++i) {
    server.add(i, mail(i));
  }
  // RFC 3501 6.4.8: a UID that no longer exists is ignored without an error.
  server.omit = [](int n, const Uids&, std::set<std::uint64_t>& expunge) {
    if (n == 1) {
      expunge.insert(2);
      return std::set<std::uint64_t>{2};
    }
    return std::set<std::uint64_t>{};
  };
  boost::system::result<FetchBatch> out = FetchBatch{};
  with_client(server,
              [&](Client& c) -> asio::awaitable<void> { out = co_await c.fetch_new(0, 10); });
  REQUIRE(out.has_value());
  CHECK(uids_of(*out) == Uids{1, 3});
  CHECK(out->vanished == Uids{2});
  CHECK(out->covered_to == 3);
}

TEST_CASE(
    "fetch_range: gaps of UIDs that never existed cost one SEARCH - a message left out in a "
    "range fails it") {
  SUBCASE("no gap: no SEARCH") {
    ScriptedImap server;
    for (int i = 1; i <= 3; ++i) {
      server.add(i, mail(i));
    }
    boost::system::result<FetchBatch> out = FetchBatch{};
    with_client(server,
                [&](Client& c) -> asio::awaitable<void> { out = co_await c.fetch_range(1, 3); });
    REQUIRE(out.has_value());
    CHECK(uids_of(*out) == Uids{1, 2, 3});
    CHECK(server.count("UID SEARCH") == 0);
  }
  SUBCASE("UIDs that do not exist: one SEARCH, nothing fetched again") {
    ScriptedImap server;
    for (int i : {1, 2, 5}) {
      server.add(i, mail(i));
    }
    boost::system::result<FetchBatch> out = FetchBatch{};
    with_client(server,
                [&](Client& c) -> asio::awaitable<void> { out = co_await c.fetch_range(1, 6); });
    REQUIRE(out.has_value());
    CHECK(uids_of(*out) == Uids{1, 2, 5});
    CHECK(out->covered_to == 6);
    CHECK(out->vanished.empty());
    CHECK(server.count("UID SEARCH UID 1:6") == 1);
    CHECK(server.count("UID FETCH") == 1);
  }
  SUBCASE("a message the server leaves out") {
    ScriptedImap server;
    for (int i = 1; i <= 3; ++i) {
      server.add(i, mail(i));
    }
    server.omit = leave_out(2, 1000);
    boost::system::result<FetchBatch> out = FetchBatch{};
    with_client(server,
                [&](Client& c) -> asio::awaitable<void> { out = co_await c.fetch_range(1, 3); });
    REQUIRE_FALSE(out.has_value());
    CHECK(out.error() == make_error_code(errc::message_missing));
  }
  SUBCASE("one UID alone (the poller narrowing down): left out, it fails") {
    ScriptedImap server;
    for (int i = 1; i <= 3; ++i) {
      server.add(i, mail(i));
    }
    server.omit = leave_out(2, 1000);
    boost::system::result<FetchBatch> out = FetchBatch{};
    Client::FetchSpan span;
    with_client(server, [&](Client& c) -> asio::awaitable<void> {
      out = co_await c.fetch_range(2, 2);
      span = c.last_fetch();
    });
    REQUIRE_FALSE(out.has_value());
    CHECK(out.error() == make_error_code(errc::message_missing));
    CHECK(span.count == 1);
    CHECK(span.lo == 2);
  }
}

TEST_CASE(
    "the second FETCH of a left-out message counts the batch's bodies against max_fetch_bytes, "
    "and keeps its first") {
  ScriptedImap server;
  for (int i = 1; i <= 3; ++i) {
    server.add(i, mail(i));
  }
  server.omit = leave_out(1, 1);
  boost::system::result<FetchBatch> out = FetchBatch{};
  // One body fills the budget: the first FETCH keeps 2 and drops 3 (the batch ends at 2); the
  // second brings 1 though the batch is over its budget already.
  with_client(
      server, [&](Client& c) -> asio::awaitable<void> { out = co_await c.fetch_new(0, 10); },
      mail(2).size());
  REQUIRE(out.has_value());
  CHECK(uids_of(*out) == Uids{1, 2});
  CHECK(out->covered_to == 2);
  CHECK(out->more);
}

TEST_CASE("a greeting that is not IMAP: the error quotes it (printable, cut) and says so") {
  auto connect_error = [](const std::string& greeting) {
    ScriptedImap server;
    server.set_greeting(greeting);
    server.start();
    asio::io_context io;
    std::pair<boost::system::error_code, std::string> out;
    run_client(io, loopback_options(server.port), [&](Client& c) -> asio::awaitable<void> {
      out.first = co_await c.connect();
      out.second = c.describe(out.first);
    });
    MESSAGE(out.second);
    return out;
  };
  // An SMTP server on the IMAP port.
  auto smtp = connect_error("220 mx.example.com ESMTP Postfix\r\n");
  CHECK(smtp.first == make_error_code(errc::protocol));
  CHECK(smtp.second.find("greeting failed: IMAP protocol error: not an IMAP greeting: \"220 "
                         "mx.example.com ESMTP Postfix\"") == 0);
  // Terminal escapes never reach the log; a long line is cut.
  auto garbage = connect_error("\x1b]0;owned\x07" + std::string(500, 'x') + "\r\n");
  CHECK(garbage.first == make_error_code(errc::protocol));
  CHECK(garbage.second.find('\x1b') == std::string::npos);
  CHECK(garbage.second.find('\x07') == std::string::npos);
  CHECK(garbage.second.find("...") != std::string::npos);
  CHECK(garbage.second.size() < 300);
  // A well-formed response that is no greeting.
  auto no = connect_error("* NO [UNAVAILABLE] maintenance\r\n");
  CHECK(no.first == make_error_code(errc::protocol));
  CHECK(no.second.find("not an IMAP greeting (\"* OK ...\"): \"* NO maintenance\"") !=
        std::string::npos);
  // BYE: the server's words.
  auto bye = connect_error("* BYE Too many connections from your IP\r\n");
  CHECK(bye.first == make_error_code(errc::server_bye));
  CHECK(bye.second ==
        "greeting failed: server closed the session (BYE): \"BYE Too many connections from your "
        "IP\"");
  // Nothing at all, then the end of the stream.
  auto silent = connect_error("");
  CHECK(silent.first);
  CHECK(silent.second.find("greeting failed") == 0);
}

TEST_CASE("a SELECT without UIDVALIDITY is a protocol error that says why it matters") {
  ScriptedImap server;
  server.set_uidvalidity(false);
  server.start();
  asio::io_context io;
  boost::system::error_code ec;
  std::string described;
  run_client(io, loopback_options(server.port), [&](Client& c) -> asio::awaitable<void> {
    REQUIRE_FALSE(co_await c.connect());
    REQUIRE_FALSE(co_await c.login());
    auto r = co_await c.select("INBOX");
    REQUIRE_FALSE(r.has_value());
    ec = r.error();
    described = c.describe(ec);
  });
  CHECK(ec == make_error_code(errc::protocol));
  CHECK(described.find("SELECT failed: IMAP protocol error: no UIDVALIDITY in the answer") == 0);
}
