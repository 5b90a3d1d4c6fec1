// bench/customers: imports 1,000,000 customers (CSV, each with an email and a phone) with
// `switchboard customers import`, then measures the cost of one customer match on that
// database and the daemon's memory while it serves interactions from those customers.
//
//   build/bench/bench_customers [--customers N]
//
// "A match" is what the writer does for every inbound interaction before threading: canonicalise
// the sender's identity (routing/identity) and look the customer up through the identities
// primary key, then read the customer row. It is timed here in-process on the imported file,
// with statements prepared once, as the writer holds them.
#include <time.h>
#include <cstring>
#include <random>

#include "bench/bench_util.hpp"
#include "bench/load.hpp"
#include "routing/identity.hpp"
#include "storage/sqlite.hpp"

using namespace sb;
using clk = std::chrono::steady_clock;

namespace {
double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}
std::string email_of(int i) {
  return "Customer" + std::to_string(i) + "@Example.com";
}
// Distinct, valid North American numbers: area code from a list, then 7 digits.
std::string phone_of(int i) {
  static const char* areas[] = {"415", "212", "312", "617", "646", "718", "303", "206"};
  int local = 2000000 + i / 8;  // exchange 200..999, so always a valid subscriber number
  return std::string("+1") + areas[i % 8] + std::to_string(local);
}
}  // namespace

int main(int argc, char** argv) {
  int n = 1000000;
  std::string keep_db;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--customers")) {
      n = std::atoi(argv[i + 1]);
    }
  }
  test::TempDir dir;
  std::string csv = dir.file("customers.csv");
  {
    std::ofstream out(csv);
    out << "external_id,name,email,phone,tier\n";
    for (int i = 0; i < n; ++i) {
      out << "c-" << i << ",Customer " << i << "," << email_of(i) << "," << phone_of(i) << ","
          << (i % 10 == 0 ? "vip" : "standard") << "\n";
    }
  }
  std::string db_path = dir.file("customers.db");
  std::string cfg = dir.file("import.toml");
  std::ofstream(cfg) << "[storage]\npath = \"" << db_path << "\"\n"
                     << "[matching]\ndefault_region = \"US\"\n";

  // 1. Import, as an operator would run it.
  auto t0 = clk::now();
  test::Process import({test::switchboard_binary(), "customers", "import", "--config", cfg, csv},
                       dir.file("import.log"));
  int rc = import.wait();
  double import_s = std::chrono::duration<double>(clk::now() - t0).count();
  if (rc != 0) {
    std::cerr << "import failed (exit " << rc << "); see " << dir.file("import.log") << "\n";
    return 1;
  }

  // 2. The match step, on the imported database.
  double match_us = 0, match_p99_us = 0, match_cpu_us = 0, canon_us = 0;
  int misses = 0;
  {
    storage::Db db(db_path, true);
    auto find = db.prepare("SELECT customer_id FROM identities WHERE type=?1 AND value=?2");
    auto row = db.prepare("SELECT name, tier, tags FROM customers WHERE id=?1");
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> pick(0, n - 1);
    constexpr int kMatches = 200000;
    std::vector<int> who(kMatches);
    for (auto& w : who) {
      w = pick(rng);
    }
    // Wall time is what a request sees; thread CPU time is the cost itself, unaffected by other
    // processes on the machine (the benchmark may share two cores with a build).
    std::vector<double> each;
    each.reserve(kMatches);
    double canon_s = 0;
    auto cpu0 = thread_cpu_s();
    auto start = clk::now();
    for (int k = 0; k < kMatches; ++k) {
      int i = who[static_cast<std::size_t>(k)];
      auto m0 = clk::now();
      auto c = k % 2 ? canonicalize("email", email_of(i), "US")
                     : canonicalize("phone", phone_of(i), "US");
      auto m1 = clk::now();
      canon_s += std::chrono::duration<double>(m1 - m0).count();
      find.bind(1, c.type).bind(2, c.value);
      if (c.ok() && find.step()) {
        row.bind(1, find.text_view(0));
        row.step();
        row.reset();
      } else {
        ++misses;
      }
      find.reset();
      each.push_back(std::chrono::duration<double, std::micro>(clk::now() - m0).count());
    }
    match_us = std::chrono::duration<double, std::micro>(clk::now() - start).count() / kMatches;
    match_cpu_us = (thread_cpu_s() - cpu0) * 1e6 / kMatches;
    canon_us = canon_s * 1e6 / kMatches;
    match_p99_us = bench::percentile(each, 0.99);
  }

  // 3. The daemon on that database, serving interactions from random known customers.
  test::RedisServer redis;
  bench::Daemon daemon(dir, redis, "[matching]\ndefault_region = \"US\"\n", db_path);
  auto [rss_idle, hwm_idle] = bench::rss_mib(daemon.pid());
  constexpr int kPosts = 20000;
  auto wire = bench::prepare_requests(kPosts, [n](int i) {
    bench::Request req{bench::bhttp::verb::post, "/v1/interactions", 11};
    req.set(bench::bhttp::field::authorization, "Bearer bench");
    req.set(bench::bhttp::field::content_type, "application/json");
    int who = static_cast<int>((static_cast<long long>(i) * 7919) % n);
    req.body() = R"({"source":"bench","external_id":"m-)" + std::to_string(i) +
                 R"(","from":{"phone":")" + phone_of(who) + R"("},"text":"where is my order?"})";
    return req;
  });
  auto load = bench::run_load(daemon.port, wire, 16, 202);
  auto [rss, hwm] = bench::rss_mib(daemon.pid());
  daemon.stop();
  long long customers_after = 0;
  {
    storage::Db db(db_path, true);
    auto st = db.prepare("SELECT count(*) FROM customers");
    st.step();
    customers_after = st.int64(0);
  }

  bench::Table t;
  t.add("customers imported", std::to_string(n) + " (CSV, email + phone each)");
  t.add("import time",
        bench::fmt("%.1f s", import_s) + bench::fmt(" (%.0f records/s)", n / import_s));
  t.add("match, mean CPU", bench::fmt("%.2f us", match_cpu_us) + " (canonicalise + lookup + row)");
  t.add("match, mean wall",
        bench::fmt("%.2f us", match_us) + bench::fmt(" (of which canonicalise %.2f us)", canon_us));
  t.add("match, p99", bench::fmt("%.2f us", match_p99_us));
  t.add("match misses", std::to_string(misses));
  t.add("daemon RSS idle (1M loaded)", bench::fmt("%.0f MiB", rss_idle));
  t.add("daemon RSS after 20k posts",
        bench::fmt("%.0f MiB", rss) + bench::fmt(" (peak %.0f MiB)", hwm));
  t.add("posts errors", std::to_string(load.errors));
  t.add("new customers created", std::to_string(customers_after - n) + " (all senders known)");
  t.print("bench_customers: import, match, memory");
  return misses == 0 && load.errors == 0 && customers_after == n ? 0 : 1;
}
