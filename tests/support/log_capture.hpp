#pragma once
// What a layer's logger writes while a LogCapture lives, as an operator would read it: one line
// per message, "LEVEL text" (the daemon's time stamp and padding left out). Construct it before
// the code under test starts logging, and destroy it after that code has stopped: spdlog's sink
// list is not guarded against a logger writing while it changes.
#include <cstddef>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <spdlog/sinks/ostream_sink.h>

#include "core/log.hpp"

namespace sb::test {

class LogCapture {
 public:
  explicit LogCapture(std::string layer) : layer_(std::move(layer)) {
    sink_->set_pattern("%l %v");
    logger(layer_)->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = logger(layer_)->sinks();
    for (auto it = sinks.begin(); it != sinks.end(); ++it) {
      if (*it == sink_) {
        sinks.erase(it);
        break;
      }
    }
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::string text() {
    sink_->flush();
    return out_.str();
  }
  // The lines holding `what`.
  std::vector<std::string> lines_with(const std::string& what) {
    std::vector<std::string> found;
    std::istringstream in(text());
    for (std::string line; std::getline(in, line);) {
      if (line.find(what) != std::string::npos) {
        found.push_back(line);
      }
    }
    return found;
  }

 private:
  std::string layer_;
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
