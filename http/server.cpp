#include "http/server.hpp"

#include <sys/resource.h>
#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <ctime>
#include <optional>

#include <sys/socket.h>

#include "core/log.hpp"
#include "core/log_gate.hpp"

namespace sb::http {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kHeaderLimit = 32 * 1024;
// Beast's parser caps the header and the body, but not a chunk-size line (chunk extensions) or
// the trailer section: they wait in the read buffer until their CRLF arrives, and an endless one
// grew the daemon's memory for as long as the client kept sending. A capped buffer bounds them;
// it holds at most an unfinished header or chunk line plus one read (Beast reads 64 KiB at most).
constexpr std::size_t kMaxBuffered = kHeaderLimit + 64 * 1024;

namespace {

// RFC 9112 section 6.1: a Transfer-Encoding in an HTTP/1.0 request means its framing is faulty
// (1.0 has no chunked coding); the server MUST close the connection after answering it, since
// a 1.0 intermediary may have framed the body differently (request smuggling).
template <class Request>
bool may_reuse(const Request& req) {
  return req.keep_alive() &&
         !(req.version() == 10 && req.find(bhttp::field::transfer_encoding) != req.end());
}

// RFC 9110 section 5.6.7: IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT" (29 characters), written
// by hand: strftime's %a and %b follow the locale.
void format_imf_fixdate(std::time_t t, char (&out)[30]) {
  static constexpr char kDays[] = "SunMonTueWedThuFriSat";
  static constexpr char kMonths[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  std::tm g{};
  gmtime_r(&t, &g);
  auto two = [](char* at, int v) {
    at[0] = static_cast<char>('0' + v / 10 % 10);
    at[1] = static_cast<char>('0' + v % 10);
  };
  std::memcpy(out, "Sun, 00 Jan 0000 00:00:00 GMT", 30);
  std::memcpy(out, kDays + 3 * (g.tm_wday % 7), 3);
  two(out + 5, g.tm_mday);
  std::memcpy(out + 8, kMonths + 3 * (g.tm_mon % 12), 3);
  int year = g.tm_year + 1900;
  two(out + 12, year / 100);
  two(out + 14, year % 100);
  two(out + 17, g.tm_hour);
  two(out + 20, g.tm_min);
  two(out + 23, g.tm_sec);
}

}  // namespace

// A session while it waits on its client: for (the rest of) a request, or for it to take a
// response. Linked, in the order they began to wait, into the server's list of those the
// connection cap may close: the first has waited longest. Lives in the session's frame, so
// entering and leaving the list allocates nothing.
struct Waiting {
  beast::tcp_stream* stream;
  Waiting* prev = nullptr;
  Waiting* next = nullptr;
  bool linked = false;
  bool reading = false;  // stop() closes readers; a response being written is finished
};

struct Server::Impl : std::enable_shared_from_this<Impl> {
  asio::io_context& io;
  ServerOptions opts;
  const Router& router;
  Metrics& metrics;
  tcp::acceptor acceptor;
  bool stopping = false;
  std::atomic<std::size_t> active{0};
  // Each connection holds a descriptor until its idle deadline (60 s). Without a cap, a client
  // holding RLIMIT_NOFILE connections open made every accept fail (EMFILE): nobody else got in,
  // and the daemon's own Redis reconnects, IMAP connections and SQLite files failed too. At the
  // cap the connection that has waited longest on its client (for a request, or to take a
  // response: a client that pipelines and never reads) is closed to make room; when every
  // connection is busy with a request (a long-polling claim, a commit), the new one is refused.
  std::size_t max_connections = 0;  // set by start() (ServerOptions::max_connections)
  Waiting* first_waiting = nullptr;
  Waiting* last_waiting = nullptr;
  bool evicted = false;               // logged once
  bool refused = false;               // logged once
  std::uint64_t accept_failures = 0;  // in a row, the episode's (accept_loop)
  // Bytes of request bodies held now, across connections: a body's declared Content-Length (or
  // its chunks' sizes, as their chunk lines arrive) from the start of its read until its response
  // is written. The body cap alone bounded this by max_connections x max_body_bytes: 10 GB at the
  // default caps, from clients that send a header and then trickle, or never send, the body.
  std::size_t body_bytes = 0;
  std::size_t open_bytes = 0;   // the part of body_bytes held by routes without a Gate
  std::size_t body_budget = 0;  // set by start() (ServerOptions::max_body_bytes_in_flight)
  LogGate busy_log{std::chrono::minutes(1)};  // the 503 server_busy, logged once a minute
  // RFC 9110 section 6.6.1: the Date of every response, formatted once a second (io thread only).
  std::int64_t date_second = -1;
  char date_text[30] = {};

  Impl(asio::io_context& io, ServerOptions o, const Router& r, Metrics& m)
      : io(io), opts(std::move(o)), router(r), metrics(m), acceptor(io) {}

  std::string_view date() {
    // system_clock reads the vDSO: no system call.
    auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    if (now != date_second) {
      date_second = now;
      format_imf_fixdate(static_cast<std::time_t>(now), date_text);
    }
    return {date_text, 29};
  }

  void wait_on_client(Waiting& w, bool reading) {
    w.reading = reading;
    if (w.linked) {
      return;
    }
    w.linked = true;
    w.prev = last_waiting;
    w.next = nullptr;
    (last_waiting ? last_waiting->next : first_waiting) = &w;
    last_waiting = &w;
  }

  void done_waiting(Waiting& w) {
    if (!w.linked) {
      return;
    }
    w.linked = false;
    (w.prev ? w.prev->next : first_waiting) = w.next;
    (w.next ? w.next->prev : last_waiting) = w.prev;
    w.prev = w.next = nullptr;
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      auto [ec, sock] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (stopping || ec == asio::error::operation_aborted) {
          co_return;
        }
        // EMFILE and friends: breathe, go on; one bad accept never ends the server. Said once
        // per episode, and its end with the count: out of file descriptors the accept fails
        // every 50 ms for as long as it lasts, and a line each time would flood the log.
        if (accept_failures++ == 0) {
          logger("http")->warn("[http] accept failed: {}; retrying every 50 ms", ec.message());
        }
        asio::steady_timer t(io, std::chrono::milliseconds(50));
        co_await t.async_wait(use_tuple);
        continue;
      }
      if (accept_failures > 0) {
        logger("http")->info("[http] accepting again after {} failed accept{}", accept_failures,
                             accept_failures == 1 ? "" : "s");
        accept_failures = 0;
      }
      if (active >= max_connections && !evict_longest_waiting()) {
        refuse(sock);
        continue;
      }
      sock.set_option(tcp::no_delay(true));
      asio::co_spawn(io, session(std::move(sock)), [](std::exception_ptr e) {
        if (e) {
          try {
            std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            logger("http")->error("[http] connection ended by exception: {}", ex.what());
          }
        }
      });
    }
  }

  // Closes the connection that has waited longest on its client; false when none waits.
  bool evict_longest_waiting() {
    Waiting* oldest = first_waiting;
    if (oldest == nullptr) {
      return false;
    }
    if (!evicted) {
      evicted = true;
      logger("http")->warn(
          "[http] {} connections, the cap (server.max_connections, or the open-file limit less "
          "the daemon's own needs): closing the one that has waited longest on its client for "
          "each new one",
          max_connections);
    }
    done_waiting(*oldest);
    oldest->stream->cancel();
    return true;
  }

  // At the cap with every connection busy: a 503 if the socket takes it at once, then close.
  // Admitting it would take the daemon towards EMFILE, where Redis, IMAP and SQLite fail too.
  void refuse(tcp::socket& sock) {
    if (!refused) {
      refused = true;
      logger("http")->warn(
          "[http] {} connections, the cap, and every one is busy with a request: new connections "
          "are answered 503 and closed until one ends",
          max_connections);
    }
    static constexpr std::string_view kBody =
        R"({"error":{"code":"too_many_connections","message":"the server is at its connection )"
        R"(limit with every connection busy; retry shortly"}})";
    std::string res = "HTTP/1.1 503 Service Unavailable\r\nServer: switchboard\r\nDate: ";
    res += date();
    res += "\r\nContent-Type: application/json\r\nRetry-After: 1\r\nContent-Length: ";
    res += std::to_string(kBody.size());
    res += "\r\nConnection: close\r\n\r\n";
    res += kBody;
    // A request already received and left unread would make close() answer with RST, which
    // most clients report instead of the 503: read what is there first (no waiting).
    char drain[4096];
    [[maybe_unused]] auto got = ::recv(sock.native_handle(), drain, sizeof drain, MSG_DONTWAIT);
    [[maybe_unused]] auto sent =
        ::send(sock.native_handle(), res.data(), res.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    beast::error_code ignored;
    sock.shutdown(tcp::socket::shutdown_send, ignored);
    sock.close(ignored);
    count("unmatched", 503);
  }

  CounterCache requests{metrics, "switchboard_http_requests_total", {"route", "code"}};

  void count(const std::string& route, int status) {
    char code[12];
    auto [end, ec] = std::to_chars(code, code + sizeof code, status);
    requests.inc({route, std::string_view(code, static_cast<std::size_t>(end - code))});
  }

  // The response head is written by hand and sent with the body in one gather write: Beast's
  // serializer cost ~15k instructions a response (20% of the io thread under bench_ingest),
  // for a status line and four headers. Beast still parses every request. `head_only`: the answer
  // to a HEAD request, its Content-Length without the content (RFC 9110 section 9.3.2).
  asio::awaitable<void> write(Waiting& w, Response res, unsigned version, bool keep_alive, bool& ok,
                              bool head_only = false) {
    std::string head;
    head.reserve(192);
    head += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
    head += std::to_string(res.status);
    head += ' ';
    auto reason = bhttp::obsolete_reason(static_cast<bhttp::status>(res.status));
    head.append(reason.data(), reason.size());
    // RFC 9110 section 8.6: no Content-Length (and no body) with 1xx, 204 and 304.
    bool bodiless = res.status < 200 || res.status == 204 || res.status == 304;
    head += "\r\nServer: switchboard\r\nDate: ";
    head += date();
    // Content types can come from stored data (an attachment's declared type), so they get the
    // same CR/LF check as the other headers.
    if (!bodiless && !res.content_type.empty() &&
        res.content_type.find_first_of("\r\n") == std::string::npos) {
      head += "\r\nContent-Type: ";
      head += res.content_type;
    }
    for (const auto& [k, v] : res.headers) {
      if (k.find_first_of("\r\n:") != std::string::npos ||
          v.find_first_of("\r\n") != std::string::npos) {
        continue;  // never let a value split the head (our handlers set these; belt and braces)
      }
      head += "\r\n";
      head += k;
      head += ": ";
      head += v;
    }
    if (bodiless) {
      res.body.clear();
    } else {
      head += "\r\nContent-Length: ";
      head += std::to_string(res.body.size());
    }
    if (!keep_alive) {
      head += "\r\nConnection: close";
    } else if (version == 10) {
      head += "\r\nConnection: keep-alive";
    }
    head += "\r\n\r\n";
    if (head_only) {
      res.body.clear();
    }
    w.stream->expires_after(opts.request_timeout);
    std::array<asio::const_buffer, 2> bufs{asio::buffer(head), asio::buffer(res.body)};
    wait_on_client(w, false);  // a client that does not read blocks this write
    auto [ec, n] = co_await asio::async_write(*w.stream, bufs, use_tuple);
    done_waiting(w);
    ok = !ec;
  }

  // 405 for a path known with other methods, else 404.
  static Response not_routed(const Request& r, const Router::Match& m) {
    if (m.path_known) {
      auto res =
          error(405, "method_not_allowed",
                std::string(r.method) + " is not allowed on " + m.label + "; use " + m.allow);
      res.headers.emplace_back("Allow", m.allow);  // RFC 9110 section 15.5.6: a MUST
      return res;
    }
    return error(404, "not_found", "no route for " + std::string(r.path));
  }

  std::size_t body_room() const { return body_budget > body_bytes ? body_budget - body_bytes : 0; }
  // Bodies of routes without a Gate (webhooks: signed over the body, so anyone may send one
  // and be refused only once it is read) may hold half the budget (at least one body of
  // max_body_bytes): unsigned senders trickling large bodies cannot starve the routes whose
  // token was checked before their body was read.
  std::size_t open_room() const {
    std::size_t cap = std::max(body_budget / 2, opts.max_body_bytes);
    return std::min(body_room(), cap > open_bytes ? cap - open_bytes : 0);
  }

  // A request's share of body_bytes (and of open_bytes, for a route without a Gate), given back
  // when the request is done with. `open` is set before the first add().
  struct BodyHold {
    Impl* server;
    bool open = false;
    std::size_t bytes = 0;
    std::size_t room() const { return open ? server->open_room() : server->body_room(); }
    void add(std::size_t n) {
      bytes += n;
      server->body_bytes += n;
      if (open) {
        server->open_bytes += n;
      }
    }
    ~BodyHold() {
      server->body_bytes -= bytes;
      if (open) {
        server->open_bytes -= bytes;
      }
    }
  };

  // 503 for a body that would take body_bytes past the budget (413 is for a body too large on
  // its own: retrying that is pointless, retrying this one shortly is not).
  Response bodies_busy() {
    if (auto left_out = busy_log.pass("server_busy")) {
      logger("http")->warn(
          "[http] {} bytes of request bodies held, the cap (server.max_body_bytes_in_flight is "
          "{}): request bodies that have not arrived yet are refused with 503 until some "
          "finish{}",
          body_bytes, body_budget, LogGate::left_out_note(*left_out));
    }
    auto res = error(503, "server_busy",
                     "the server holds as many request bodies as it may at once "
                     "(server.max_body_bytes_in_flight, " +
                         std::to_string(body_budget) + " bytes); retry shortly");
    res.headers.emplace_back("Retry-After", "1");
    return res;
  }

  asio::awaitable<void> session(tcp::socket sock) {
    auto self = shared_from_this();
    ++active;
    beast::tcp_stream stream(std::move(sock));
    Waiting w{&stream};
    // However the session ends (an exception included), its frame leaves the list.
    struct Unlink {
      Impl* server;
      Waiting* w;
      ~Unlink() { server->done_waiting(*w); }
    } unlink{this, &w};
    beast::flat_buffer buffer(kMaxBuffered);
    bool linger = false;  // we answered before reading the whole request (413, 431, 400)
    for (;;) {
      if (stopping) {
        break;
      }
      // The body's share of body_bytes. A chunked body's size is known chunk by chunk, from each
      // chunk line before its data: the chunk that would pass the budget stops the read.
      BodyHold hold{this};
      bool over_budget = false;
      auto on_chunk = [&](std::uint64_t size, auto, beast::error_code& cec) {
        if (size > hold.room()) {
          over_budget = true;
          cec = asio::error::no_buffer_space;
          return;
        }
        hold.add(static_cast<std::size_t>(size));
      };
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(opts.max_body_bytes);
      parser.header_limit(kHeaderLimit);
      parser.on_chunk_header(on_chunk);
      // A keep-alive connection may sit idle; once bytes arrive the whole request must come
      // within request_timeout. Beast's timeout covers the whole read, so use the longer one.
      stream.expires_after(buffer.size() ? opts.request_timeout : opts.idle_timeout);
      wait_on_client(w, true);
      // The header first: a client that sent Expect: 100-continue waits for our answer before
      // it sends the body (RFC 9110 section 10.1.1). Nearly every request's body came with its
      // header; it is parsed from the buffer here, as Beast's async_read would, so the common
      // case costs one asynchronous read, as a single async_read did.
      auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, use_tuple);
      auto& req = parser.get();
      Request r;
      Router::Match m;
      bool head = false;
      // The answer given from the header alone, before the body is read (a 404, a 401, a 503 at
      // the body budget): nothing would use the body, so holding it would only cost memory.
      std::optional<Response> early;
      bool body_left = false;  // with `early`: the body is still on its way (close after)
      if (!ec) {
        auto method = req.method_string();
        auto target = req.target();
        r.method = std::string_view(method.data(), method.size());
        r.target = std::string_view(target.data(), target.size());
        auto q = r.target.find('?');
        r.path = r.target.substr(0, q);
        r.query = q == std::string_view::npos ? std::string_view() : r.target.substr(q + 1);
        r.header = [&req](std::string_view name) -> std::string_view {
          auto it = req.find(name);
          if (it == req.end()) {
            return {};
          }
          auto v = it->value();
          return std::string_view(v.data(), v.size());
        };
        m = router.find(r.method, r.path, r.params);
        head = req.method() == bhttp::verb::head;
        if (head && !m.handler) {
          m = router.find("GET", r.path, r.params);  // RFC 9110 section 9.3.2: GET w/o content
        }
        hold.open = m.handler != nullptr && m.gate == nullptr;
        if (!parser.is_done()) {
          // A body that came whole with the header is in the buffer already (a read, 64 KiB at
          // most): it is parsed and handled as before, the handler checking the token itself.
          // Any other is read only for a route that exists, a token that is known (routes with
          // a Gate) and room in the body budget.
          auto length = parser.content_length();
          bool buffered = length && buffer.size() >= *length;
          if (!m.handler) {
            early = not_routed(r, m);
          } else if (!buffered && m.gate) {
            early = (*m.gate)(r);
          }
          if (!early && length) {
            if (!buffered && *length > hold.room()) {
              early = bodies_busy();
            } else {
              hold.add(static_cast<std::size_t>(*length));
            }
          }
          if (early && buffered) {
            buffer.consume(static_cast<std::size_t>(*length));  // skipped: the connection goes on
          } else if (early) {
            body_left = true;
          }
        }
      }
      if (!ec && !early && !parser.is_done() && buffer.size() > 0) {
        parser.eager(true);
        buffer.consume(parser.put(buffer.data(), ec));
        if (ec == bhttp::error::need_more) {
          ec = {};
        }
      }
      if (!ec && !early && !parser.is_done()) {
        if (parser.get().version() >= 11 &&
            beast::iequals(parser.get()[bhttp::field::expect], "100-continue")) {
          // RFC 9110 section 10.1.1: 100 (Continue), or a final status; a body too large for
          // max_body_bytes by its Content-Length was refused (413) by async_read_header already,
          // and a bad token, an unknown route or a full body budget just above.
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          stream.expires_after(opts.request_timeout);
          auto [wec, wn] = co_await asio::async_write(stream, asio::buffer(kContinue), use_tuple);
          ec = wec;
        }
        if (!ec) {
          auto [rec, rn] = co_await bhttp::async_read(stream, buffer, parser, use_tuple);
          ec = rec;
        }
      }
      done_waiting(w);
      if (ec && over_budget) {
        ec = {};
        early = bodies_busy();
        body_left = true;
      }
      // RFC 9112 section 6.3: when chunked is not the final transfer coding the body length is
      // unknown, and the server MUST answer 400 and close. Beast reads such a request as having
      // no body; what followed would be parsed as the next request (request smuggling).
      if (!ec && !parser.chunked() &&
          parser.get().find(bhttp::field::transfer_encoding) != parser.get().end()) {
        ec = bhttp::error::bad_transfer_encoding;
      }
      if (ec) {
        if (ec == bhttp::error::body_limit) {
          auto res = error(413, "body_too_large",
                           "the request body is larger than server.max_body_bytes (" +
                               std::to_string(opts.max_body_bytes) + " bytes)");
          // The limit is on the body: the head was read whole, so the request counts under its
          // route (a 413 on /v1/interactions is an ingest client's problem to graph), not under
          // "unmatched", which is for requests whose head could not be read.
          const auto& head = parser.get();
          auto target = head.target();
          std::string_view path(target.data(), target.size());
          path = path.substr(0, path.find('?'));
          auto method = head.method_string();
          std::map<std::string, std::string> ignored;
          count(router.find(std::string_view(method.data(), method.size()), path, ignored).label,
                413);
          bool ok;
          co_await write(w, std::move(res), 11, false, ok);
          linger = true;
        } else if (ec == bhttp::error::header_limit) {
          // RFC 6585 section 5: 431, not a plain 400, so that the client knows to send fewer
          // or shorter header fields (a cookie jar that grew, a token pasted twice) rather than
          // to repair its syntax. The limit counts the request line too, as Beast does.
          auto res = error(431, "header_too_large",
                           "the request line and header fields are larger than " +
                               std::to_string(kHeaderLimit) + " bytes, the server's limit");
          count("unmatched", 431);
          bool ok;
          co_await write(w, std::move(res), 11, false, ok);
          linger = true;
        } else if (ec != bhttp::error::end_of_stream && ec != asio::error::eof &&
                   ec != beast::error::timeout && ec != asio::error::operation_aborted &&
                   ec != asio::error::connection_reset && ec != bhttp::error::partial_message) {
          // Only a chunk-size line or a trailer section can fill the buffer (see kMaxBuffered).
          auto why = ec == bhttp::error::buffer_overflow
                         ? "chunk extensions or trailers longer than " +
                               std::to_string(kMaxBuffered) + " bytes"
                         : ec.message();
          auto res = error(400, "bad_request", "malformed HTTP request: " + why);
          count("unmatched", 400);
          bool ok;
          co_await write(w, std::move(res), 11, false, ok);
          linger = true;
        }
        break;
      }
      if (early) {
        count(m.label, early->status);
        // A body left unread ends the connection: what follows it is not the next request.
        bool keep_alive = !body_left && may_reuse(req) && !stopping;
        bool ok = false;
        co_await write(w, std::move(*early), req.version(), keep_alive, ok, head);
        linger = body_left;
        if (!ok || !keep_alive) {
          break;
        }
        continue;
      }
      r.body = req.body();  // std::string
      // A peek that does not block: 0 bytes means the client sent FIN (HTTP clients close,
      // they do not half-close, once they stop waiting for an answer); ECONNRESET a reset.
      // Bytes waiting (a pipelined request) mean it is still there.
      r.peer_gone = [&stream] {
        char c;
        auto n = ::recv(stream.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
      };
      Response res;
      if (!m.handler) {
        res = not_routed(r, m);
      } else {
        try {
          res = co_await (*m.handler)(r);
        } catch (const std::exception& e) {
          logger("http")->error("[http] {} {} failed: {}", r.method, m.label, e.what());
          res = error(500, "internal_error", "the request failed unexpectedly; see the daemon log");
        }
      }
      count(m.label, res.status);
      bool keep_alive = may_reuse(req) && !stopping;
      bool ok = false;
      co_await write(w, std::move(res), req.version(), keep_alive, ok, head);
      if (!ok || !keep_alive) {
        break;
      }
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    if (linger) {
      // Lingering close (as nginx does): the client may still be sending the body we refused.
      // Closing now would make the kernel answer its data with RST, and most clients then lose
      // our 413 unread. Read and drop what still comes, bounded in time and bytes.
      stream.expires_after(std::chrono::seconds(2));
      std::array<char, 16 * 1024> sink;
      std::size_t drained = 0;
      wait_on_client(w, true);
      while (drained < 16 * 1024 * 1024) {
        auto [rec, got] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
        if (rec) {
          break;
        }
        drained += got;
      }
      done_waiting(w);
    }
    --active;
  }
};

Server::Server(asio::io_context& io, ServerOptions opts, const Router& router, Metrics& metrics)
    : impl_(std::make_shared<Impl>(io, std::move(opts), router, metrics)) {}

Server::~Server() = default;

void Server::start() {
  auto& a = impl_->acceptor;
  // One clear line for the operator (SPEC section 1), not Boost's source location.
  try {
    tcp::endpoint ep(asio::ip::make_address(impl_->opts.host), impl_->opts.port);
    a.open(ep.protocol());
    a.set_option(asio::socket_base::reuse_address(true));
    a.bind(ep);
    a.listen(asio::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("cannot listen on " + impl_->opts.host + ":" +
                             std::to_string(impl_->opts.port) + ": " + e.code().message());
  }
  rlimit fds{};
  std::size_t limit = 1 << 20;
  if (getrlimit(RLIMIT_NOFILE, &fds) == 0 && fds.rlim_cur != RLIM_INFINITY) {
    limit = fds.rlim_cur;
  }
  const auto& o = impl_->opts;
  // With a high open-file limit (systemd's default hard limit is 524288; some hosts set a
  // million), the limit alone admitted far more connections than the daemon has memory for:
  // each may hold a read buffer of up to kMaxBuffered and a request in progress.
  impl_->max_connections =
      o.max_connections > 0
          ? o.max_connections
          : std::min(limit > 2 * o.reserved_fds ? limit - o.reserved_fds : limit / 2,
                     ServerOptions::kDefaultMaxConnections);
  impl_->body_budget = o.max_body_bytes_in_flight > 0
                           ? o.max_body_bytes_in_flight
                           : std::max(ServerOptions::kDefaultBodyBudget, o.max_body_bytes);
  if (o.max_connections > 0 && o.max_connections + o.reserved_fds > limit) {
    logger("http")->warn(
        "[http] server.max_connections = {} leaves {} of the {} open files this process may "
        "have (RLIMIT_NOFILE) to the rest of the daemon; it needs about {}",
        o.max_connections, limit > o.max_connections ? limit - o.max_connections : 0, limit,
        o.reserved_fds);
  }
  logger("http")->info(
      "[http] at most {} connections (server.max_connections) and {} bytes of request bodies at "
      "once (server.max_body_bytes_in_flight)",
      impl_->max_connections, impl_->body_budget);
  asio::co_spawn(impl_->io, impl_->accept_loop(), [](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        logger("http")->error("[http] accept loop ended by exception: {}", ex.what());
      }
    }
  });
}

std::uint16_t Server::port() const {
  return impl_->acceptor.local_endpoint().port();
}

void Server::stop() {
  asio::post(impl_->io, [impl = impl_] {
    impl->stopping = true;
    beast::error_code ec;
    impl->acceptor.close(ec);
    for (Waiting* w = impl->first_waiting; w != nullptr; w = w->next) {
      if (w->reading) {
        w->stream->cancel();
      }
    }
  });
}

std::size_t Server::active() const {
  return impl_->active;
}

std::size_t Server::max_connections() const {
  return impl_->max_connections;
}

std::size_t Server::max_body_bytes_in_flight() const {
  return impl_->body_budget;
}

}  // namespace sb::http
