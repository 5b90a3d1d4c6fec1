#include "core/stalls.hpp"

#include <array>
#include <atomic>
#include <mutex>
#include <utility>

#include "core/log.hpp"

namespace sb {
namespace {

constexpr auto kLogEvery = std::chrono::seconds(10);

struct Stage {
  std::atomic<std::uint64_t> count{0};
  std::mutex mu;
  std::chrono::steady_clock::time_point logged{};  // last line written
  std::uint64_t quiet = 0;                         // stalls since then, not logged
};

std::array<Stage, std::size(kStalls)>& stages() {
  static std::array<Stage, std::size(kStalls)> s;
  return s;
}

}  // namespace

const char* stall_name(Stall stage) {
  switch (stage) {
    case Stall::io:
      return "io";
    case Stall::writer:
      return "writer";
    case Stall::relay:
      return "relay";
    case Stall::claim:
      return "claim";
    case Stall::redis:
      return "redis";
  }
  return "?";
}

void note_stall(Stall stage, std::string_view what) {
  Stage& s = stages()[static_cast<std::size_t>(stage)];
  s.count.fetch_add(1, std::memory_order_relaxed);
  std::uint64_t also = 0;
  {
    std::lock_guard lock(s.mu);
    auto now = std::chrono::steady_clock::now();
    if (s.logged != std::chrono::steady_clock::time_point{} && now - s.logged < kLogEvery) {
      ++s.quiet;
      return;
    }
    s.logged = now;
    also = std::exchange(s.quiet, 0);
  }
  if (also > 0) {
    logger("stall")->warn("[stall {}] {} ({} more of this stage since its last line)",
                          stall_name(stage), what, also);
  } else {
    logger("stall")->warn("[stall {}] {}", stall_name(stage), what);
  }
}

std::uint64_t stalls(Stall stage) {
  return stages()[static_cast<std::size_t>(stage)].count.load(std::memory_order_relaxed);
}

}  // namespace sb
