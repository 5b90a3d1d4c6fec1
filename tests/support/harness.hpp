#pragma once
// Test harness: real servers on free loopback ports (STYLE 10), a temporary directory, a small
// HTTP client, and a whole daemon in-process. Every wait here is bounded.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "tests/support/free_port.hpp"

namespace sb::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A child process with its stdout/stderr in a log file; killed (SIGKILL) on destruction. It runs
// in `cwd` when given, else in the test's working directory.
class Process {
 public:
  Process(std::vector<std::string> argv, const std::string& log_path,
          std::map<std::string, std::string> env = {}, const std::string& cwd = "");
  ~Process();
  int pid() const { return pid_; }
  void kill(int sig);
  int wait();  // exit status (or 128+signal)
  bool running();

 private:
  int pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// redis-server on a free port with its data in a temporary directory.
class RedisServer {
 public:
  RedisServer();
  ~RedisServer();
  std::uint16_t port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  void stop();
  void start();  // again, on the same port and data
  // Sends `sig` to the running server: SIGSTOP hangs it (connections stay open, nothing is
  // answered), SIGCONT resumes it.
  void signal(int sig);
  // Runs one command; returns the reply rendered as text (arrays as JSON-like lists), or
  // "ERR ..." for an error reply.
  std::string cmd(const std::vector<std::string>& args);
  // XRANGE stream - + as a list of field maps.
  std::vector<std::map<std::string, std::string>> xrange(const std::string& stream);
  long long xlen(const std::string& stream);

 private:
  TempDir dir_;
  std::uint16_t port_;
  std::unique_ptr<Process> proc_;
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-cased names
};

// One keep-alive connection; reconnects when the server closed it.
class HttpClient {
 public:
  explicit HttpClient(std::uint16_t port);
  ~HttpClient();
  HttpResponse request(const std::string& method, const std::string& target,
                       const std::string& body = "",
                       std::map<std::string, std::string> headers = {});
  HttpResponse post_json(const std::string& target, const std::string& body,
                         const std::string& bearer);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A config for tests: storage in `dir`, Redis at `redis_port`, listen on a free port, one API
// token "test-token", agents alice (general, vip) and bob (general, billing).
config::Config test_config(const TempDir& dir, std::uint16_t redis_port);

// A [[routing.rules]] entry to `queue` at `priority`, without conditions (it matches all).
inline config::Rule rule_to(std::string name, std::string queue, std::string priority) {
  config::Rule r;
  r.name = std::move(name);
  r.queue = std::move(queue);
  r.priority = std::move(priority);
  return r;
}

// The same, for an interaction whose text (text_rule) or subject (subject_rule) matches `regex`.
inline config::Rule text_rule(std::string name, std::string queue, std::string priority,
                              std::string regex) {
  auto r = rule_to(std::move(name), std::move(queue), std::move(priority));
  r.when.text_matches = std::move(regex);
  return r;
}
inline config::Rule subject_rule(std::string name, std::string queue, std::string priority,
                                 std::string regex) {
  auto r = rule_to(std::move(name), std::move(queue), std::move(priority));
  r.when.subject_matches = std::move(regex);
  return r;
}

// Polls `pred` every 5 ms until it holds or `limit` passes.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds limit = std::chrono::seconds(10));

// Whether a daemon on `port` answers GET /healthz with 200 (false while nothing listens).
bool healthy(std::uint16_t port);

// The path of the built switchboard binary (for tests that run it as a process).
std::string switchboard_binary();

// `switchboard run --config cfg` as a child process, its output in `dir`'s daemon.log (for the
// tests that kill -9 it and start it again). Returns at once: wait for healthy() or /readyz.
std::unique_ptr<Process> daemon_process(const TempDir& dir, const std::string& cfg);

// A command of the switchboard binary run to completion: its exit status, stdout and stderr.
struct Cli {
  int status = 0;
  std::string output;  // stdout and stderr
};
// `cwd` as for Process (for the relative paths: ./switchboard.toml, a relative storage.path).
Cli run_switchboard(const TempDir& dir, std::vector<std::string> args,
                    std::map<std::string, std::string> env = {}, const std::string& cwd = "");

}  // namespace sb::test
