#include "core/ids.hpp"

#include <array>
#include <chrono>
#include <mutex>
#include <random>

namespace sb {
namespace {

constexpr char kAlphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

struct UlidState {
  std::mutex mu;
  std::int64_t last_ms = -1;
  std::array<std::uint8_t, 10> rand{};  // 80 bits, big-endian
  std::mt19937_64 rng{std::random_device{}()};
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
    // Same millisecond (or clock went back): increment the random part so ids stay sorted.
    ms = s.last_ms;
    for (int i = 9; i >= 0; --i) {
      if (++s.rand[i] != 0) {
        break;
      }
    }
  } else {
    s.last_ms = ms;
    std::uint64_t a = s.rng();
    std::uint64_t b = s.rng();
    for (int i = 0; i < 8; ++i) {
      s.rand[i] = static_cast<std::uint8_t>(a >> (56 - 8 * i));
    }
    // Keep the top bit of the random part clear so increments never overflow in practice.
    s.rand[0] &= 0x7f;
    s.rand[8] = static_cast<std::uint8_t>(b >> 8);
    s.rand[9] = static_cast<std::uint8_t>(b);
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
