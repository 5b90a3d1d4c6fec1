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

// CPU seconds (user + system) a process (or one of its threads) has used so far.
inline double cpu_seconds(int pid, int tid = 0) {
  std::ifstream in("/proc/" + std::to_string(pid) +
                   (tid ? "/task/" + std::to_string(tid) : std::string()) + "/stat");
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

// CPU seconds per thread name of a process (threads of one name summed): where its time goes.
inline std::map<std::string, double> thread_cpu_seconds(int pid) {
  std::map<std::string, double> out;
  std::error_code ec;
  auto dir = "/proc/" + std::to_string(pid) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(dir, ec)) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) {
      continue;
    }
    auto tid = std::stoi(task.path().filename().string());
    out[stat.substr(open + 1, close - open - 1)] += cpu_seconds(pid, tid);
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
