#include "tests/support/harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <thread>

namespace sb::test {
namespace fs = std::filesystem;

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "sbtest-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) {
    throw std::runtime_error("mkdtemp failed");
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

Process::Process(std::vector<std::string> argv, const std::string& log_path,
                 std::map<std::string, std::string> env, const std::string& cwd) {
  pid_ = ::fork();
  if (pid_ == 0) {
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) {
      _exit(126);
    }
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    // Nothing else of the test goes with it: a listening socket of a fake started before this
    // process (they are not close-on-exec) would stay open in it after the test closed it, and
    // a client connecting to that port would be accepted by the kernel and never answered,
    // where the test wants the connection refused.
    ::close_range(3, ~0U, 0);
    for (auto& [k, v] : env) {
      ::setenv(k.c_str(), v.c_str(), 1);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> args;
    for (auto& a : argv) {
      args.push_back(a.data());
    }
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    _exit(127);
  }
}

Process::~Process() {
  if (running()) {
    kill(SIGKILL);
    wait();
  }
}

void Process::kill(int sig) {
  ::kill(pid_, sig);
}

bool Process::running() {
  if (reaped_) {
    return false;
  }
  int st;
  if (::waitpid(pid_, &st, WNOHANG) == pid_) {
    reaped_ = true;
    status_ = st;
    return false;
  }
  return true;
}

int Process::wait() {
  if (!reaped_) {
    ::waitpid(pid_, &status_, 0);
    reaped_ = true;
  }
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
}

// --- Redis ---------------------------------------------------------------------------------

RedisServer::RedisServer() : port_(free_port()) {
  start();
}
RedisServer::~RedisServer() {
  stop();
}

void RedisServer::start() {
  proc_ = std::make_unique<Process>(
      std::vector<std::string>{"redis-server", "--port", std::to_string(port_), "--bind",
                               "127.0.0.1", "--dir", dir_.path(), "--save", "", "--appendonly",
                               "no", "--daemonize", "no"},
      dir_.file("redis.log"));
  bool up = eventually([&] { return cmd({"PING"}) == "PONG"; });
  if (!up) {
    throw std::runtime_error("redis-server did not start; see " + dir_.file("redis.log"));
  }
  // A restart (stop, then start) reuses the port: while it was free, another test running in
  // parallel may have been handed it, and the PING above answered by that test's server. Say so
  // rather than let the test go on against someone else's Redis.
  std::string pid = "process_id:" + std::to_string(proc_->pid()) + "\r\n";
  if (cmd({"INFO", "server"}).find(pid) == std::string::npos) {
    throw std::runtime_error("port " + std::to_string(port_) +
                             " is answered by another process than the redis-server started "
                             "here (taken while this one was stopped?); see " +
                             dir_.file("redis.log"));
  }
}

void RedisServer::signal(int sig) {
  if (!proc_) {
    throw std::runtime_error("redis-server is stopped: no process to signal");
  }
  proc_->kill(sig);
}

void RedisServer::stop() {
  if (proc_) {
    proc_->kill(SIGKILL);
    proc_->wait();
    proc_.reset();
  }
}

namespace {
std::string render(redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      return std::string(r->str, r->len);
    case REDIS_REPLY_ERROR:
      return std::string(r->str, r->len);
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_ARRAY: {
      std::string s = "[";
      for (size_t i = 0; i < r->elements; ++i) {
        s += (i ? "," : "") + render(r->element[i]);
      }
      return s + "]";
    }
    default:
      return "?";
  }
}

template <class F>
auto with_redis(std::uint16_t port, const std::vector<std::string>& args, F f) {
  timeval tv{1, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", port, tv);
  if (!c || c->err) {
    if (c) {
      redisFree(c);
    }
    return f(nullptr);
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
  auto out = f(r);
  if (r) {
    freeReplyObject(r);
  }
  redisFree(c);
  return out;
}
}  // namespace

std::string RedisServer::cmd(const std::vector<std::string>& args) {
  return with_redis(port_, args, [](redisReply* r) -> std::string {
    return r ? render(r) : "ERR connection failed";
  });
}

std::vector<std::map<std::string, std::string>> RedisServer::xrange(const std::string& stream) {
  return with_redis(port_, {"XRANGE", stream, "-", "+"}, [](redisReply* r) {
    std::vector<std::map<std::string, std::string>> out;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
      return out;
    }
    for (size_t i = 0; i < r->elements; ++i) {
      auto* fields = r->element[i]->element[1];
      std::map<std::string, std::string> m;
      m["_id"] = std::string(r->element[i]->element[0]->str, r->element[i]->element[0]->len);
      for (size_t j = 0; j + 1 < fields->elements; j += 2) {
        m[std::string(fields->element[j]->str, fields->element[j]->len)] =
            std::string(fields->element[j + 1]->str, fields->element[j + 1]->len);
      }
      out.push_back(std::move(m));
    }
    return out;
  });
}

long long RedisServer::xlen(const std::string& stream) {
  return with_redis(port_, {"XLEN", stream}, [](redisReply* r) -> long long {
    return r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
  });
}

// --- HTTP client ---------------------------------------------------------------------------

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct HttpClient::Impl {
  asio::io_context io;
  std::uint16_t port;
  std::unique_ptr<beast::tcp_stream> stream;
  beast::flat_buffer buffer;
};

HttpClient::HttpClient(std::uint16_t port) : impl_(std::make_unique<Impl>()) {
  impl_->port = port;
}
HttpClient::~HttpClient() = default;

HttpResponse HttpClient::request(const std::string& method, const std::string& target,
                                 const std::string& body,
                                 std::map<std::string, std::string> headers) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!impl_->stream) {
      impl_->stream = std::make_unique<beast::tcp_stream>(impl_->io);
      impl_->stream->expires_after(std::chrono::seconds(10));
      impl_->stream->connect(
          asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), impl_->port));
      impl_->buffer.clear();
    }
    http::request<http::string_body> req{http::string_to_verb(method), target, 11};
    req.set(http::field::host, "127.0.0.1");
    for (auto& [k, v] : headers) {
      req.set(k, v);
    }
    req.body() = body;
    req.prepare_payload();
    beast::error_code ec;
    impl_->stream->expires_after(std::chrono::seconds(60));
    http::write(*impl_->stream, req, ec);
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    if (!ec) {
      http::read(*impl_->stream, impl_->buffer, parser, ec);
    }
    if (ec) {
      impl_->stream.reset();
      if (attempt == 0 && (ec == http::error::end_of_stream ||
                           ec == asio::error::connection_reset || ec == asio::error::broken_pipe)) {
        continue;  // the server closed an idle keep-alive connection
      }
      throw std::runtime_error("http " + method + " " + target + ": " + ec.message());
    }
    auto& res = parser.get();
    HttpResponse out;
    out.status = res.result_int();
    out.body = res.body();
    for (auto& f : res) {
      std::string name(f.name_string());
      for (auto& c : name) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      }
      out.headers[name] = std::string(f.value());
    }
    if (!res.keep_alive()) {
      impl_->stream.reset();
    }
    return out;
  }
  throw std::runtime_error("unreachable");
}

HttpResponse HttpClient::post_json(const std::string& target, const std::string& body,
                                   const std::string& bearer) {
  std::map<std::string, std::string> h{{"Content-Type", "application/json"}};
  if (!bearer.empty()) {
    h["Authorization"] = "Bearer " + bearer;
  }
  return request("POST", target, body, h);
}

// --- config and helpers ----------------------------------------------------------------------

config::Config test_config(const TempDir& dir, std::uint16_t redis_port) {
  auto c = config::defaults();
  c.server.host = "127.0.0.1";
  c.server.port = 0;
  c.server.listen = "127.0.0.1:0";
  c.storage.path = dir.file("switchboard.db");
  c.redis.url = "redis://127.0.0.1:" + std::to_string(redis_port) + "/0";
  c.redis.host = "127.0.0.1";
  c.redis.port = redis_port;
  c.api.tokens = {"test-token"};
  c.agents = {{"alice", "alice-token", {"general", "vip"}},
              {"bob", "bob-token", {"general", "billing"}}};
  return c;
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

bool healthy(std::uint16_t port) {
  try {
    return HttpClient(port).request("GET", "/healthz").status == 200;
  } catch (...) {
    return false;
  }
}

std::string switchboard_binary() {
  return SB_BINARY_PATH;
}

std::unique_ptr<Process> daemon_process(const TempDir& dir, const std::string& cfg) {
  return std::make_unique<Process>(
      std::vector<std::string>{switchboard_binary(), "run", "--config", cfg},
      dir.file("daemon.log"));
}

Cli run_switchboard(const TempDir& dir, std::vector<std::string> args,
                    std::map<std::string, std::string> env, const std::string& cwd) {
  static std::atomic<int> runs{0};
  const std::string log = dir.file("cli-" + std::to_string(++runs) + ".log");
  args.insert(args.begin(), switchboard_binary());
  Process p(std::move(args), log, std::move(env), cwd);
  Cli out;
  out.status = p.wait();
  std::ifstream in(log);
  out.output.assign(std::istreambuf_iterator<char>(in), {});
  return out;
}

}  // namespace sb::test
