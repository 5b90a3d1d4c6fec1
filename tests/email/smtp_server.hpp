#pragma once
// aiosmtpd (tests/email/smtp_server.py) on a free port, storing each message it accepts as
// out/<n>.eml with its envelope in out/<n>.env; with `tls`, STARTTLS + AUTH are required
// (certificate for localhost). Users define SB_SMTP_SERVER (the script's path) in CMake.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/email/dovecot.hpp"
#include "tests/support/harness.hpp"

namespace sb::test {

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

struct SmtpServer {
  TempDir dir;
  std::uint16_t port = free_port();
  std::unique_ptr<Process> proc;
  explicit SmtpServer(bool tls) {
    std::filesystem::create_directories(dir.file("out"));
    std::vector<std::string> argv{"/usr/bin/python3", SB_SMTP_SERVER, std::to_string(port),
                                  dir.file("out")};
    if (tls) {
      std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " + dir.file("key.pem") +
                        " -out " + dir.file("cert.pem") +
                        " -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost "
                        "2>/dev/null";
      REQUIRE(std::system(cmd.c_str()) == 0);
      argv.push_back(dir.file("cert.pem"));
      argv.push_back(dir.file("key.pem"));
    }
    proc = std::make_unique<Process>(argv, dir.file("smtp.log"));
    REQUIRE(eventually([&] { return port_open(port); }, std::chrono::seconds(15)));
  }
  std::string message(int n) { return slurp(dir.file("out/" + std::to_string(n) + ".eml")); }
  std::string envelope(int n) { return slurp(dir.file("out/" + std::to_string(n) + ".env")); }
  bool has(int n) { return std::filesystem::exists(dir.file("out/" + std::to_string(n) + ".eml")); }
};

}  // namespace sb::test
