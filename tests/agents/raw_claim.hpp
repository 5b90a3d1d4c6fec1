#pragma once
// A long-polling claim on a connection of its own, written by hand: the tests of waiting claims
// need its socket (to poll it with others, to leave its answer unread, to hang up) where
// HttpClient would wait for the answer.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cstdint>
#include <string>

namespace sb::test {

// A claim sent on a connection of its own; its answer is read with answer(), the connection
// closed by the destructor.
class RawClaim {
 public:
  RawClaim(std::uint16_t port, const std::string& token, const std::string& queue, int wait_ms)
      : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    std::string body = R"({"queue":")" + queue + R"(","wait_ms":)" + std::to_string(wait_ms) + "}";
    std::string req =
        "POST /v1/agent/claim HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\n\r\n" + body;
    REQUIRE(::send(fd_, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  }
  ~RawClaim() { ::close(fd_); }
  RawClaim(const RawClaim&) = delete;
  RawClaim& operator=(const RawClaim&) = delete;
  int fd() const { return fd_; }
  // What has arrived (one response fits one read here).
  std::string answer() {
    char buf[4096];
    auto n = ::recv(fd_, buf, sizeof buf, 0);
    return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  }

 private:
  int fd_;
};

}  // namespace sb::test
