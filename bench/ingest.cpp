// bench/ingest: 64 concurrent keep-alive clients post interactions (half from 1,000 returning
// customers, half from new ones) to a real daemon process; measures HTTP throughput, latency,
// end-to-end time until every interaction is in its Redis stream, and the daemon's memory.
//
//   build/bench/bench_ingest [--requests N] [--clients N]
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <signal.h>

#include "bench/bench_util.hpp"
#include "tests/support/harness.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace sb;
using clk = std::chrono::steady_clock;

int main(int argc, char** argv) {
  int total = 200000, clients = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--requests")) {
      total = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--clients")) {
      clients = std::atoi(argv[i + 1]);
    }
  }
  test::TempDir dir;
  test::RedisServer redis;
  auto port = test::free_port();
  std::string cfg = dir.file("bench.toml");
  std::ofstream(cfg) << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n"
                     << "[storage]\npath = \"" << dir.file("bench.db") << "\"\n"
                     << "[redis]\nurl = \"" << redis.url() << "\"\n"
                     << "[api]\ntokens = [\"bench\"]\n";
  test::Process daemon({test::switchboard_binary(), "run", "--config", cfg},
                       dir.file("daemon.log"), {{"SWITCHBOARD_LOG", "warn"}});
  if (!test::eventually([&] {
        try {
          return test::HttpClient(port).request("GET", "/readyz").status == 200;
        } catch (...) {
          return false;
        }
      })) {
    std::cerr << "daemon did not become ready; see " << dir.file("daemon.log") << "\n";
    return 1;
  }

  asio::io_context io(1);
  std::vector<double> lat_ms;
  lat_ms.reserve(static_cast<std::size_t>(total));
  int next = 0, errors = 0;
  auto t0 = clk::now();
  auto worker = [&]() -> asio::awaitable<void> {
    beast::tcp_stream s(io);
    co_await s.async_connect(
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), asio::use_awaitable);
    beast::flat_buffer buf;
    while (next < total) {
      int i = next++;
      // Even: one of 1,000 returning customers; odd: a new customer every time.
      std::string from = i % 2 == 0 ? "known" + std::to_string(i % 1000) + "@example.com"
                                     : "new" + std::to_string(i) + "@example.net";
      http::request<http::string_body> req{http::verb::post, "/v1/interactions", 11};
      req.set(http::field::host, "127.0.0.1");
      req.set(http::field::authorization, "Bearer bench");
      req.set(http::field::content_type, "application/json");
      req.body() = R"({"source":"bench","external_id":"b-)" + std::to_string(i) +
                   R"(","from":{"email":")" + from +
                   R"("},"subject":"Order late","text":"Hello, my order has not arrived yet."})";
      req.prepare_payload();
      auto start = clk::now();
      auto [ew, nw] = co_await http::async_write(s, req, asio::as_tuple(asio::use_awaitable));
      http::response<http::string_body> res;
      auto [er, nr] = co_await http::async_read(s, buf, res, asio::as_tuple(asio::use_awaitable));
      if (ew || er || res.result_int() != 202) {
        ++errors;
        if (ew || er) {
          co_return;
        }
      }
      lat_ms.push_back(std::chrono::duration<double, std::milli>(clk::now() - start).count());
    }
  };
  for (int c = 0; c < clients; ++c) {
    asio::co_spawn(io, worker(), asio::detached);
  }
  io.run();
  double http_s = std::chrono::duration<double>(clk::now() - t0).count();
  auto [rss_after_http, hwm_http] = bench::rss_mib(daemon.pid());
  test::eventually([&] { return redis.xlen("sb:q:general:normal") >= total - errors; },
                   std::chrono::seconds(120));
  double e2e_s = std::chrono::duration<double>(clk::now() - t0).count();
  long long in_redis = redis.xlen("sb:q:general:normal");
  auto [rss, hwm] = bench::rss_mib(daemon.pid());
  auto metric = [&](const std::string& text, const std::string& name) {
    auto p = text.find("\n" + name + " ");
    return p == std::string::npos ? 0.0 : std::stod(text.substr(p + name.size() + 2));
  };
  auto metrics = test::HttpClient(port).request("GET", "/metrics").body;
  double commits = metric(metrics, "switchboard_writer_commits_total");
  double jobs = metric(metrics, "switchboard_writer_jobs_total");
  daemon.kill(SIGTERM);
  daemon.wait();

  bench::Table t;
  t.add("clients (keep-alive)", std::to_string(clients));
  t.add("interactions posted", std::to_string(total));
  t.add("errors (non-202)", std::to_string(errors));
  t.add("in Redis at the end", std::to_string(in_redis));
  t.add("HTTP throughput", bench::fmt("%.0f /s", total / http_s));
  t.add("end-to-end throughput", bench::fmt("%.0f /s (committed and in Redis)", in_redis / e2e_s));
  t.add("latency p50", bench::fmt("%.2f ms", bench::percentile(lat_ms, 0.50)));
  t.add("latency p99", bench::fmt("%.2f ms", bench::percentile(lat_ms, 0.99)));
  t.add("latency max", bench::fmt("%.2f ms", bench::percentile(lat_ms, 1.0)));
  t.add("writer commits", bench::fmt("%.0f", commits) + bench::fmt(" (%.1f jobs each)", commits ? jobs / commits : 0));
  t.add("daemon RSS (end / peak)", bench::fmt("%.0f MiB", rss) + " / " + bench::fmt("%.0f MiB", hwm));
  t.print("bench_ingest: POST /v1/interactions -> SQLite -> Redis");
  return in_redis == total - errors && errors == 0 ? 0 : 1;
}
