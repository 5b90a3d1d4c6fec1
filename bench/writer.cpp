// bench/writer: the storage pipeline alone, without HTTP or Redis. 64 submissions in flight (as
// bench_ingest's 64 clients), one interaction each, half from 1,000 returning customers and half
// from new ones; prints the writer's ceiling and its CPU per interaction. Use it to profile the
// writer (`valgrind --tool=callgrind build/bench/bench_writer --requests 3000`).
//
//   build/bench/bench_writer [--requests N] [--in-flight N]
#include <time.h>

#include <chrono>
#include <cstring>
#include <semaphore>

#include "bench/bench_util.hpp"
#include "config/config.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/support/harness.hpp"

using namespace sb;

namespace {

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

Inbound interaction(int i) {
  Inbound in;
  in.channel = "api";
  in.account = "bench";
  in.kind = "message";
  in.direction = "inbound";
  in.external_id = "b-" + std::to_string(i);
  in.from = Identity{"email",
                     i % 2 == 0 ? "known" + std::to_string(i % 1000) + "@example.com"
                                : "new" + std::to_string(i) + "@example.net",
                     "", ""};
  in.subject = "Order late";
  in.text = "Hello, my order has not arrived yet.";
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  int total = 100000, in_flight = 64;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--requests")) {
      total = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--in-flight")) {
      in_flight = std::atoi(argv[i + 1]);
    }
  }
  test::TempDir dir;
  storage::Writer writer(dir.path() + "/bench.db");
  storage::Store store(writer, Rules::compile(config::Routing{}));
  writer.start();

  std::counting_semaphore<4096> slots(in_flight);
  double cpu0 = thread_cpu_seconds();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < total; ++i) {
    std::vector<Inbound> one;
    one.push_back(interaction(i));
    slots.acquire();
    store.submit(std::move(one), std::nullopt,
                 [&](std::vector<IngestOutcome>) { slots.release(); });
  }
  for (int k = 0; k < in_flight; ++k) {
    slots.acquire();
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double cpu_us = (thread_cpu_seconds() - cpu0) * 1e6 / total;
  auto commits = static_cast<double>(writer.commits());
  auto jobs = static_cast<double>(writer.jobs_done());
  writer.stop();

  bench::Table t;
  t.add("interactions", std::to_string(total));
  t.add("in flight", std::to_string(in_flight));
  t.add("throughput", bench::fmt("%.0f /s (committed)", total / secs));
  t.add("process CPU per interaction", bench::fmt("%.1f us", cpu_us));
  t.add("writer commits", bench::fmt("%.0f", commits) +
                              bench::fmt(" (%.1f jobs each)", commits ? jobs / commits : 0));
  t.print("bench_writer: Pipeline::submit -> SQLite (no HTTP, no Redis)");
  return 0;
}
