// The IMAP client against a real Dovecot (dovecot.hpp): plain to loopback, implicit TLS,
// STARTTLS, authentication, SELECT, batched UID FETCH, IDLE, and the failure values.
#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <exception>

#include "channels/email/imap_client.hpp"
#include "channels/email/mime.hpp"
#include "dovecot.hpp"
#include "tests/email/loopback_client.hpp"

namespace asio = boost::asio;
using namespace sb::email::imap;
using sb::test::loopback_options;
using sb::test::open_inbox;
using sb::test::run_client;
using namespace std::chrono_literals;

namespace {

// Runs one test coroutine to completion, bounded in time.
template <typename F>
void run_bounded(F body, std::chrono::seconds limit = std::chrono::seconds(30)) {
  asio::io_context io;
  std::exception_ptr error;
  bool done = false;
  asio::co_spawn(io, body(io.get_executor()), [&](std::exception_ptr e) {
    error = e;
    done = true;
  });
  io.run_for(limit);
  REQUIRE(done);
  if (error) {
    std::rethrow_exception(error);
  }
}

std::string message(int n) {
  return "From: Customer " + std::to_string(n) + " <c" + std::to_string(n) +
         "@example.com>\r\nTo: support@example.com\r\nSubject: message " + std::to_string(n) +
         "\r\nMessage-ID: <m" + std::to_string(n) + "@example.com>\r\n\r\nbody " +
         std::to_string(n) + "\r\n";
}

ClientOptions options(const Dovecot& dv, TlsMode tls) {
  ClientOptions o;
  o.host = tls == TlsMode::implicit || tls == TlsMode::starttls ? "localhost" : "127.0.0.1";
  o.port = tls == TlsMode::implicit ? dv.imaps_port() : dv.imap_port();
  o.tls = tls;
  o.username = Dovecot::user;
  o.password = Dovecot::password;
  o.io_timeout = 5s;
  o.connect_timeout = 5s;
  return o;
}

asio::ssl::context tls_context(const Dovecot& dv) {
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.set_verify_mode(asio::ssl::verify_peer);
  ctx.load_verify_file(dv.ca_file());
  return ctx;
}

// The first messages of INBOX, up to UID `hi`, by a UID range or by SEARCH (at most 10).
// (Two statements, not `?:` with a co_await in each arm: GCC 12 mis-destroys those.)
asio::awaitable<boost::system::result<FetchBatch>> fetch_first(Client& c, bool ranged,
                                                               std::uint64_t hi) {
  boost::system::result<FetchBatch> b = FetchBatch{};
  if (ranged) {
    b = co_await c.fetch_range(1, hi);
  } else {
    b = co_await c.fetch_new(0, 10);
  }
  co_return b;
}

}  // namespace

TEST_CASE("plain loopback: login, select, batched fetch, n:* quirk, no \\Seen") {
  Dovecot dv;
  for (int i = 1; i <= 5; ++i) {
    dv.deliver(message(i));
  }
  auto ctx = tls_context(dv);
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Client c(ex, ctx, options(dv, TlsMode::none));
    REQUIRE_FALSE(co_await c.connect());
    CHECK(c.has_capability("IMAP4REV1"));
    REQUIRE_FALSE(co_await c.login());
    CHECK(c.has_capability("IDLE"));
    auto box = co_await c.select("INBOX");
    REQUIRE(box.has_value());
    CHECK(box->uidvalidity > 0);
    CHECK(box->exists == 5);
    CHECK(box->uidnext == 6);

    auto b1 = co_await c.fetch_new(0, 2);
    REQUIRE(b1.has_value());
    REQUIRE(b1->messages.size() == 2);
    CHECK(b1->more);
    CHECK(b1->messages[0].uid == 1);
    CHECK(b1->messages[1].uid == 2);
    CHECK(b1->messages[0].raw == message(1));
    CHECK(b1->messages[0].size == message(1).size());
    CHECK(sb::email::parse_email(b1->messages[1].raw).subject == "message 2");

    auto b2 = co_await c.fetch_new(2, 10);
    REQUIRE(b2.has_value());
    REQUIRE(b2->messages.size() == 3);
    CHECK_FALSE(b2->more);
    CHECK(b2->messages.back().uid == 5);

    // "UID 6:*" matches the highest message (UID 5): nothing may come back.
    auto b3 = co_await c.fetch_new(5, 10);
    REQUIRE(b3.has_value());
    CHECK(b3->messages.empty());
    CHECK_FALSE(co_await c.logout());
  });
  // BODY.PEEK[] left every message unseen.
  std::string flags = dv.doveadm("fetch -u alice flags mailbox INBOX");
  CHECK(flags.find("\\Seen") == std::string::npos);
}

TEST_CASE("implicit TLS verifies the certificate and the host name") {
  Dovecot dv;
  dv.deliver(message(1));
  auto ctx = tls_context(dv);
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Client c(ex, ctx, options(dv, TlsMode::implicit));
    REQUIRE_FALSE(co_await c.connect());
    REQUIRE_FALSE(co_await c.login());
    auto box = co_await c.select("INBOX", /*read_only=*/true);
    REQUIRE(box.has_value());
    auto b = co_await c.fetch_new(0, 10);
    REQUIRE(b.has_value());
    CHECK(b->messages.size() == 1);

    auto wrong_name = options(dv, TlsMode::implicit);
    wrong_name.host = "127.0.0.1";  // the certificate names only "localhost"
    Client c2(ex, ctx, wrong_name);
    auto ec = co_await c2.connect();
    CHECK(ec);
    CHECK(ec.category() != imap_category());  // a TLS verification failure

    asio::ssl::context untrusting(asio::ssl::context::tls_client);  // no CA loaded
    Client c3(ex, untrusting, options(dv, TlsMode::implicit));
    CHECK(co_await c3.connect());
  });
}

TEST_CASE("STARTTLS upgrades the plain port, then logs in") {
  Dovecot dv;
  auto ctx = tls_context(dv);
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Client c(ex, ctx, options(dv, TlsMode::starttls));
    REQUIRE_FALSE(co_await c.connect());
    CHECK_FALSE(c.has_capability("STARTTLS"));  // capabilities re-read after the handshake
    REQUIRE_FALSE(co_await c.login());
    CHECK((co_await c.select("INBOX")).has_value());
  });
}

TEST_CASE("IDLE returns on new mail, and quietly when its period ends") {
  Dovecot dv;
  auto ctx = tls_context(dv);
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Client c(ex, ctx, options(dv, TlsMode::none));
    REQUIRE_FALSE(co_await c.connect());
    REQUIRE_FALSE(co_await c.login());
    REQUIRE((co_await c.select("INBOX")).has_value());

    auto quiet = co_await c.idle(300ms);
    REQUIRE(quiet.has_value());
    CHECK(*quiet == IdleResult::quiet);

    auto start = std::chrono::steady_clock::now();
    auto woke = co_await c.idle(20s, [&] { dv.deliver(message(7)); });
    REQUIRE(woke.has_value());
    CHECK(*woke == IdleResult::new_mail);
    CHECK(std::chrono::steady_clock::now() - start < 10s);
    auto b = co_await c.fetch_new(0, 10);  // the session is still usable after DONE
    REQUIRE(b.has_value());
    REQUIRE(b->messages.size() == 1);
    CHECK(b->messages[0].raw == message(7));
  });
}

TEST_CASE("mail announced in an earlier response (not in IDLE) ends the next IDLE at once") {
  Dovecot dv;
  auto ctx = tls_context(dv);
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Client c(ex, ctx, options(dv, TlsMode::none));
    REQUIRE_FALSE(co_await c.connect());
    REQUIRE_FALSE(co_await c.login());
    REQUIRE((co_await c.select("INBOX")).has_value());
    auto none = co_await c.fetch_new(0, 10);
    REQUIRE(none.has_value());
    CHECK(none->messages.empty());
    // Delivered after the search: Dovecot reports "* 1 EXISTS" with the next command's answer,
    // and not again when IDLE starts.
    dv.deliver(message(8));
    REQUIRE((co_await c.fetch_range(100, 200)).has_value());
    auto start = std::chrono::steady_clock::now();
    auto woke = co_await c.idle(5s);
    REQUIRE(woke.has_value());
    CHECK(*woke == IdleResult::new_mail);
    CHECK(std::chrono::steady_clock::now() - start < 1s);
    auto b = co_await c.fetch_new(0, 10);
    REQUIRE(b.has_value());
    REQUIRE(b->messages.size() == 1);
  });
}

TEST_CASE("Dovecot restarted mid-session: retryable error, a new session continues") {
  Dovecot dv;
  for (int i = 1; i <= 3; ++i) {
    dv.deliver(message(i));
  }
  auto ctx = tls_context(dv);
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Client c(ex, ctx, options(dv, TlsMode::none));
    REQUIRE_FALSE(co_await c.connect());
    REQUIRE_FALSE(co_await c.login());
    REQUIRE((co_await c.select("INBOX")).has_value());
    auto first = co_await c.fetch_new(0, 1);
    REQUIRE(first.has_value());
    REQUIRE(first->messages.size() == 1);
    std::uint64_t last = first->messages.back().uid;

    // A restart alone may leave running imap processes serving their sessions; kicking the
    // user first makes the cut certain, as a crash would.
    dv.doveadm("kick alice");
    dv.restart();
    auto broken = co_await c.fetch_new(last, 10);
    REQUIRE_FALSE(broken.has_value());
    CHECK(retryable(broken.error()));

    Client again(ex, ctx, options(dv, TlsMode::none));
    REQUIRE_FALSE(co_await again.connect());
    REQUIRE_FALSE(co_await again.login());
    REQUIRE((co_await again.select("INBOX")).has_value());
    auto rest = co_await again.fetch_new(last, 10);
    REQUIRE(rest.has_value());
    REQUIRE(rest->messages.size() == 2);  // nothing skipped, nothing repeated
    CHECK(rest->messages[0].uid == last + 1);
  });
}

TEST_CASE("a UTF-8 folder name is selected in modified UTF-7") {
  Dovecot dv;
  dv.doveadm("mailbox create -u alice 'Entwürfe'");
  dv.deliver(message(3), "Entwürfe");
  auto ctx = tls_context(dv);
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Client c(ex, ctx, options(dv, TlsMode::none));
    REQUIRE_FALSE(co_await c.connect());
    REQUIRE_FALSE(co_await c.login());
    auto box = co_await c.select("Entwürfe");
    REQUIRE(box.has_value());
    CHECK(box->exists == 1);
  });
}

TEST_CASE("UIDVALIDITY change is visible on the next SELECT") {
  Dovecot dv;
  dv.deliver(message(1));
  auto ctx = tls_context(dv);
  std::uint64_t before = 0;
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Client c(ex, ctx, options(dv, TlsMode::none));
    REQUIRE_FALSE(co_await c.connect());
    REQUIRE_FALSE(co_await c.login());
    auto box = co_await c.select("INBOX");
    REQUIRE(box.has_value());
    before = box->uidvalidity;
    co_await c.logout();
  });
  dv.set_uidvalidity(static_cast<std::uint32_t>(before + 1000));
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Client c(ex, ctx, options(dv, TlsMode::none));
    REQUIRE_FALSE(co_await c.connect());
    REQUIRE_FALSE(co_await c.login());
    auto box = co_await c.select("INBOX");
    REQUIRE(box.has_value());
    CHECK(box->uidvalidity == before + 1000);
  });
}

TEST_CASE("failures are values: bad password, missing mailbox, plain to non-loopback") {
  Dovecot dv;
  auto ctx = tls_context(dv);
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto o = options(dv, TlsMode::none);
    o.password = "wrong";
    Client c(ex, ctx, o);
    REQUIRE_FALSE(co_await c.connect());
    auto ec = co_await c.login();
    CHECK(ec == make_error_code(errc::auth_failed));
    CHECK_FALSE(retryable(ec));

    Client c2(ex, ctx, options(dv, TlsMode::none));
    REQUIRE_FALSE(co_await c2.connect());
    REQUIRE_FALSE(co_await c2.login());
    auto box = co_await c2.select("No Such Folder");
    REQUIRE_FALSE(box.has_value());
    CHECK(box.error() == make_error_code(errc::rejected));

    auto far = options(dv, TlsMode::none);
    far.host = "192.0.2.1";  // TEST-NET-1, never contacted
    Client c3(ex, ctx, far);
    CHECK(co_await c3.connect() == make_error_code(errc::tls_required));
  });
}

TEST_CASE("a server that never greets hits the read deadline") {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ip::tcp::socket held(io);
  acceptor.async_accept(held, [](boost::system::error_code) {});
  auto o = loopback_options(acceptor.local_endpoint().port());
  o.io_timeout = 300ms;
  boost::system::error_code result;
  auto start = std::chrono::steady_clock::now();
  REQUIRE(run_client(io, o,
                     [&](Client& c) -> asio::awaitable<void> { result = co_await c.connect(); }));
  CHECK(result == asio::error::timed_out);
  CHECK(std::chrono::steady_clock::now() - start < 3s);
}

TEST_CASE("a message over the literal cap comes cut at the cap - the ones around it still come") {
  Dovecot dv;
  std::string big = message(2) + std::string(20000, 'x') + "\r\n";
  dv.deliver(message(1));
  dv.deliver(big);
  dv.deliver(message(3));
  auto ctx = tls_context(dv);
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto o = options(dv, TlsMode::none);
    o.limits.max_literal = 4096;
    Client c(ex, ctx, o);
    co_await open_inbox(c);
    for (bool ranged : {false, true}) {
      auto b = co_await fetch_first(c, ranged, 3);
      REQUIRE(b.has_value());
      REQUIRE(b->messages.size() == 3);
      CHECK(b->messages[0].raw == message(1));
      CHECK_FALSE(b->messages[0].truncated);
      CHECK(b->messages[1].raw == big.substr(0, 4096));
      CHECK(b->messages[1].size == big.size());
      CHECK(b->messages[1].truncated);
      CHECK(b->messages[2].raw == message(3));
    }
  });
}

TEST_CASE("a FETCH keeps bodies up to max_fetch_bytes - the batch ends before the first dropped") {
  Dovecot dv;
  auto sized = [](int n) { return message(n) + std::string(10000, 'x') + "\r\n"; };
  for (int n = 1; n <= 10; ++n) {
    dv.deliver(sized(n));
  }
  auto ctx = tls_context(dv);
  auto tiny_options = options(dv, TlsMode::none);
  tiny_options.max_fetch_bytes = 1;
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    auto o = options(dv, TlsMode::none);
    o.max_fetch_bytes = 25000;  // the third body crosses it: bodies 4..10 are dropped
    Client c(ex, ctx, o);
    co_await open_inbox(c);
    for (bool ranged : {false, true}) {
      auto b = co_await fetch_first(c, ranged, 10);
      REQUIRE(b.has_value());
      REQUIRE(b->messages.size() == 3);
      for (int i = 0; i < 3; ++i) {
        CHECK(b->messages[i].raw == sized(i + 1));
      }
      CHECK(b->covered_to == 3);
      CHECK(b->more);
      CHECK(b->bytes == 3 * sized(1).size());
    }
    // The next batch starts where that one ended; the last one covers its whole range.
    auto rest = co_await c.fetch_range(4, 10);
    REQUIRE(rest.has_value());
    REQUIRE(rest->messages.size() == 3);
    CHECK(rest->messages.front().uid == 4);
    CHECK(rest->covered_to == 6);
    auto last = co_await c.fetch_range(10, 12);
    REQUIRE(last.has_value());
    REQUIRE(last->messages.size() == 1);
    CHECK(last->covered_to == 12);
  });
  // However small the bound, one message always comes.
  run_bounded([&](asio::any_io_executor ex) -> asio::awaitable<void> {
    Client tiny(ex, ctx, tiny_options);
    co_await open_inbox(tiny);
    auto one = co_await tiny.fetch_range(5, 10);
    REQUIRE(one.has_value());
    REQUIRE(one->messages.size() == 1);
    CHECK(one->messages[0].uid == 5);
    CHECK(one->covered_to == 5);
  });
}
