#include "core/http_client.hpp"

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <map>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>

namespace sb::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Beast's default for a response parser, set explicitly since the read buffer is sized from it.
constexpr std::size_t kHeaderLimit = 8 * 1024;
// Beast caps a response's header and body, but not a chunk-size line (chunk extensions) or the
// trailer section: they wait in the read buffer until their CRLF arrives, and a provider (or
// anything in between) sending one without end grew our memory until the request's deadline. A
// capped buffer bounds them; it holds at most an unfinished header or chunk line plus one read
// (Beast reads 64 KiB at most). The server caps its own the same way (http/server.cpp).
constexpr std::size_t kMaxBuffered = kHeaderLimit + 64 * 1024;

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
          return a == static_cast<char>(std::tolower(static_cast<unsigned char>(b)));
        })) {
      return v;
    }
  }
  return std::nullopt;
}

namespace {

struct Origin {
  bool tls = false;
  std::string host;  // to resolve, and to verify the certificate against: "::1", no brackets
  std::string port;
  std::string authority;  // the Host header: the URL's host, and its port unless the default
  bool ip_literal = false;
  std::string key() const { return (tls ? "https://" : "http://") + authority + "|" + port; }
};

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

struct Conn {
  std::variant<beast::tcp_stream, TlsStream> stream;
  beast::flat_buffer buffer{kMaxBuffered};
  beast::tcp_stream& lowest() {
    if (auto* p = std::get_if<beast::tcp_stream>(&stream)) {
      return *p;
    }
    return beast::get_lowest_layer(std::get<TlsStream>(stream));
  }
  // An idle keep-alive connection is usable only while nothing waits to be read on it. The
  // server's FIN (it closed the connection while it sat in the pool), a reset, a TLS
  // close_notify or an unsolicited response (408) all show here, without sending anything.
  bool idle_and_open() {
    if (buffer.size() != 0) {
      return false;  // bytes beyond the last response: they would be read as the next answer
    }
    char b;
    ssize_t n = ::recv(lowest().socket().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
};

// RFC 9110 section 9.2.2: a request may be repeated automatically only when its method is
// idempotent, or when the request says it may be (an Idempotency-Key header, as Mastodon's
// POST /api/v1/statuses takes).
bool may_repeat(const http::request<http::string_body>& req) {
  switch (req.method()) {
    case http::verb::get:
    case http::verb::head:
    case http::verb::options:
    case http::verb::put:
    case http::verb::delete_:
      return true;
    default:
      return req.find("Idempotency-Key") != req.end();
  }
}

}  // namespace

struct HttpClient::Impl {
  asio::any_io_executor ex;
  HttpClientOptions options;
  asio::ssl::context tls{asio::ssl::context::tls_client};
  std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle;  // origin key -> connections

  Impl(asio::any_io_executor e, HttpClientOptions o) : ex(std::move(e)), options(std::move(o)) {
    tls.set_default_verify_paths();
    tls.set_verify_mode(asio::ssl::verify_peer);
  }

  // Opens a connection: resolve (under a deadline of its own: the resolver has no expiry),
  // connect, and for https the TLS handshake with SNI and host name verification.
  asio::awaitable<std::unique_ptr<Conn>> connect(const Origin& o, std::string& error) {
    tcp::resolver resolver(ex);
    asio::steady_timer timer(ex, options.connect_timeout);
    auto raced =
        co_await (resolver.async_resolve(o.host, o.port, use_tuple) || timer.async_wait(use_tuple));
    if (raced.index() == 1) {
      error = "resolving " + o.host + " timed out";
      co_return nullptr;
    }
    auto [rec, endpoints] = std::get<0>(raced);
    if (rec) {
      error = "resolving " + o.host + ": " + rec.message();
      co_return nullptr;
    }
    std::unique_ptr<Conn> c;
    if (o.tls) {
      c.reset(new Conn{TlsStream(ex, tls)});
    } else {
      c.reset(new Conn{beast::tcp_stream(ex)});
    }
    c->lowest().expires_after(options.connect_timeout);
    auto [cec, ep] = co_await c->lowest().async_connect(endpoints, use_tuple);
    if (cec) {
      error = "connecting to " + o.host + ":" + o.port + ": " + cec.message();
      co_return nullptr;
    }
    if (auto* s = std::get_if<TlsStream>(&c->stream)) {
      // SNI: servers with several certificates pick one by the name sent here. Never an IP
      // address (RFC 6066 section 3): the certificate is then checked against the address.
      if (!o.ip_literal && !SSL_set_tlsext_host_name(s->native_handle(), o.host.c_str())) {
        error = "TLS: cannot set SNI for " + o.host;
        co_return nullptr;
      }
      s->set_verify_callback(asio::ssl::host_name_verification(o.host));
      auto [hec] = co_await s->async_handshake(asio::ssl::stream_base::client, use_tuple);
      if (hec) {
        error = "TLS handshake with " + o.host + ": " + hec.message();
        co_return nullptr;
      }
    }
    co_return c;
  }

  struct Exchanged {
    boost::system::error_code ec;
    bool written = false;  // the whole request went out (the server may have acted on it)
  };
  template <typename Stream>
  static asio::awaitable<Exchanged> exchange(Stream& s, Conn& c,
                                             http::request<http::string_body>& req,
                                             http::response_parser<http::string_body>& parser) {
    auto [wec, wn] = co_await http::async_write(s, req, use_tuple);
    if (wec) {
      co_return Exchanged{wec, false};
    }
    auto [rec, rn] = co_await http::async_read(s, c.buffer, parser, use_tuple);
    co_return Exchanged{rec, true};
  }
};

HttpClient::HttpClient(asio::any_io_executor ex, HttpClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(ex), std::move(options))) {}

HttpClient::~HttpClient() = default;

asio::awaitable<HttpResponse> HttpClient::request(HttpRequest r) {
  HttpResponse out;
  auto url = boost::urls::parse_absolute_uri(r.url);
  if (!url || (url->scheme() != "http" && url->scheme() != "https") || url->host().empty()) {
    out.error = "not an http(s) URL";
    co_return out;
  }
  Origin o;
  o.tls = url->scheme() == "https";
  // host_address: an IPv6 literal without its brackets ("[::1]" resolved as a name failed).
  o.host = url->host_address();
  o.ip_literal = url->host_type() != boost::urls::host_type::name;
  const char* default_port = o.tls ? "443" : "80";
  o.port = url->has_port() && !url->port().empty() ? std::string(url->port()) : default_port;
  // RFC 9112 section 3.2: Host is the target URI's authority without userinfo; a port other
  // than the scheme's default is part of it (a server behind a non-default port builds its
  // links and checks signatures from it).
  o.authority = url->host();
  if (o.port != default_port) {
    o.authority += ":" + o.port;
  }
  std::string target = url->encoded_path().empty() ? "/" : std::string(url->encoded_path());
  if (url->has_query()) {
    target += "?" + std::string(url->encoded_query());
  }

  http::request<http::string_body> req{http::string_to_verb(r.method), target, 11};
  req.set(http::field::host, o.authority);
  req.set(http::field::user_agent, impl_->options.user_agent);
  for (const auto& [k, v] : r.headers) {
    req.set(k, v);
  }
  if (!r.body.empty() || r.method == "POST" || r.method == "PUT") {
    if (!r.content_type.empty()) {
      req.set(http::field::content_type, r.content_type);
    }
    req.body() = std::move(r.body);
    req.prepare_payload();
  }
  req.keep_alive(true);
  auto timeout = r.timeout.count() > 0 ? r.timeout : impl_->options.timeout;

  // A pooled connection the server closed while it was idle is dropped before use (see
  // idle_and_open). One can still close in the instant between that check and the request; the
  // request then fails before any response byte arrives and is sent once more on a fresh
  // connection, if repeating it is safe: the whole request did not go out, or it may be repeated
  // (may_repeat). A POST that went out is never sent twice here: a timeout or a reset after it
  // does not say the server ignored it, and Telegram, Meta and X would post the answer twice.
  // A fresh connection's failure is final.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Conn> c;
    bool reused = false;
    auto& pool = impl_->idle[o.key()];
    while (!pool.empty() && !pool.back()->idle_and_open()) {
      pool.pop_back();
    }
    if (!pool.empty()) {
      c = std::move(pool.back());
      pool.pop_back();
      reused = true;
    } else {
      c = co_await impl_->connect(o, out.error);
      if (!c) {
        co_return out;
      }
    }
    http::response_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(impl_->options.max_body_bytes);
    c->lowest().expires_after(timeout);
    Impl::Exchanged x;
    if (auto* s = std::get_if<TlsStream>(&c->stream)) {
      x = co_await Impl::exchange(*s, *c, req, parser);
    } else {
      x = co_await Impl::exchange(std::get<beast::tcp_stream>(c->stream), *c, req, parser);
    }
    auto ec = x.ec;
    if (ec) {
      if (reused && !parser.got_some() && ec != beast::error::timeout &&
          (!x.written || may_repeat(req))) {
        continue;
      }
      // Only a chunk-size line or a trailer section can fill the buffer (see kMaxBuffered).
      out.error = ec == beast::error::timeout ? "request to " + o.host + " timed out"
                  : ec == http::error::buffer_overflow
                      ? o.host +
                            ": response framing line too long (chunk extensions or "
                            "trailers over " +
                            std::to_string(kMaxBuffered) + " bytes)"
                      : o.host + ": " + ec.message();
      out.sent = x.written;
      co_return out;
    }
    auto res = parser.release();
    out.status = static_cast<int>(res.result_int());
    for (const auto& f : res) {
      std::string name(f.name_string());
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
      out.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    out.body = std::move(res.body());
    if (res.keep_alive() && pool.size() < impl_->options.max_idle_per_origin) {
      c->lowest().expires_never();
      pool.push_back(std::move(c));
    }
    co_return out;
  }
  out.error = o.host + ": the connection was closed";
  co_return out;
}

}  // namespace sb::net
