#pragma once
// Shared by the HTTP benchmarks: a daemon started as a child process with a temporary config,
// and a closed-loop load generator (N keep-alive clients, each sending its next request as soon
// as the previous answer arrived).
#include <signal.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>

#include "bench/bench_util.hpp"
#include "tests/support/harness.hpp"

namespace sb::bench {

namespace bhttp = boost::beast::http;
using Request = bhttp::request<bhttp::string_body>;

// A switchboard process on a free port with `extra` appended to a minimal config.
struct Daemon {
  test::TempDir& dir;
  test::RedisServer& redis;
  std::uint16_t port = test::free_port();
  std::unique_ptr<test::Process> proc;

  // `storage_extra`: more keys of [storage], such as `synchronous = "full"`.
  Daemon(test::TempDir& d, test::RedisServer& r, const std::string& extra = "",
         const std::string& db = "", const std::string& storage_extra = "")
      : dir(d), redis(r) {
    std::string cfg = dir.file("bench.toml");
    std::ofstream(cfg) << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n"
                       << "[storage]\npath = \"" << (db.empty() ? dir.file("bench.db") : db)
                       << "\"\n"
                       << storage_extra << "\n"
                       << "[redis]\nurl = \"" << redis.url() << "\"\n"
                       << "[api]\ntokens = [\"bench\"]\n"
                       << extra;
    // SB_BENCH_WRAP runs the daemon under a tool, to profile it under the benchmark's load:
    // SB_BENCH_WRAP="valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out"
    std::vector<std::string> argv;
    const char* wrap = std::getenv("SB_BENCH_WRAP");
    for (std::istringstream words(wrap ? wrap : ""); !words.eof();) {
      std::string w;
      if (words >> w) {
        argv.push_back(w);
      }
    }
    argv.insert(argv.end(), {test::switchboard_binary(), "run", "--config", cfg});
    proc = std::make_unique<test::Process>(
        argv, dir.file("daemon.log"),
        std::map<std::string, std::string>{{"SWITCHBOARD_LOG", "warn"}});
    if (!test::eventually(
            [&] {
              try {
                return test::HttpClient(port).request("GET", "/readyz").status == 200;
              } catch (...) {
                return false;
              }
            },
            std::chrono::seconds(wrap ? 60 : 10))) {
      std::cerr << "daemon did not become ready; see " << dir.file("daemon.log") << "\n";
      std::exit(1);
    }
  }
  ~Daemon() { stop(); }
  void stop() {
    if (proc) {
      proc->kill(SIGTERM);
      proc->wait();
      proc.reset();
    }
  }
  int pid() const { return proc->pid(); }
  double metric(const std::string& name) const {
    auto text = test::HttpClient(port).request("GET", "/metrics").body;
    auto p = text.find("\n" + name + " ");
    return p == std::string::npos ? 0.0 : std::stod(text.substr(p + name.size() + 2));
  }
};

// CPU time used by the daemon, its redis-server and this process (the load generator) from
// construction on, per unit of work.
class CpuUse {
 public:
  struct PerUnit {
    double daemon_us, redis_us, self_us;
  };
  CpuUse(int daemon_pid, test::RedisServer& redis)
      : daemon_(daemon_pid),
        redis_(redis_pid(redis)),
        self_(getpid()),
        daemon0_(cpu_seconds(daemon_)),
        redis0_(cpu_seconds(redis_)),
        self0_(cpu_seconds(self_)),
        threads0_(thread_times(daemon_)) {}
  PerUnit per(int units) const {
    double n = std::max(units, 1) / 1e6;
    return {(cpu_seconds(daemon_) - daemon0_) / n, (cpu_seconds(redis_) - redis0_) / n,
            (cpu_seconds(self_) - self0_) / n};
  }
  // The daemon's CPU per unit by thread, busiest first: "sb-io 41 us, sb-writer 30 us, ...".
  std::string threads(int units) const {
    std::vector<std::pair<double, std::string>> used;
    for (const auto& [name, t] : thread_times(daemon_)) {
      auto before = threads0_.find(name);
      double s = t.on_cpu - (before == threads0_.end() ? 0 : before->second.on_cpu);
      double us = s * 1e6 / std::max(units, 1);
      if (us >= 0.5) {
        used.emplace_back(us, name);
      }
    }
    std::sort(used.rbegin(), used.rend());
    std::string out;
    for (const auto& [us, name] : used) {
      out += (out.empty() ? "" : ", ") + name + fmt(" %.0f us", us);
    }
    return out;
  }

 private:
  // The redis-server's process id, from INFO.
  static int redis_pid(test::RedisServer& redis) {
    std::string info = redis.cmd({"INFO", "server"});
    auto at = info.find("process_id:");
    return at == std::string::npos ? 0 : std::atoi(info.c_str() + at + 11);
  }
  int daemon_, redis_, self_;
  double daemon0_, redis0_, self0_;
  std::map<std::string, ThreadTimes> threads0_;
};

struct LoadResult {
  std::vector<double> latency_ms;
  int errors = 0;  // transport errors and unexpected statuses
  double seconds = 0;
};

// The requests made by `make(i)`, i in [0, total), serialised. Done before the clock starts (as
// a load generator such as wrk sends prepared bytes): the generator shares the machine with the
// daemon, and building HTTP messages is not the daemon's cost.
inline std::vector<std::string> prepare_requests(int total,
                                                 const std::function<Request(int)>& make) {
  std::vector<std::string> wire(static_cast<std::size_t>(total));
  for (int i = 0; i < total; ++i) {
    Request req = make(i);
    req.set(bhttp::field::host, "127.0.0.1");
    req.prepare_payload();
    std::ostringstream out;
    out << req;
    wire[static_cast<std::size_t>(i)] = std::move(out).str();
  }
  return wire;
}

// Sends the prepared requests over `clients` keep-alive connections, one at a time on each; a
// response other than `expect` counts as an error.
inline LoadResult run_load(std::uint16_t port, const std::vector<std::string>& wire, int clients,
                           int expect) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  int total = static_cast<int>(wire.size());
  asio::io_context io(1);
  LoadResult r;
  r.latency_ms.reserve(static_cast<std::size_t>(total));
  int next = 0;
  auto t0 = std::chrono::steady_clock::now();
  auto worker = [&]() -> asio::awaitable<void> {
    beast::tcp_stream s(io);
    co_await s.async_connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                             asio::use_awaitable);
    s.socket().set_option(asio::ip::tcp::no_delay(true));
    beast::flat_buffer buf;
    while (next < total) {
      const std::string& req = wire[static_cast<std::size_t>(next++)];
      auto start = std::chrono::steady_clock::now();
      // As wrk does: the request in one write(), then a read() only once the socket is
      // readable. An asynchronous read would first try the socket at once and find it empty:
      // a system call per request for nothing, on the machine the daemon runs on.
      boost::system::error_code ew, er;
      asio::write(s.socket(), asio::buffer(req), ew);
      bhttp::response<bhttp::string_body> res;
      if (!ew) {
        std::tie(er) = co_await s.socket().async_wait(asio::ip::tcp::socket::wait_read,
                                                      asio::as_tuple(asio::use_awaitable));
      }
      if (!ew && !er) {
        bhttp::read(s.socket(), buf, res, er);  // rarely more than the one read()
      }
      if (ew || er) {
        ++r.errors;
        co_return;
      }
      if (static_cast<int>(res.result_int()) != expect) {
        if (++r.errors <= 3) {
          std::cerr << "unexpected " << res.result_int() << ": " << res.body() << "\n";
        }
      }
      r.latency_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
    }
  };
  for (int c = 0; c < clients; ++c) {
    asio::co_spawn(io, worker(), asio::detached);
  }
  io.run();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace sb::bench
