#include "tests/support/free_port.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <string>

namespace sb::test {
namespace {

constexpr const char* kDir = "/tmp/sb-test-ports";
constexpr std::time_t kReservedFor = 30 * 60;  // longer than any test program runs

std::uint16_t kernel_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

std::uint16_t free_port() {
  if (::mkdir(kDir, 0777) == 0) {
    ::chmod(kDir, 01777);  // any user's tests may reserve (sticky, like /tmp)
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::uint16_t port = kernel_port();
    std::string path = std::string(kDir) + "/" + std::to_string(port);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd >= 0) {
      ::close(fd);
      return port;
    }
    if (errno != EEXIST) {
      return port;  // reservations cannot be made here: the kernel's choice as it is
    }
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && std::time(nullptr) - st.st_mtime > kReservedFor) {
      ::unlink(path.c_str());  // a reservation of a run long gone; the next try may take it
    }
  }
  return kernel_port();
}

}  // namespace sb::test
