#pragma once
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

inline std::string read_fixture(const std::string& name) {
  std::ifstream f(std::string(SB_EMAIL_FIXTURES) + "/" + name, std::ios::binary);
  if (!f) {
    throw std::runtime_error("missing fixture " + name);
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
