#pragma once
// A small SMTP submission client (RFC 5321) on Asio + OpenSSL coroutines: implicit TLS (465)
// or STARTTLS (587), or plain to loopback; EHLO, AUTH PLAIN / LOGIN, MAIL FROM, RCPT TO,
// DATA with dot-stuffing, QUIT. Every read and write has a deadline. One call, one message.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sb::email::smtp {

struct Options {
  std::string host;
  std::uint16_t port = 465;
  std::string tls = "implicit";  // implicit | starttls | none
  std::string username;          // empty: no AUTH
  std::string password;          // never logged
  std::string helo_name = "localhost";
  std::chrono::milliseconds timeout{60000};  // each step (connect, one command exchange)
  // The reply to the message's final "." (RFC 5321 4.5.3.2.6: 10 minutes; servers scan the
  // content before they answer). Giving up sooner reports a temporary failure for a message the
  // server may then accept, and the retry sends the reply twice.
  std::chrono::milliseconds final_reply_timeout{600000};
};

struct Envelope {
  std::string mail_from;             // bare address
  std::vector<std::string> rcpt_to;  // bare addresses
  std::string data;                  // the message, CRLF line ends, not yet dot-stuffed
};

struct Outcome {
  enum class Status { sent, temporary, permanent };
  Status status = Status::temporary;
  int code = 0;       // last SMTP reply code; 0 for a network or TLS failure
  std::string error;  // "<code> <server text>" or the network error, empty when sent
};

// The whole transaction. 4xx and network failures are temporary, 5xx permanent.
boost::asio::awaitable<Outcome> send(boost::asio::any_io_executor ex,
                                     boost::asio::ssl::context& tls, Options options,
                                     Envelope envelope);

// RFC 5321 4.5.2: a line starting with "." gets another "."; bare LF / CR become CRLF; the
// result ends with CRLF (the caller appends ".\r\n").
std::string dot_stuff(std::string_view data);

}  // namespace sb::email::smtp
