#pragma once
// The whole content of a file (a log, the README, a backup copy), byte for byte; "" when it
// cannot be opened. Shared by the spine tests, which each had a copy.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace sb::test {

inline std::string file_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace sb::test
