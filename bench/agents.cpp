// bench/agents: 50 simulated agents claim and finish work on one queue of a real daemon
// process. Phase 1: a backlog is waiting (claim latency with work waiting, cycles/s). Phase 2:
// ingest runs at a fixed rate (5,000/s by default) while the agents long-poll, claim and ack;
// measures cycles/s and the time from each POST /v1/interactions to the claim that got it.
//
//   build/bench/bench_agents [--backlog N] [--rate N] [--seconds N] [--agents N]
#include <signal.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <unordered_map>

#include "bench/bench_util.hpp"
#include "bench/load.hpp"
#include "tests/support/harness.hpp"

namespace asio = boost::asio;
using namespace sb;
using clk = std::chrono::steady_clock;

namespace {

struct Conn {
  asio::ip::tcp::socket s;
  std::string in;   // bytes read and not yet consumed
  std::string out;  // the request being sent
  explicit Conn(asio::io_context& io) : s(io) {}
};

// One request and its response over a keep-alive connection. The load generator shares the two
// cores with the daemon and Redis, so it writes the request by hand and reads the response with
// a minimal parser (status line, Content-Length, body): Beast's message classes cost it about
// twice as much CPU, which the daemon then did not get.
asio::awaitable<std::pair<int, std::string>> call(Conn& c, const std::string& target,
                                                  const std::string& token,
                                                  const std::string& body) {
  c.out.clear();
  c.out.append("POST ").append(target).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  c.out.append("Authorization: Bearer ").append(token).append("\r\n");
  c.out.append("Content-Type: application/json\r\nContent-Length: ");
  c.out.append(std::to_string(body.size())).append("\r\n\r\n").append(body);
  auto [ew, nw] =
      co_await asio::async_write(c.s, asio::buffer(c.out), asio::as_tuple(asio::use_awaitable));
  auto [er, nr] = co_await asio::async_read_until(c.s, asio::dynamic_buffer(c.in), "\r\n\r\n",
                                                  asio::as_tuple(asio::use_awaitable));
  if (ew || er || c.in.size() < 12) {
    co_return std::pair<int, std::string>{-1, ""};
  }
  int status = std::atoi(c.in.c_str() + 9);  // "HTTP/1.1 200 OK"
  std::size_t length = 0;
  std::string_view head(c.in.data(), nr);
  for (auto name : {"Content-Length: ", "content-length: "}) {
    if (auto at = head.find(name); at != std::string_view::npos) {
      length = std::strtoul(head.data() + at + 16, nullptr, 10);
    }
  }
  if (c.in.size() < nr + length) {
    auto [eb, nb] = co_await asio::async_read(c.s, asio::dynamic_buffer(c.in),
                                              asio::transfer_exactly(nr + length - c.in.size()),
                                              asio::as_tuple(asio::use_awaitable));
    if (eb) {
      co_return std::pair<int, std::string>{-1, ""};
    }
  }
  std::string res = c.in.substr(nr, length);
  c.in.erase(0, nr + length);
  co_return std::pair<int, std::string>{status, std::move(res)};
}

std::string field(const std::string& body, const std::string& name) {
  auto key = "\"" + name + "\":\"";
  auto p = body.find(key);
  if (p == std::string::npos) {
    return {};
  }
  p += key.size();
  return body.substr(p, body.find('"', p) - p);
}

double ms_since(clk::time_point t) {
  return std::chrono::duration<double, std::milli>(clk::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  int backlog = 20000, rate = 5000, seconds = 10, agents = 50;
  for (int i = 1; i + 1 < argc; i += 2) {
    int v = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--backlog"))
      backlog = v;
    else if (!std::strcmp(argv[i], "--rate"))
      rate = v;
    else if (!std::strcmp(argv[i], "--seconds"))
      seconds = v;
    else if (!std::strcmp(argv[i], "--agents"))
      agents = v;
  }
  test::TempDir dir;
  test::RedisServer redis;
  std::string agent_config;
  for (int a = 0; a < agents; ++a) {
    agent_config += "[[agents]]\nid = \"agent" + std::to_string(a) + "\"\ntoken = \"token-" +
                    std::to_string(a) + "\"\nqueues = [\"general\"]\n";
  }
  bench::Daemon daemon(dir, redis, agent_config);
  auto port = daemon.port;
  auto ep = asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port);

  // Phase 1: a backlog of entries as the relay writes them (SPEC fields, a realistic payload).
  std::string payload =
      R"({"id":"item-ID","channel":"api","account":"bench","kind":"message","direction":"inbound",)"
      R"("external_id":"ID","conversation_id":"c","customer":{"id":"u","name":"Ann Lee","tier":"",)"
      R"("is_new":false},"from":{"type":"email","value":"ann@example.com"},"to":[],"subject":)"
      R"("Order late","text":"Hello, my order has not arrived yet.","queue":"general","priority":"normal"})";
  redis.cmd({"EVAL",
             "for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', 'interaction_id', "
             "'item-' .. i, 'conversation_id', 'c', 'customer_id', 'u', 'channel', 'api', 'kind', "
             "'message', 'priority', 'normal', 'payload', (string.gsub(ARGV[2], 'ID', i))) end",
             "1", "sb:q:general:normal", std::to_string(backlog), payload});

  asio::io_context io(1);
  std::vector<double> claim1_ms, claim2_ms, arrival_ms, committed_ms, post_ms;
  int cycles1 = 0, cycles2 = 0, errors = 0, posted = 0;
  bool phase2 = false, ingest_done = false;
  std::unordered_map<std::string, clk::time_point> post_started;  // external id -> POST start
  std::unordered_map<std::string, clk::time_point> post_done;     // external id -> 202 received
  clk::time_point p2_start, p2_end, ingest_end;

  auto agent = [&](int a) -> asio::awaitable<void> {
    Conn c(io);
    co_await c.s.async_connect(ep, asio::use_awaitable);
    c.s.set_option(asio::ip::tcp::no_delay(true));
    std::string token = "token-" + std::to_string(a);
    for (;;) {
      bool in2 = phase2;
      auto t = clk::now();
      auto [st, body] = co_await call(
          c, "/v1/agent/claim", token,
          in2 ? R"({"queue":"general","wait_ms":1000})" : R"({"queue":"general","wait_ms":0})");
      double ms = ms_since(t);
      if (st == 204) {
        if (!in2 && !phase2) {
          co_return;  // backlog done; phase 2 agents are spawned afresh
        }
        if (ingest_done) {
          co_return;
        }
        continue;
      }
      if (st != 200) {
        ++errors;
        co_return;
      }
      auto id = field(body, "id");
      auto ext = field(body, "external_id");
      if (in2) {
        claim2_ms.push_back(ms);
        if (auto it = post_started.find(ext); it != post_started.end()) {
          arrival_ms.push_back(ms_since(it->second));
        }
        if (auto it = post_done.find(ext); it != post_done.end()) {
          committed_ms.push_back(ms_since(it->second));  // 0 when the claim beat the 202 back
        } else {
          committed_ms.push_back(0);
        }
      } else {
        claim1_ms.push_back(ms);
      }
      auto [sa, ba] = co_await call(c, "/v1/agent/interactions/" + id + "/ack", token, "");
      if (sa != 200) {
        ++errors;
      }
      (in2 ? cycles2 : cycles1)++;
    }
  };

  bench::CpuUse cpu1(daemon.pid(), redis);
  redis.cmd({"CONFIG", "RESETSTAT"});
  auto t1 = clk::now();
  for (int a = 0; a < agents; ++a) {
    asio::co_spawn(io, agent(a), asio::detached);
  }
  io.run();
  double p1_s = std::chrono::duration<double>(clk::now() - t1).count();
  auto used1 = cpu1.per(cycles1);
  auto threads1 = cpu1.threads(cycles1);
  if (std::getenv("SB_STATS"))
    std::cerr << redis.cmd({"INFO", "commandstats"}) << "\n";

  // Phase 2: paced ingest while the agents long-poll.
  io.restart();
  phase2 = true;
  int total = rate * seconds;
  int next = 0;
  bench::CpuUse cpu2(daemon.pid(), redis);
  double commits0 = daemon.metric("switchboard_writer_commits_total");
  double jobs0 = daemon.metric("switchboard_writer_jobs_total");
  p2_start = clk::now();
  auto ingester = [&]() -> asio::awaitable<void> {
    Conn c(io);
    co_await c.s.async_connect(ep, asio::use_awaitable);
    c.s.set_option(asio::ip::tcp::no_delay(true));
    asio::steady_timer timer(io);
    while (next < total) {
      int i = next++;
      auto due = p2_start + std::chrono::microseconds(static_cast<long long>(i) * 1'000'000 / rate);
      if (due > clk::now()) {
        timer.expires_at(due);
        co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      }
      std::string ext = "p-" + std::to_string(i);
      auto started = clk::now();
      post_started[ext] = started;
      auto [st, body] = co_await call(
          c, "/v1/interactions", "bench",
          R"({"source":"bench","external_id":")" + ext + R"(","from":{"email":"c)" +
              std::to_string(i % 1000) +
              R"(@example.com"},"subject":"Order late","text":"Hello, my order has not arrived."})");
      if (st != 202) {
        ++errors;
      }
      post_ms.push_back(ms_since(started));
      post_done[ext] = clk::now();
      if (++posted == total) {
        ingest_end = clk::now();
      }
    }
  };
  for (int c = 0; c < 64; ++c) {
    asio::co_spawn(io, ingester(), asio::detached);
  }
  for (int a = 0; a < agents; ++a) {
    asio::co_spawn(io, agent(a), asio::detached);
  }
  // Stop the agents once everything posted was claimed (or after a grace period).
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer timer(io);
        auto limit = clk::now() + std::chrono::seconds(seconds + 30);
        while ((posted < total || cycles2 < posted - errors) && clk::now() < limit) {
          timer.expires_after(std::chrono::milliseconds(20));
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        p2_end = clk::now();
        ingest_done = true;
      },
      asio::detached);
  io.run();
  double p2_s = std::chrono::duration<double>(p2_end - p2_start).count();
  auto used2 = cpu2.per(cycles2);
  auto threads2 = cpu2.threads(cycles2);
  double commits2 = daemon.metric("switchboard_writer_commits_total") - commits0;
  double jobs2 = daemon.metric("switchboard_writer_jobs_total") - jobs0;
  auto [rss, hwm] = bench::rss_mib(daemon.pid());
  daemon.stop();

  bench::Table t;
  t.add("agents (keep-alive, one connection each)", std::to_string(agents));
  t.add("phase 1: backlog claimed + acked",
        std::to_string(cycles1) + " of " + std::to_string(backlog));
  t.add("phase 1: claim+ack cycles", bench::fmt("%.0f /s", cycles1 / p1_s));
  t.add("phase 1: CPU per cycle: daemon / redis-server / this load generator",
        bench::fmt("%.1f us", used1.daemon_us) + bench::fmt(" / %.1f us", used1.redis_us) +
            bench::fmt(" / %.1f us", used1.self_us));
  t.add("phase 1: daemon CPU per cycle by thread", threads1);
  t.add("phase 1: claim p50 (work waiting)",
        bench::fmt("%.2f ms", bench::percentile(claim1_ms, 0.5)));
  t.add("phase 1: claim p99 (work waiting)",
        bench::fmt("%.2f ms", bench::percentile(claim1_ms, 0.99)));
  double ingest_s = std::chrono::duration<double>(ingest_end - p2_start).count();
  t.add("phase 2: ingest rate achieved (target)",
        bench::fmt("%.0f /s", posted / ingest_s) + " (" + std::to_string(rate) + ")");
  t.add("phase 2: POST /v1/interactions p99",
        bench::fmt("%.2f ms", bench::percentile(post_ms, 0.99)));
  t.add("phase 2: claim p99 (long-poll, any wait)",
        bench::fmt("%.2f ms", bench::percentile(claim2_ms, 0.99)));
  t.add("phase 2: claimed + acked", std::to_string(cycles2) + " of " + std::to_string(posted));
  t.add("phase 2: claim+ack cycles (until all done)", bench::fmt("%.0f /s", cycles2 / p2_s));
  t.add("phase 2: CPU per item (ingest + cycle): daemon / redis-server / load generator",
        bench::fmt("%.1f us", used2.daemon_us) + bench::fmt(" / %.1f us", used2.redis_us) +
            bench::fmt(" / %.1f us", used2.self_us));
  t.add("phase 2: daemon CPU per item by thread", threads2);
  t.add("phase 2: database commits / jobs per commit",
        bench::fmt("%.0f", commits2) + bench::fmt(" / %.1f", jobs2 / std::max(commits2, 1.0)));
  t.add("phase 2: POST -> claim answered p50",
        bench::fmt("%.2f ms", bench::percentile(arrival_ms, 0.5)));
  t.add("phase 2: POST -> claim answered p99",
        bench::fmt("%.2f ms", bench::percentile(arrival_ms, 0.99)));
  t.add("phase 2: POST -> claim answered max",
        bench::fmt("%.2f ms", bench::percentile(arrival_ms, 1.0)));
  t.add("phase 2: 202 received -> claim answered p50",
        bench::fmt("%.2f ms", bench::percentile(committed_ms, 0.5)));
  t.add("phase 2: 202 received -> claim answered p99",
        bench::fmt("%.2f ms", bench::percentile(committed_ms, 0.99)));
  t.add("errors", std::to_string(errors));
  t.add("daemon RSS (end / peak)",
        bench::fmt("%.0f MiB", rss) + " / " + bench::fmt("%.0f MiB", hwm));
  t.print("bench_agents: claim + ack with 50 agents (phase 2 with ingest running)");
  return errors == 0 && cycles1 == backlog && cycles2 == posted ? 0 : 1;
}
