// bench/agents: 50 simulated agents claim and finish work on one queue of a real daemon
// process (issue 3's targets).
//   Phase 1: a backlog is waiting, no ingest: cycles/s and claim latency with work waiting.
//   Phase 2: ingest runs at a fixed rate (5,000/s by default) while the agents long-poll, claim
//            and ack: the time from each POST /v1/interactions to the claim that got it.
//   Phase 3: the same ingest, with a backlog waiting too: claim+ack cycles/s while ingest runs
//            (in phase 2 the agents can only go as fast as work arrives) and claim latency.
//
//   build/bench/bench_agents [--backlog N] [--rate N] [--seconds N] [--agents N]
//   SB_BENCH_REDIS_STATS=1 also prints Redis's INFO commandstats after each phase.
//   SB_BENCH_TRACE=FILE writes every claim as "phase ms-into-phase claim-ms", one per line (the
//   ms negative where the queue was empty and the claim waited for the item to arrive), and
//   every posted item as "<phase>a ms-into-phase-when-posted POST-to-claim-ms"; the daemon's log
//   (warnings and errors) goes to FILE.daemon.log.
#include <signal.h>
#include <algorithm>
#include <array>
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
#include <filesystem>
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
  // The request in one write(), and the first read() only once the socket is readable: an
  // asynchronous read tries the empty socket at once, a system call per request for nothing.
  boost::system::error_code ew, er;
  std::size_t nr = 0;
  asio::write(c.s, asio::buffer(c.out), ew);
  if (!ew && c.in.find("\r\n\r\n") == std::string::npos) {
    std::tie(er) = co_await c.s.async_wait(asio::ip::tcp::socket::wait_read,
                                           asio::as_tuple(asio::use_awaitable));
  }
  if (!ew && !er) {
    std::tie(er, nr) = co_await asio::async_read_until(c.s, asio::dynamic_buffer(c.in), "\r\n\r\n",
                                                       asio::as_tuple(asio::use_awaitable));
  }
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

  // A backlog: entries as the relay writes them (SPEC fields, a realistic payload).
  std::string payload =
      R"({"id":"ID","channel":"api","account":"bench","kind":"message","direction":"inbound",)"
      R"("external_id":"ID","conversation_id":"c","customer":{"id":"u","name":"Ann Lee","tier":"",)"
      R"("is_new":false},"from":{"type":"email","value":"ann@example.com"},"to":[],"subject":)"
      R"("Order late","text":"Hello, my order has not arrived yet.","queue":"general","priority":"normal"})";
  auto add_backlog = [&](const std::string& prefix) {
    redis.cmd({"EVAL",
               "for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', 'interaction_id', "
               "ARGV[3] .. i, 'conversation_id', 'c', 'customer_id', 'u', 'channel', 'api', "
               "'kind', 'message', 'priority', 'normal', 'payload', "
               "(string.gsub(ARGV[2], 'ID', ARGV[3] .. i))) end",
               "1", "sb:q:general:normal", std::to_string(backlog), payload, prefix});
  };

  struct Phase {
    std::vector<double> claim_ms, arrival_ms, committed_ms, post_ms;
    // (ms since the phase began, claim ms; negative: the claim waited for the item to arrive)
    std::vector<std::pair<double, double>> claim_at;
    // (when the POST was sent, ms since the phase began; POST -> claim ms)
    std::vector<std::pair<double, double>> arrival_at;
    std::vector<double> cycle_end_ms;  // cycles finished while ingest ran, ms since it began
    double starved_ms = 1e300;         // when a claim first found nothing waiting
    int cycles = 0, posted = 0, total = 0, claims = 0;
    double seconds = 0, ingest_s = 0;
    bench::CpuUse::PerUnit cpu{};
    std::string threads;
    double commits = 0, jobs = 0;
  };
  std::array<Phase, 3> phases;
  asio::io_context io(1);
  int errors = 0;
  Phase* cur = nullptr;
  bool long_poll = false, done = false;
  clk::time_point phase_start = clk::now();
  std::unordered_map<std::string, clk::time_point> post_started;  // external id -> POST start
  std::unordered_map<std::string, clk::time_point> post_done;     // external id -> 202 received

  auto agent = [&](int a) -> asio::awaitable<void> {
    Conn c(io);
    co_await c.s.async_connect(ep, asio::use_awaitable);
    c.s.set_option(asio::ip::tcp::no_delay(true));
    std::string token = "token-" + std::to_string(a);
    Phase& ph = *cur;
    for (;;) {
      auto t = clk::now();
      auto [st, body] = co_await call(c, "/v1/agent/claim", token,
                                      long_poll ? R"({"queue":"general","wait_ms":1000})"
                                                : R"({"queue":"general","wait_ms":0})");
      double ms = ms_since(t);
      ++ph.claims;
      if (st == 204) {
        if (!long_poll || done) {
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
      // "Work waiting": the item was in the queue before this claim was sent (a backlog item,
      // or one whose 202 had come back). A claim that found the queue empty and long-polled
      // until an item arrived measures the arrival, not the claim (phase 2's target).
      bool was_waiting = true;
      if (auto it = post_started.find(ext); it != post_started.end()) {
        ph.arrival_ms.push_back(ms_since(it->second));
        ph.arrival_at.emplace_back(
            std::chrono::duration<double, std::milli>(it->second - phase_start).count(),
            ph.arrival_ms.back());
        auto d = post_done.find(ext);  // none yet when the claim beat the 202 back: 0
        ph.committed_ms.push_back(d == post_done.end() ? 0.0 : ms_since(d->second));
        was_waiting = d != post_done.end() && d->second <= t;
      }
      if (was_waiting) {
        ph.claim_ms.push_back(ms);
      }
      double claimed_at = ms_since(phase_start);
      ph.claim_at.emplace_back(claimed_at, was_waiting ? ms : -ms);
      if (!was_waiting && claimed_at >= 0) {
        ph.starved_ms = std::min(ph.starved_ms, claimed_at);
      }
      auto [sa, ba] = co_await call(c, "/v1/agent/interactions/" + id + "/ack", token, "");
      if (sa != 200) {
        ++errors;
      }
      ++ph.cycles;
      double end_ms = ms_since(phase_start);
      if (ph.posted < ph.total && end_ms >= 0) {
        ph.cycle_end_ms.push_back(end_ms);  // while ingest runs
      }
    }
  };

  // Runs the agents (and, with `ingest`, a paced ingest of rate * seconds interactions over 64
  // connections) until the queue is empty and everything posted was claimed.
  auto run = [&](Phase& ph, bool ingest, const std::string& ext_prefix) {
    io.restart();
    cur = &ph;
    long_poll = ingest;
    done = false;
    ph.total = ingest ? rate * seconds : 0;
    int next = 0;
    bench::CpuUse cpu(daemon.pid(), redis);
    redis.cmd({"CONFIG", "RESETSTAT"});
    if (std::getenv("SB_BENCH_REDIS_STATS")) {  // and Redis's own stalls of 5 ms or more
      redis.cmd({"CONFIG", "SET", "latency-monitor-threshold", "5"});
      redis.cmd({"LATENCY", "RESET"});
    }
    double commits0 = daemon.metric("switchboard_writer_commits_total");
    double jobs0 = daemon.metric("switchboard_writer_jobs_total");
    // With ingest, the agents connect and start long-polling 200 ms before the first POST: the
    // phase measures a running system, not 114 connections being opened.
    auto start = clk::now() + std::chrono::milliseconds(ingest ? 200 : 0);
    phase_start = start;
    clk::time_point ingest_end = start, end = start;
    auto ingester = [&]() -> asio::awaitable<void> {
      Conn c(io);
      co_await c.s.async_connect(ep, asio::use_awaitable);
      c.s.set_option(asio::ip::tcp::no_delay(true));
      asio::steady_timer timer(io);
      while (next < ph.total) {
        int i = next++;
        auto due = start + std::chrono::microseconds(static_cast<long long>(i) * 1'000'000 / rate);
        if (due > clk::now()) {
          timer.expires_at(due);
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
        std::string ext = ext_prefix + std::to_string(i);
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
        ph.post_ms.push_back(ms_since(started));
        post_done[ext] = clk::now();
        if (++ph.posted == ph.total) {
          ingest_end = clk::now();
        }
      }
    };
    if (ingest) {
      for (int c = 0; c < 64; ++c) {
        asio::co_spawn(io, ingester(), asio::detached);
      }
      // Stop the long-polling agents once everything posted was claimed (or after a grace
      // period); the backlog, if any, is claimed too by then (it came first).
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            asio::steady_timer timer(io);
            auto limit = clk::now() + std::chrono::seconds(seconds + 60);
            while ((ph.posted < ph.total || static_cast<int>(ph.arrival_ms.size()) < ph.posted) &&
                   clk::now() < limit) {
              timer.expires_after(std::chrono::milliseconds(20));
              co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
            }
            end = clk::now();
            done = true;
          },
          asio::detached);
    }
    for (int a = 0; a < agents; ++a) {
      asio::co_spawn(io, agent(a), asio::detached);
    }
    io.run();
    if (!ingest) {
      end = clk::now();
    }
    ph.seconds = std::chrono::duration<double>(end - start).count();
    ph.ingest_s = std::chrono::duration<double>(ingest_end - start).count();
    ph.cpu = cpu.per(ph.cycles);
    ph.threads = cpu.threads(ph.cycles);
    ph.commits = daemon.metric("switchboard_writer_commits_total") - commits0;
    ph.jobs = daemon.metric("switchboard_writer_jobs_total") - jobs0;
    if (std::getenv("SB_BENCH_REDIS_STATS")) {  // Redis commands and their time, per phase
      std::cerr << "phase " << (&ph - &phases[0]) + 1 << ", " << ph.cycles << " cycles:\n"
                << redis.cmd({"INFO", "commandstats"})
                << "\nLATENCY LATEST (event, at, ms, max ms): " << redis.cmd({"LATENCY", "LATEST"})
                << "\n";
    }
  };

  Phase& p1 = phases[0];
  Phase& p2 = phases[1];
  Phase& p3 = phases[2];
  add_backlog("item-");
  run(p1, false, "");
  run(p2, true, "p2-");
  add_backlog("p3-item-");
  run(p3, true, "p3-");
  auto [rss, hwm] = bench::rss_mib(daemon.pid());
  daemon.stop();
  if (const char* path = std::getenv("SB_BENCH_TRACE")) {  // every claim and item, the log
    std::ofstream out(path);
    for (std::size_t i = 0; i < phases.size(); ++i) {
      for (auto [at, ms] : phases[i].claim_at) {  // ms < 0: the claim waited for the item
        out << i + 1 << ' ' << at << ' ' << ms << '\n';
      }
      for (auto [at, ms] : phases[i].arrival_at) {  // "<phase>a": POST sent at, POST -> claim
        out << i + 1 << "a " << at << ' ' << ms << '\n';
      }
    }
    std::filesystem::copy_file(dir.file("daemon.log"), std::string(path) + ".daemon.log",
                               std::filesystem::copy_options::overwrite_existing);
  }

  auto cpu_line = [](const Phase& ph) {
    return bench::fmt("%.1f us", ph.cpu.daemon_us) + bench::fmt(" / %.1f us", ph.cpu.redis_us) +
           bench::fmt(" / %.1f us", ph.cpu.self_us);
  };
  auto ms = [](std::vector<double>& v, double p) {
    return bench::fmt("%.2f ms", bench::percentile(v, p));
  };
  bench::Table t;
  t.add("agents (keep-alive, one connection each)", std::to_string(agents));
  t.add("phase 1 (backlog, no ingest): claimed + acked",
        std::to_string(p1.cycles) + " of " + std::to_string(backlog));
  t.add("phase 1: claim+ack cycles", bench::fmt("%.0f /s", p1.cycles / p1.seconds));
  t.add("phase 1: claim p50 / p99 (work waiting)",
        ms(p1.claim_ms, 0.5) + " / " + ms(p1.claim_ms, 0.99));
  t.add("phase 1: CPU per cycle: daemon / redis-server / load generator", cpu_line(p1));
  t.add("phase 1: daemon CPU per cycle by thread", p1.threads);
  t.add("phase 2 (ingest, agents keep up): ingest rate (target)",
        bench::fmt("%.0f /s", p2.posted / p2.ingest_s) + " (" + std::to_string(rate) + ")");
  t.add("phase 2: claimed + acked", std::to_string(p2.cycles) + " of " + std::to_string(p2.posted));
  t.add("phase 2: POST /v1/interactions p99", ms(p2.post_ms, 0.99));
  t.add("phase 2: POST -> claim answered p50 / p99 / max",
        ms(p2.arrival_ms, 0.5) + " / " + ms(p2.arrival_ms, 0.99) + " / " + ms(p2.arrival_ms, 1.0));
  t.add("phase 2: 202 received -> claim answered p50 / p99",
        ms(p2.committed_ms, 0.5) + " / " + ms(p2.committed_ms, 0.99));
  t.add("phase 2: claim requests per item claimed (long-polls that ended empty add to it)",
        bench::fmt("%.2f", static_cast<double>(p2.claims) / std::max(p2.cycles, 1)));
  t.add("phase 2: CPU per item (ingest + cycle): daemon / redis / load gen", cpu_line(p2));
  t.add("phase 2: daemon CPU per item by thread", p2.threads);
  t.add(
      "phase 2: database commits / jobs per commit",
      bench::fmt("%.0f", p2.commits) + bench::fmt(" / %.1f", p2.jobs / std::max(p2.commits, 1.0)));
  t.add("phase 3 (backlog + ingest): ingest rate (target)",
        bench::fmt("%.0f /s", p3.posted / p3.ingest_s) + " (" + std::to_string(rate) + ")");
  // Phase 3's rate: while ingest runs and work waits (once the agents have drained the queue,
  // they can go only as fast as work arrives, as in phase 2).
  double window_ms = std::min(p3.ingest_s * 1000, p3.starved_ms);
  auto window_cycles = std::count_if(p3.cycle_end_ms.begin(), p3.cycle_end_ms.end(),
                                     [&](double at) { return at <= window_ms; });
  t.add("phase 3: claim+ack cycles while ingest runs and work waits",
        bench::fmt("%.0f /s", window_cycles / std::max(window_ms / 1000, 1e-3)) +
            bench::fmt(" (over %.1f s", window_ms / 1000) +
            bench::fmt(" of %.1f s of ingest)", p3.ingest_s));
  t.add("phase 3: claim p50 / p99 (work waiting)",
        ms(p3.claim_ms, 0.5) + " / " + ms(p3.claim_ms, 0.99));
  t.add("phase 3: POST /v1/interactions p99", ms(p3.post_ms, 0.99));
  t.add("phase 3: claimed + acked",
        std::to_string(p3.cycles) + " of " + std::to_string(backlog + p3.posted));
  t.add("errors", std::to_string(errors));
  t.add("daemon RSS (end / peak)",
        bench::fmt("%.0f MiB", rss) + " / " + bench::fmt("%.0f MiB", hwm));
  t.print("bench_agents: claim + ack with " + std::to_string(agents) + " agents");
  return errors == 0 && p1.cycles == backlog && p2.cycles == p2.posted &&
                 p3.cycles == backlog + p3.posted
             ? 0
             : 1;
}
