// The real binary as a process: kill -9 under load loses nothing that was answered 2xx;
// SIGTERM exits 0 after flushing; check-config reports a broken regex with its line.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/json.hpp>
#include <ctime>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "channels/voice/signatures.hpp"
#include "storage/sqlite.hpp"
#include "tests/support/harness.hpp"

using namespace sb::test;
namespace json = boost::json;

namespace {

std::string write_config(const TempDir& dir, std::uint16_t port, std::uint16_t redis_port,
                         const std::string& extra = "") {
  std::string path = dir.file("switchboard.toml");
  std::ofstream(path) << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n"
                      << "[storage]\npath = \"" << dir.file("sb.db") << "\"\n"
                      << "[redis]\nurl = \"redis://127.0.0.1:" << redis_port << "/0\"\n"
                      << "[api]\ntokens = [\"t\"]\n"
                      << extra;
  return path;
}

// A connected loopback socket, or -1.
int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// GET /healthz on a new connection, answered 200 within `wait` (HttpClient would wait 60 s).
bool healthz_within(std::uint16_t port, std::chrono::milliseconds wait) {
  int fd = connect_loopback(port);
  std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  char buf[64] = {};
  pollfd p{fd, POLLIN, 0};
  bool ok = fd >= 0 &&
            ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()) &&
            ::poll(&p, 1, static_cast<int>(wait.count())) == 1 &&
            ::recv(fd, buf, sizeof buf - 1, 0) > 12 && std::string_view(buf).substr(9, 3) == "200";
  ::close(fd);
  return ok;
}

}  // namespace

TEST_CASE("kill -9 under load: every interaction answered 2xx is stored and queued exactly once") {
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  auto cfg = write_config(dir, port, redis.port());
  auto start = [&] { return daemon_process(dir, cfg); };
  auto daemon = start();
  REQUIRE(eventually([&] { return healthy(port); }));

  std::mutex mu;
  std::set<std::string> acked;
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      HttpClient c(port);
      for (int i = 0; !stop; ++i) {
        std::string body = R"({"source":"load","external_id":"k-)" + std::to_string(t) + "-" +
                           std::to_string(i) + R"(","from":{"email":"u)" + std::to_string(i % 50) +
                           R"(@example.com"},"text":"x"})";
        try {
          auto r = c.post_json("/v1/interactions", body, "t");
          if (r.status == 202) {
            std::lock_guard lock(mu);
            acked.insert(std::string(json::parse(r.body).at("id").as_string()));
          }
          ++sent;
        } catch (...) {
          return;  // the daemon died under us: expected
        }
      }
    });
  }
  REQUIRE(eventually([&] { return sent.load() > 2000; }, std::chrono::seconds(30)));
  daemon->kill(SIGKILL);
  daemon->wait();
  stop = true;
  for (auto& c : clients) {
    c.join();
  }
  REQUIRE(!acked.empty());

  daemon = start();
  REQUIRE(eventually([&] { return healthy(port); }));
  REQUIRE(eventually([&] { return redis.xlen("sb:q:general:normal") >= (long long)acked.size(); },
                     std::chrono::seconds(30)));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  std::map<std::string, int> in_stream;
  for (auto& e : redis.xrange("sb:q:general:normal")) {
    ++in_stream[e["interaction_id"]];
  }
  sb::storage::Db db(dir.file("sb.db"), true);
  auto st = db.prepare("SELECT count(*) FROM interactions WHERE id = ?1");
  int missing_db = 0, missing_stream = 0, twice = 0;
  for (const auto& id : acked) {
    st.bind(1, id);
    st.step();
    missing_db += st.int64(0) == 1 ? 0 : 1;
    st.reset();
    missing_stream += in_stream.count(id) ? 0 : 1;
  }
  for (auto& [id, n] : in_stream) {
    twice += n > 1 ? 1 : 0;
  }
  CHECK(missing_db == 0);
  CHECK(missing_stream == 0);
  CHECK(twice == 0);
  // Whatever was committed but not answered is also queued once: stream == database.
  auto all = db.prepare("SELECT count(*) FROM interactions");
  all.step();
  CHECK((long long)in_stream.size() == all.int64(0));

  daemon->kill(SIGTERM);
  CHECK(daemon->wait() == 0);
}

TEST_CASE("check-config names a broken regex with its line, the binary refuses bad configs") {
  TempDir dir;
  auto cfg = write_config(dir, free_port(), 6379,
                          "[[routing.rules]]\nname = \"bad\"\nqueue = \"q\"\n"
                          "[routing.rules.when]\ntext_matches = \"(unclosed\"\n");
  Process p({switchboard_binary(), "check-config", "--config", cfg}, dir.file("out.log"));
  CHECK(p.wait() == 1);
  std::ifstream in(dir.file("out.log"));
  std::string out((std::istreambuf_iterator<char>(in)), {});
  CAPTURE(out);
  CHECK(out.find(cfg + ":13:") != std::string::npos);  // the text_matches line
  CHECK(out.find("text_matches") != std::string::npos);

  Process run({switchboard_binary(), "run", "--config", cfg}, dir.file("run.log"));
  CHECK(run.wait() == 1);
}

TEST_CASE("run: SIGHUP after the secret_file is rewritten applies the new PBX secret at once") {
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  const std::string secret_file = dir.file("pbx-secret");
  std::ofstream(secret_file) << "first-pbx-secret\n";
  auto cfg = write_config(
      dir, port, redis.port(),
      "[[channels.call_webhook]]\nname = \"pbx\"\nsecret_file = \"" + secret_file + "\"\n");
  auto daemon = daemon_process(dir, cfg);
  REQUIRE(eventually([&] { return healthy(port); }));
  int calls = 0;
  auto post = [&](const std::string& secret) {
    std::string body = R"({"event":"ringing","call_id":"c-)" + std::to_string(++calls) +
                       R"(","from":"+14155550100","to":"+14155550199","direction":"inbound",)"
                       R"("occurred_at":"2026-01-02T03:04:05Z"})";
    auto t = std::time(nullptr);
    return HttpClient(port)
        .request("POST", "/webhooks/calls/pbx", body,
                 {{"Content-Type", "application/json"},
                  {"X-Switchboard-Signature", sb::voice::pbx_signature_header(secret, t, body)}})
        .status;
  };
  CHECK(post("first-pbx-secret") == 200);
  std::ofstream(secret_file) << "second-pbx-secret\n";
  daemon->kill(SIGHUP);
  CHECK(eventually([&] { return post("second-pbx-secret") == 200; }));
  CHECK(post("first-pbx-secret") == 403);
  daemon->kill(SIGTERM);
  CHECK(daemon->wait() == 0);
  std::ifstream in(dir.file("daemon.log"));
  std::string log((std::istreambuf_iterator<char>(in)), {});
  CAPTURE(log);
  CHECK(log.find("reload: channels.call_webhook pbx: secret applied from its next use") !=
        std::string::npos);
  CHECK(log.find("not applied until a restart") == std::string::npos);
  CHECK(log.find("first-pbx-secret") == std::string::npos);
  CHECK(log.find("second-pbx-secret") == std::string::npos);
}

TEST_CASE("run logs once at start-up that an X account without user context cannot reply") {
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  // Nothing listens at the X base_url: the poller's failures are beside the point here.
  auto cfg = write_config(dir, port, redis.port(),
                          "[[channels.x]]\nname = \"brand\"\nbase_url = \"http://127.0.0.1:" +
                              std::to_string(free_port()) +
                              "\"\nbearer_token = \"b\"\nuser_id = \"1\"\n"
                              "poll_interval = \"1h\"\n");
  auto daemon = daemon_process(dir, cfg);
  REQUIRE(eventually([&] { return healthy(port); }));
  daemon->kill(SIGTERM);
  CHECK(daemon->wait() == 0);
  std::ifstream in(dir.file("daemon.log"));
  std::string log((std::istreambuf_iterator<char>(in)), {});
  CAPTURE(log);
  const std::string line = "[config] " + cfg +
                           ":9: channels.x account \"brand\" cannot reply: X takes POST "
                           "/2/tweets only in user context";
  const std::size_t at = log.find(line);
  CHECK(at != std::string::npos);
  CHECK(log.find(line, at + 1) == std::string::npos);
}

TEST_CASE("ingest server: connections left idle up to the fd limit do not lock new clients out") {
  // Every connection costs the daemon a file descriptor until its 60 s idle deadline. With no cap,
  // a client holding open as many connections as RLIMIT_NOFILE allows made every accept fail with
  // EMFILE: /healthz, ingest and agents unreachable for as long as it kept them open.
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  auto cfg = write_config(dir, port, redis.port());
  Process daemon({"prlimit", "--nofile=256:256", switchboard_binary(), "run", "--config", cfg},
                 dir.file("daemon.log"));
  REQUIRE(eventually([&] { return healthy(port); }));
  std::vector<int> held;
  for (int i = 0; i < 400; ++i) {
    int fd = connect_loopback(port);
    REQUIRE(fd >= 0);
    held.push_back(fd);
  }
  CHECK(eventually([&] { return healthz_within(port, std::chrono::seconds(2)); },
                   std::chrono::seconds(10)));
  for (int fd : held) {
    ::close(fd);
  }
  daemon.kill(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE(
    "ingest server: clients that pipeline requests and never read the answers do not lock "
    "others out") {
  // A session blocked writing an answer its client does not read was never closed at the cap
  // (only sessions waiting for a request were), and a new one was admitted anyway: connections
  // grew to EMFILE, where /healthz, and the daemon's own Redis and SQLite files, fail.
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  auto cfg = write_config(dir, port, redis.port());
  Process daemon({"prlimit", "--nofile=256:256", switchboard_binary(), "run", "--config", cfg},
                 dir.file("daemon.log"));
  REQUIRE(eventually([&] { return healthy(port); }));
  // Each request is answered 404 naming its 16 KiB path. With a small receive buffer that is
  // never read, and small segments (the kernel sizes the daemon's send buffer from them: 3 MiB
  // on loopback otherwise), the daemon's writes block after about 100 KiB of answers.
  const std::string req = "GET /" + std::string(16 * 1024, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n";
  std::vector<int> held;
  for (int i = 0; i < 400; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096, segment = 1000;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    ::setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &segment, sizeof segment);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    held.push_back(fd);
    for (int r = 0; r < 32; ++r) {
      if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL | MSG_DONTWAIT) <= 0) {
        break;
      }
    }
  }
  // The daemon answers the pipelined requests until each connection blocks, accepting the next
  // ones (closing the longest blocked) as it goes: 0.1 s in release, 40 s under ASan on a loaded
  // machine, where tries of 2 s each for 10 s failed (and each new try queued behind the rest
  // again). So one /healthz waits behind them as long as it takes, and what tells a daemon
  // that locks others out from a slow one is how: it ran out of descriptors (or answered 503),
  // where a slow one did neither.
  CHECK(healthz_within(port, std::chrono::seconds(120)));
  for (int fd : held) {
    ::close(fd);
  }
  daemon.kill(SIGTERM);
  CHECK(daemon.wait() == 0);
  std::ifstream in(dir.file("daemon.log"));
  std::string log((std::istreambuf_iterator<char>(in)), {});
  CAPTURE(log);
  CHECK(log.find("accept failed") == std::string::npos);
}

TEST_CASE("ingest server: at the connection cap with every connection busy, new ones get 503") {
  // Long-polling claims are requests in progress: none may be closed to make room. A new
  // connection admitted anyway took the daemon to EMFILE, where nothing answered at all.
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  // One agent's 300 claims: its waiting claims are capped (8 by default, 429 past that), which is
  // beside the point here.
  auto cfg = write_config(dir, port, redis.port(),
                          "[routing]\nmax_waiting_claims_per_agent = 1000\n"
                          "[[agents]]\nid = \"alice\"\ntoken = \"alice-token\"\n"
                          "queues = [\"general\"]\n");
  Process daemon({"prlimit", "--nofile=256:256", switchboard_binary(), "run", "--config", cfg},
                 dir.file("daemon.log"));
  REQUIRE(eventually([&] { return healthy(port); }));
  const std::string body = R"({"queue":"general","wait_ms":30000})";
  const std::string claim =
      "POST /v1/agent/claim HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice-token\r\n"
      "Content-Type: application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  std::vector<int> held;
  for (int i = 0; i < 300; ++i) {
    int fd = connect_loopback(port);
    REQUIRE(fd >= 0);
    held.push_back(fd);
    REQUIRE(::send(fd, claim.data(), claim.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(claim.size()));
  }
  // Answered at once, 503 and closed.
  std::string res;
  CHECK(eventually(
      [&] {
        int fd = connect_loopback(port);
        std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        char buf[1024] = {};
        pollfd p{fd, POLLIN, 0};
        ssize_t n = 0;
        if (fd >= 0 && ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) > 0 &&
            ::poll(&p, 1, 2000) == 1) {
          n = ::recv(fd, buf, sizeof buf - 1, 0);
        }
        ::close(fd);
        res.assign(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
        return !res.empty();
      },
      std::chrono::seconds(10)));
  CAPTURE(res);
  CHECK(res.starts_with("HTTP/1.1 503 "));
  CHECK(res.find("Connection: close") != std::string::npos);
  CHECK(res.find("too_many_connections") != std::string::npos);
  for (int fd : held) {
    ::close(fd);
  }
  // The claims' connections closed: new clients are served again.
  CHECK(eventually([&] { return healthz_within(port, std::chrono::seconds(2)); },
                   std::chrono::seconds(10)));
  daemon.kill(SIGTERM);
  CHECK(daemon.wait() == 0);
}
