// bench/ingest: 64 concurrent keep-alive clients post interactions (half from 1,000 returning
// customers, half from new ones) to a real daemon process; measures HTTP throughput, latency,
// end-to-end time until every interaction is in its Redis stream, and the daemon's memory.
//
//   build/bench/bench_ingest [--requests N] [--clients N] [--synchronous normal|full]
#include <cstring>

#include "bench/bench_util.hpp"
#include "bench/load.hpp"

using namespace sb;

int main(int argc, char** argv) {
  int total = 200000, clients = 64;
  std::string synchronous = "normal";  // storage.synchronous
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--requests")) {
      total = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--clients")) {
      clients = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--synchronous")) {
      synchronous = argv[i + 1];
    }
  }
  test::TempDir dir;
  test::RedisServer redis;
  bench::Daemon daemon(dir, redis, "", "", "synchronous = \"" + synchronous + "\"");

  auto wire = bench::prepare_requests(total, [](int i) {
    // Even: one of 1,000 returning customers; odd: a new customer every time.
    std::string from = i % 2 == 0 ? "known" + std::to_string(i % 1000) + "@example.com"
                                  : "new" + std::to_string(i) + "@example.net";
    bench::Request req{bench::bhttp::verb::post, "/v1/interactions", 11};
    req.set(bench::bhttp::field::authorization, "Bearer bench");
    req.set(bench::bhttp::field::content_type, "application/json");
    req.body() = R"({"source":"bench","external_id":"b-)" + std::to_string(i) +
                 R"(","from":{"email":")" + from +
                 R"("},"subject":"Order late","text":"Hello, my order has not arrived yet."})";
    return req;
  });
  bench::CpuUse cpu(daemon.pid(), redis);
  auto t0 = std::chrono::steady_clock::now();
  auto load = bench::run_load(daemon.port, wire, clients, 202);
  int errors = load.errors;
  test::eventually([&] { return redis.xlen("sb:q:general:normal") >= total - errors; },
                   std::chrono::seconds(120));
  double e2e_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long long in_redis = redis.xlen("sb:q:general:normal");
  auto [rss, hwm] = bench::rss_mib(daemon.pid());
  auto used = cpu.per(total);
  auto threads = cpu.threads(total);
  double commits = daemon.metric("switchboard_writer_commits_total");
  double jobs = daemon.metric("switchboard_writer_jobs_total");
  daemon.stop();

  auto& lat = load.latency_ms;
  bench::Table t;
  t.add("clients (keep-alive)", std::to_string(clients));
  t.add("storage.synchronous", synchronous);
  t.add("interactions posted", std::to_string(total));
  t.add("errors (non-202)", std::to_string(errors));
  t.add("in Redis at the end", std::to_string(in_redis));
  t.add("HTTP throughput", bench::fmt("%.0f /s", total / load.seconds));
  t.add("end-to-end throughput", bench::fmt("%.0f /s (committed and in Redis)", in_redis / e2e_s));
  t.add("daemon CPU per interaction",
        bench::fmt("%.1f us (all threads; the machine's limit is 2 cores)", used.daemon_us));
  t.add("daemon CPU per interaction by thread", threads);
  t.add("redis-server CPU per interaction", bench::fmt("%.1f us", used.redis_us));
  t.add("load generator CPU per request", bench::fmt("%.1f us (same machine)", used.self_us));
  t.add("latency p50", bench::fmt("%.2f ms", bench::percentile(lat, 0.50)));
  t.add("latency p99", bench::fmt("%.2f ms", bench::percentile(lat, 0.99)));
  t.add("latency max", bench::fmt("%.2f ms", bench::percentile(lat, 1.0)));
  t.add("writer commits", bench::fmt("%.0f", commits) +
                              bench::fmt(" (%.1f jobs each)", commits ? jobs / commits : 0));
  t.add("daemon RSS (end / peak)",
        bench::fmt("%.0f MiB", rss) + " / " + bench::fmt("%.0f MiB", hwm));
  t.print("bench_ingest: POST /v1/interactions -> SQLite -> Redis");
  return in_redis == total - errors && errors == 0 ? 0 : 1;
}
