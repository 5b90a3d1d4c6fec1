// The harness's free_port(): what it hands out stays reserved (tests/support/free_port.hpp).
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <set>
#include <string>

#include "tests/support/free_port.hpp"

TEST_CASE("free_port hands out each port once and leaves a reservation naming it") {
  // 200 picks of the kernel's among about 14,000 ports repeat one with a probability of about
  // three in four: without the reservation this fails most of the time.
  std::set<std::uint16_t> seen;
  for (int i = 0; i < 200; ++i) {
    auto port = sb::test::free_port();
    CHECK(seen.insert(port).second);
    struct stat st {};
    CHECK(::stat(("/tmp/sb-test-ports/" + std::to_string(port)).c_str(), &st) == 0);
  }
}
