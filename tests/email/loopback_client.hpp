#pragma once
// The IMAP client's side of the tests against scripted servers on a loopback port
// (scripted_imap.hpp, and the coroutines of test_imap_faults.cpp): the options for plain IMAP to
// the port, one run of a Client bounded in time, and the usual way into INBOX.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>

#include <doctest/doctest.h>

#include "channels/email/imap_client.hpp"

namespace sb::test {

// Plain IMAP to 127.0.0.1:`port` as "u" with the password "p", 2 s for each read and write (a
// scripted server answers at once; a test that waits longer is stuck).
inline email::imap::ClientOptions loopback_options(std::uint16_t port) {
  email::imap::ClientOptions o;
  o.host = "127.0.0.1";
  o.port = port;
  o.tls = email::imap::TlsMode::none;
  o.username = "u";
  o.password = "p";
  o.io_timeout = std::chrono::seconds(2);
  return o;
}

// Runs `body` on a Client made with `o` on `io` (the server's coroutines may run on it too) until
// the body returns or 10 s pass; the Client is gone when it returns, closing the connection.
// Returns whether the body returned. What it threw (a failed REQUIRE within) is thrown again
// here, so the test case fails where the assertion did.
inline bool run_client(
    boost::asio::io_context& io, const email::imap::ClientOptions& o,
    const std::function<boost::asio::awaitable<void>(email::imap::Client&)>& body) {
  boost::asio::ssl::context ctx(boost::asio::ssl::context::tls_client);
  bool done = false;
  std::exception_ptr error;
  boost::asio::co_spawn(
      io,
      [&]() -> boost::asio::awaitable<void> {
        email::imap::Client c(io.get_executor(), ctx, o);
        co_await body(c);
        done = true;
      },
      [&](std::exception_ptr e) { error = e; });
  io.run_for(std::chrono::seconds(10));
  if (error) {
    std::rethrow_exception(error);
  }
  return done;
}

// Connected, logged in, INBOX selected: each step REQUIREd.
inline boost::asio::awaitable<void> open_inbox(email::imap::Client& c) {
  REQUIRE_FALSE(co_await c.connect());
  REQUIRE_FALSE(co_await c.login());
  REQUIRE((co_await c.select("INBOX")).has_value());
}

}  // namespace sb::test
