#pragma once
// Shared by the benchmark programs: a daemon started as a child process with a temporary
// config, its memory, and a table printer.
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace sb::bench {

// VmRSS and VmHWM (peak) of a process, in MiB.
inline std::pair<double, double> rss_mib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  double rss = 0, hwm = 0;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) {
      rss = std::stod(line.substr(6)) / 1024.0;
    } else if (line.starts_with("VmHWM:")) {
      hwm = std::stod(line.substr(6)) / 1024.0;
    }
  }
  return {rss, hwm};
}

// CPU seconds (user + system) a process has used so far.
inline double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto p = stat.rfind(')');  // the command name may hold spaces
  std::istringstream rest(stat.substr(p + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) {  // utime, stime
      ticks += std::stod(field);
    }
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Per thread name (sb-writer, sb-io, sb-relay, sb-email-parse, ...) of a process (0: this one),
// summed: seconds on a CPU and seconds runnable but waiting for one (/proc schedstat). The wait
// shows how much the other load on the machine held each stage back.
struct ThreadTimes {
  double on_cpu = 0;
  double waiting = 0;
};
inline std::map<std::string, ThreadTimes> thread_times(int pid = 0) {
  std::map<std::string, ThreadTimes> out;
  std::error_code ec;
  auto dir = "/proc/" + (pid ? std::to_string(pid) : std::string("self")) + "/task";
  for (const auto& t : std::filesystem::directory_iterator(dir, ec)) {
    std::string name;
    std::getline(std::ifstream(t.path() / "comm"), name);
    double run_ns = 0, wait_ns = 0;  // schedstat: on CPU, waiting on a run queue, slices
    std::ifstream(t.path() / "schedstat") >> run_ns >> wait_ns;
    out[name].on_cpu += run_ns / 1e9;
    out[name].waiting += wait_ns / 1e9;
  }
  return out;
}

inline double percentile(std::vector<double>& v, double p) {
  if (v.empty()) {
    return 0;
  }
  auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return v[k];
}

struct Table {
  std::vector<std::pair<std::string, std::string>> rows;
  void add(std::string k, std::string v) { rows.emplace_back(std::move(k), std::move(v)); }
  void print(const std::string& title) const {
    std::size_t w = 0;
    for (auto& r : rows) {
      w = std::max(w, r.first.size());
    }
    std::printf("\n%s\n", title.c_str());
    std::printf("%s\n", std::string(title.size(), '-').c_str());
    for (auto& r : rows) {
      std::printf("%-*s  %s\n", static_cast<int>(w), r.first.c_str(), r.second.c_str());
    }
    std::fflush(stdout);
  }
};

inline std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace sb::bench
