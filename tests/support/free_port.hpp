#pragma once
// A free loopback port for a test's server, shared by every test program (the email unit tests
// too, which do not link the rest of the harness).
#include <cstdint>

namespace sb::test {

// A loopback TCP port nobody listens on. The kernel picks it; it is then reserved for 30 minutes
// against the other test processes on this machine (a file per port in /tmp/sb-test-ports,
// created with O_EXCL). Tests stop servers and start them again on the same port (Redis down,
// kill -9, Dovecot restarted), and without the reservation a test running beside them could be
// handed that port while it is free and start a server of its own on it.
std::uint16_t free_port();

}  // namespace sb::test
