#include "tests/social/fakes/fake_http.hpp"

#include <atomic>
#include <set>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>

namespace sb::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct FakeHttpServer::Impl {
  Handler handler;
  // The open connections (io thread only), closed by stop(): a server that goes away takes its
  // connections with it, so a client's kept-alive one sees the close.
  std::set<beast::tcp_stream*> streams;
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  std::thread thread;
  bool running = false;
  std::atomic<int> count{0};
  std::atomic<int> accepted{0};

  asio::awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    struct Forget {
      Impl* impl;
      beast::tcp_stream* stream;
      ~Forget() { impl->streams.erase(stream); }
    } forget{this, &stream};
    streams.insert(&stream);
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      stream.expires_after(std::chrono::seconds(60));
      auto [ec, n] = co_await http::async_read(stream, buffer, req, use_tuple);
      if (ec) {
        co_return;
      }
      ++count;
      Request r;
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      if (auto url = boost::urls::parse_origin_form(r.target)) {
        r.path = url->path();
        for (auto p : url->params()) {
          r.query[p.key] = p.value;
        }
      }
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (auto& c : name) {
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        r.headers[name] = std::string(f.value());
      }
      r.body = req.body();
      auto start = std::chrono::steady_clock::now();
      Response out;
      for (;;) {
        auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - start);
        out = handler(r, waited);
        if (!out.hold) {
          break;
        }
        asio::steady_timer t(ioc, std::chrono::milliseconds(20));
        co_await t.async_wait(use_tuple);
      }
      if (out.drop) {
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        co_return;
      }
      http::response<http::string_body> res{static_cast<http::status>(out.status), 11};
      res.set(http::field::content_type, out.content_type);
      for (const auto& [k, v] : out.headers) {
        res.set(k, v);
      }
      res.body() = std::move(out.body);
      bool keep = req.keep_alive() && !out.close;
      res.keep_alive(keep);
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      if (wec || !keep) {
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
        co_return;
      }
    }
  }

  asio::awaitable<void> accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        co_return;
      }
      ++accepted;
      asio::co_spawn(ioc, session(std::move(socket)), asio::detached);
    }
  }
};

FakeHttpServer::FakeHttpServer(Handler handler) : impl_(std::make_unique<Impl>()) {
  impl_->handler = std::move(handler);
}

FakeHttpServer::~FakeHttpServer() {
  stop();
}

void FakeHttpServer::start(std::uint16_t port) {
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen();
  asio::co_spawn(impl_->ioc, impl_->accept(), asio::detached);
  impl_->running = true;
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

void FakeHttpServer::stop() {
  if (!impl_->running) {
    return;
  }
  impl_->running = false;
  asio::post(impl_->ioc, [this] {
    beast::error_code ignored;
    impl_->acceptor.close(ignored);
    for (auto* s : impl_->streams) {
      s->socket().close(ignored);
    }
    impl_->ioc.stop();
  });
  impl_->thread.join();
}

std::uint16_t FakeHttpServer::port() const {
  return impl_->acceptor.local_endpoint().port();
}

std::string FakeHttpServer::base_url() const {
  return "http://127.0.0.1:" + std::to_string(port());
}

int FakeHttpServer::requests() const {
  return impl_->count.load();
}

}  // namespace sb::test

namespace sb::test {
int FakeHttpServer::connections() const {
  return impl_->accepted.load();
}
}  // namespace sb::test
