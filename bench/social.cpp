// bench/social: (1) a 10,000-mention Mastodon backlog caught up by a daemon process against the
// fake with its documented rate limit (300 requests / 5 min); (2) signed Meta webhook events
// posted by 64 keep-alive clients, end to end (committed, then in Redis).
//
//   build/bench/bench_social [--mentions N] [--events N] [--per-post N] [--clients N]
#include <signal.h>
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

#include "bench/bench_util.hpp"
#include "channels/social/hmac.hpp"
#include "tests/social/fakes/fake_mastodon.hpp"
#include "tests/support/harness.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace sb;
using clk = std::chrono::steady_clock;

namespace {

// One POST with `n` messages (Meta batches events of one page into one delivery when they come
// in bursts; n = 1 is the harder case).
std::string messenger_post(int first, int n) {
  std::string events;
  for (int i = first; i < first + n; ++i) {
    events +=
        (i == first ? "" : ",") + std::string(R"({"sender":{"id":"PSID_)") +
        std::to_string(i % 2000) +
        R"("},"recipient":{"id":"PAGE_ID"},"timestamp":1767322800000,"message":{"mid":"m_bench_)" +
        std::to_string(i) + R"(","text":"Hello, where is my order?"}})";
  }
  return R"({"object":"page","entry":[{"id":"PAGE_ID","time":1767322800000,"messaging":[)" +
         events + "]}]}";
}

}  // namespace

int main(int argc, char** argv) {
  int mentions = 10000, events = 50000, clients = 64, per_post = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--mentions")) {
      mentions = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--events")) {
      events = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--per-post")) {
      per_post = std::max(1, std::atoi(argv[i + 1]));
    } else if (!std::strcmp(argv[i], "--clients")) {
      clients = std::atoi(argv[i + 1]);
    }
  }
  test::FakeMastodon fake;  // 300 requests per 5 minutes, like mastodon.social
  fake.start();
  for (int i = 0; i < mentions; ++i) {
    fake.add_mention("user" + std::to_string(i % 500) + "@remote.example",
                     "question number " + std::to_string(i));
  }
  test::TempDir dir;
  test::RedisServer redis;
  auto port = test::free_port();
  std::string cfg = dir.file("bench.toml");
  std::ofstream(cfg) << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n"
                     << "[storage]\npath = \"" << dir.file("bench.db") << "\"\n"
                     << "[redis]\nurl = \"" << redis.url() << "\"\n"
                     << "[api]\ntokens = [\"bench\"]\n"
                     << "[[channels.mastodon]]\nname = \"social\"\nbase_url = \"" << fake.base_url()
                     << "\"\naccess_token_env = \"MASTODON_TOKEN\"\npoll_interval = \"1s\"\n"
                     << "[[channels.meta]]\nname = \"meta\"\napp_secret_env = \"META_APP_SECRET\"\n"
                     << "verify_token_env = \"META_VERIFY\"\naccess_token_env = \"META_TOKEN\"\n";
  auto t0 = clk::now();
  test::Process daemon({test::switchboard_binary(), "run", "--config", cfg}, dir.file("daemon.log"),
                       {{"SWITCHBOARD_LOG", "warn"},
                        {"MASTODON_TOKEN", "test-token"},
                        {"META_APP_SECRET", "bench-secret"},
                        {"META_VERIFY", "v"},
                        {"META_TOKEN", "t"}});
  const std::string stream = "sb:q:general:normal";
  bool caught_up =
      test::eventually([&] { return redis.xlen(stream) >= mentions; }, std::chrono::seconds(120));
  double backlog_s = std::chrono::duration<double>(clk::now() - t0).count();
  auto stats = fake.stats();
  if (!caught_up) {
    std::cerr << "the backlog was not caught up; see " << dir.file("daemon.log") << "\n";
  }

  // Phase 2: signed webhook events, `per_post` per POST, signed over the raw body.
  int posts = events / per_post;
  events = posts * per_post;
  std::vector<std::string> bodies(static_cast<std::size_t>(posts));
  std::vector<std::string> sigs(bodies.size());
  for (int i = 0; i < posts; ++i) {
    bodies[i] = messenger_post(i * per_post, per_post);
    sigs[i] = "sha256=" + social::hmac_sha256_hex("bench-secret", bodies[i]);
  }
  asio::io_context io(1);
  std::vector<double> lat_ms;
  int next = 0, errors = 0;
  auto t1 = clk::now();
  auto worker = [&]() -> asio::awaitable<void> {
    beast::tcp_stream s(io);
    co_await s.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                             asio::use_awaitable);
    beast::flat_buffer buf;
    while (next < posts) {
      int i = next++;
      http::request<http::string_body> req{http::verb::post, "/webhooks/meta/meta", 11};
      req.set(http::field::host, "127.0.0.1");
      req.set(http::field::content_type, "application/json");
      req.set("X-Hub-Signature-256", sigs[i]);
      req.body() = bodies[i];
      req.prepare_payload();
      auto start = clk::now();
      auto [ew, nw] = co_await http::async_write(s, req, asio::as_tuple(asio::use_awaitable));
      http::response<http::string_body> res;
      auto [er, nr] = co_await http::async_read(s, buf, res, asio::as_tuple(asio::use_awaitable));
      if (ew || er || res.result_int() != 200) {
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
  double http_s = std::chrono::duration<double>(clk::now() - t1).count();
  test::eventually([&] { return redis.xlen(stream) >= mentions + events - errors; },
                   std::chrono::seconds(120));
  double e2e_s = std::chrono::duration<double>(clk::now() - t1).count();
  long long in_redis = redis.xlen(stream) - mentions;
  daemon.kill(SIGTERM);
  daemon.wait();

  bench::Table t;
  t.add("mastodon backlog", std::to_string(mentions) + " mentions");
  t.add("caught up in", bench::fmt("%.1f s", backlog_s) + (caught_up ? "" : " (NOT caught up)"));
  t.add("requests to the fake", std::to_string(stats.requests) + " (limit 300 / 5 min)");
  t.add("429 answers", std::to_string(stats.rejected_429));
  t.add("meta events posted", std::to_string(events) + " signed, " + std::to_string(per_post) +
                                  " per POST, " + std::to_string(clients) + " clients");
  t.add("errors (non-200)", std::to_string(errors));
  t.add("webhook throughput", bench::fmt("%.0f events/s (answered after commit)", events / http_s));
  t.add("end to end", bench::fmt("%.0f events/s (in Redis)", in_redis / e2e_s));
  t.add("latency p50 / p99", bench::fmt("%.2f ms", bench::percentile(lat_ms, 0.50)) + " / " +
                                 bench::fmt("%.2f ms", bench::percentile(lat_ms, 0.99)));
  t.print("bench_social: Mastodon backlog and signed Meta webhooks");
  bool ok =
      caught_up && backlog_s < 60 && stats.rejected_429 == 0 && errors == 0 && in_redis == events;
  return ok ? 0 : 1;
}
