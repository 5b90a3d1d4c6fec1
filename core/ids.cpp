#include "core/ids.hpp"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace sb {
namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

// Random bytes from the kernel's CSPRNG (getrandom(2), blocking only until it is seeded at
// boot). Not a generator of our own: the mt19937_64 used before was seeded from one 32-bit
// random_device word, so one id told its seed to anyone trying the 2^32 of them, and with it
// every id the process would make.
void os_random(std::uint8_t* out, std::size_t n) {
  while (n > 0) {
    ssize_t got = ::getrandom(out, n, 0);
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
    }
    out += got;
    n -= static_cast<std::size_t>(got);
  }
}

struct UlidState {
  std::mutex mu;
  std::int64_t last_ms = -1;
  std::array<std::uint8_t, 10> rand{};  // 80 bits, big-endian
  // For the steps within one millisecond, 4 bytes a step: one getrandom call per 64 ids.
  std::array<std::uint8_t, 256> pool{};
  std::size_t pool_used = pool.size();
};

UlidState& state() {
  static UlidState s;
  return s;
}

// Crockford base32 of the 48-bit time then the 80 random bits, 5 bits a character (ULID spec).
std::string encode(std::int64_t ms, const std::array<std::uint8_t, 10>& r) {
  std::string out(26, '0');
  auto put = [&](int end, std::uint64_t v, int chars) {
    for (int i = end; i > end - chars; --i) {
      out[static_cast<std::size_t>(i)] = kAlphabet[v & 31];
      v >>= 5;
    }
  };
  std::uint64_t hi = 0, lo = 0;  // 40 bits each
  for (int i = 0; i < 5; ++i) {
    hi = hi << 8 | r[static_cast<std::size_t>(i)];
    lo = lo << 8 | r[static_cast<std::size_t>(i + 5)];
  }
  put(9, static_cast<std::uint64_t>(ms), 10);
  put(17, hi, 8);
  put(25, lo, 8);
  return out;
}

}  // namespace

std::string new_ulid(std::int64_t ms) {
  auto& s = state();
  std::lock_guard lock(s.mu);
  if (ms <= s.last_ms) {
    // Same millisecond (or clock went back): the random part grows so ids stay sorted, by a
    // random step of 1 to 2^32 rather than 1 (as oklog/ulid's Monotonic with an increment):
    // the next id of a millisecond is not the one an outsider holds plus one. An id is no
    // capability (threading follows recorded keys only), but ours reach customers in our
    // Message-IDs.
    ms = s.last_ms;
    if (s.pool_used + 4 > s.pool.size()) {
      os_random(s.pool.data(), s.pool.size());
      s.pool_used = 0;
    }
    std::uint64_t carry = 1;  // the step is the 4 bytes plus one
    for (std::size_t k = 0; k < 4; ++k) {
      carry += static_cast<std::uint64_t>(s.pool[s.pool_used + k]) << (8 * k);
    }
    s.pool_used += 4;
    for (int i = 9; i >= 0 && carry != 0; --i) {
      carry += s.rand[static_cast<std::size_t>(i)];
      s.rand[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(carry);
      carry >>= 8;
    }
  } else {
    s.last_ms = ms;
    os_random(s.rand.data(), s.rand.size());
    // The top bit of the random part clear: 2^79 of room for the steps of one millisecond
    // (2^47 ids at the largest step), so they never overflow into the time.
    s.rand[0] &= 0x7f;
  }
  return encode(ms, s.rand);
}

std::string new_ulid() {
  using namespace std::chrono;
  return new_ulid(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

bool is_ulid(std::string_view s) {
  if (s.size() != 26 || s[0] > '7') {
    return false;
  }
  for (char c : s) {
    if (std::string_view(kAlphabet).find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

std::int64_t ulid_time_ms(std::string_view s) {
  if (!is_ulid(s)) {
    return -1;
  }
  std::int64_t t = 0;
  for (int i = 0; i < 10; ++i) {
    t = (t << 5) | static_cast<std::int64_t>(std::string_view(kAlphabet).find(s[i]));
  }
  return t;
}

}  // namespace sb
