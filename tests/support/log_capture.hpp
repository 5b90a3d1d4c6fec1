#pragma once
// What one of the daemon's loggers (core/log.hpp: "relay", "email", ...) writes while a test
// looks, for the tests that check what an operator would read. Header-only: the test programs
// link the logging of the daemon's libraries, sb_test_support does not.
#include <cstddef>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/sinks/ostream_sink.h>

#include "core/log.hpp"

namespace sb::test {

// Adds a sink to the logger `name` for its lifetime. Captures nest (each removes the sink it
// added last), so a capture lives within the test that made it, like the loggers' other sinks.
class LogCapture {
 public:
  explicit LogCapture(std::string name) : name_(std::move(name)) {
    logger(name_)->sinks().push_back(sink_);
  }
  ~LogCapture() { logger(name_)->sinks().pop_back(); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // Everything logged so far (the sink flushed first: a line is whole once it is here).
  std::string text() {
    sink_->flush();
    return out_.str();
  }
  // The lines logged so far that contain `needle`, in order.
  std::vector<std::string> lines_with(const std::string& needle) {
    std::vector<std::string> lines;
    std::istringstream in(text());
    for (std::string line; std::getline(in, line);) {
      if (line.find(needle) != std::string::npos) {
        lines.push_back(line);
      }
    }
    return lines;
  }

 private:
  std::string name_;
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_ =
      std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
};

// How often `what` stands in `text` (overlapping ones too).
inline std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

}  // namespace sb::test
