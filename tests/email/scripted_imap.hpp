#pragma once
// An IMAP server on a loopback port that plays what a real one is hard to make do: a greeting
// that is not IMAP, a SELECT without UIDVALIDITY, a UID FETCH answered OK that leaves out a
// message UID SEARCH listed. Blocking sockets on a thread of its own, one connection at a time
// (a client, or a poller reconnecting after each failed session). Every command line is kept.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace sb::test {

class ScriptedImap {
 public:
  // What the next UID FETCH leaves out: `n` counts the UID FETCH commands so far (1 for the
  // first), `asked` the UIDs it names that exist. UIDs put in `expunge` are gone once it is
  // answered (another client expunged them).
  using Omit = std::function<std::set<std::uint64_t>(int n, const std::vector<std::uint64_t>& asked,
                                                     std::set<std::uint64_t>& expunge)>;

  ScriptedImap() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 8);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~ScriptedImap() { stop(); }
  ScriptedImap(const ScriptedImap&) = delete;
  ScriptedImap& operator=(const ScriptedImap&) = delete;

  // Set before start().
  Omit omit;
  // Advertise IDLE, and refuse every IDLE with NO (a server whose IDLE is broken).
  bool idle_fails = false;

  // The first line(s), CRLF included; a greeting that is not "* OK" ends the connection after
  // it. Takes effect with the next connection.
  void set_greeting(std::string g) {
    std::lock_guard lock(mu_);
    greeting_ = std::move(g);
  }
  // Whether SELECT names UIDVALIDITY 7 (RFC 3501 requires it).
  void set_uidvalidity(bool on) {
    std::lock_guard lock(mu_);
    uidvalidity_ = on;
  }

  void add(std::uint64_t uid, std::string raw) {
    std::lock_guard lock(mu_);
    messages_[uid] = std::move(raw);
  }
  void expunge(std::uint64_t uid) {
    std::lock_guard lock(mu_);
    messages_.erase(uid);
  }
  void start() {
    thread_ = std::thread([this] { serve(); });
  }
  void stop() {
    if (stopped_.exchange(true)) {
      return;
    }
    ::shutdown(fd_, SHUT_RDWR);
    {
      std::lock_guard lock(mu_);
      if (client_ >= 0) {
        ::shutdown(client_, SHUT_RDWR);
      }
    }
    if (thread_.joinable()) {
      thread_.join();
    }
    ::close(fd_);
  }
  // The command lines received so far, tags stripped.
  std::vector<std::string> commands() {
    std::lock_guard lock(mu_);
    return commands_;
  }
  int count(const std::string& prefix) {
    int n = 0;
    for (const auto& c : commands()) {
      n += c.rfind(prefix, 0) == 0 ? 1 : 0;
    }
    return n;
  }

  std::uint16_t port = 0;
  std::atomic<int> connections{0};

 private:
  void serve() {
    while (!stopped_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) {
        return;
      }
      {
        std::lock_guard lock(mu_);
        client_ = c;
      }
      ++connections;
      session(c);
      {
        std::lock_guard lock(mu_);
        client_ = -1;
      }
      ::close(c);
    }
  }

  static bool say(int c, const std::string& s) {
    return ::send(c, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size());
  }

  // "1:3,7" (with "*" as the highest UID) -> the UIDs of `messages_` it names.
  std::vector<std::uint64_t> named(const std::string& set) {
    std::vector<std::uint64_t> out;
    std::uint64_t top = messages_.empty() ? 0 : messages_.rbegin()->first;
    auto number = [top](const std::string& s) { return s == "*" ? top : std::stoull(s); };
    std::size_t at = 0;
    while (at <= set.size()) {
      std::size_t comma = set.find(',', at);
      std::string part =
          set.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
      std::size_t colon = part.find(':');
      std::uint64_t lo = number(part.substr(0, colon));
      std::uint64_t hi = colon == std::string::npos ? lo : number(part.substr(colon + 1));
      if (lo > hi) {
        std::swap(lo, hi);
      }
      for (const auto& [uid, raw] : messages_) {
        if (uid >= lo && uid <= hi) {
          out.push_back(uid);
        }
      }
      if (comma == std::string::npos) {
        break;
      }
      at = comma + 1;
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

  std::string answer(const std::string& tag, const std::string& cmd) {
    std::lock_guard lock(mu_);
    commands_.push_back(cmd);
    std::string ok = tag + " OK done\r\n";
    const std::string caps =
        idle_fails ? "IMAP4rev1 SASL-IR AUTH=PLAIN IDLE" : "IMAP4rev1 SASL-IR AUTH=PLAIN";
    if (cmd.rfind("CAPABILITY", 0) == 0) {
      return "* CAPABILITY " + caps + "\r\n" + ok;
    }
    if (cmd.rfind("AUTHENTICATE", 0) == 0 || cmd.rfind("LOGIN", 0) == 0) {
      return tag + " OK [CAPABILITY " + caps + "] Logged in\r\n";
    }
    if (cmd == "IDLE" && idle_fails) {
      return tag + " NO [UNAVAILABLE] IDLE is broken here\r\n";
    }
    if (cmd.rfind("SELECT", 0) == 0 || cmd.rfind("EXAMINE", 0) == 0) {
      std::uint64_t next = messages_.empty() ? 1 : messages_.rbegin()->first + 1;
      return "* " + std::to_string(messages_.size()) + " EXISTS\r\n" +
             (uidvalidity_ ? "* OK [UIDVALIDITY 7] UIDs valid\r\n" : "") + "* OK [UIDNEXT " +
             std::to_string(next) + "] Predicted next UID\r\n" + tag + " OK [READ-WRITE] done\r\n";
    }
    if (cmd.rfind("UID SEARCH UID ", 0) == 0) {
      std::string set = cmd.substr(15, cmd.find(' ', 15) - 15);
      std::string out = "* SEARCH";
      for (auto uid : named(set)) {
        out += " " + std::to_string(uid);
      }
      return out + "\r\n" + ok;
    }
    if (cmd.rfind("UID FETCH ", 0) == 0) {
      std::string set = cmd.substr(10, cmd.find(' ', 10) - 10);
      auto asked = named(set);
      std::set<std::uint64_t> left_out;
      std::set<std::uint64_t> expunged;
      if (omit) {
        left_out = omit(++fetches_, asked, expunged);
      }
      std::string out;
      for (auto uid : asked) {
        if (left_out.count(uid) != 0) {
          continue;
        }
        const std::string& raw = messages_[uid];
        std::uint64_t seq = 1 + std::distance(messages_.begin(), messages_.find(uid));
        out += "* " + std::to_string(seq) + " FETCH (UID " + std::to_string(uid) + " RFC822.SIZE " +
               std::to_string(raw.size()) + " BODY[]<0> {" + std::to_string(raw.size()) + "}\r\n" +
               raw + ")\r\n";
      }
      for (auto uid : expunged) {
        messages_.erase(uid);
      }
      return out + ok;
    }
    if (cmd.rfind("LOGOUT", 0) == 0) {
      return "* BYE logging out\r\n" + ok;
    }
    if (cmd.rfind("UID ", 0) == 0 || cmd.rfind("NOOP", 0) == 0) {
      return ok;
    }
    return tag + " BAD unknown command\r\n";
  }

  void session(int c) {
    std::string greeting;
    {
      std::lock_guard lock(mu_);
      greeting = greeting_;
    }
    if (!say(c, greeting) || greeting.rfind("* OK", 0) != 0) {
      return;
    }
    std::string in;
    char buf[4096];
    while (true) {
      std::size_t eol;
      while ((eol = in.find("\r\n")) != std::string::npos) {
        std::string line = in.substr(0, eol);
        in.erase(0, eol + 2);
        std::string tag = line.substr(0, line.find(' '));
        std::string cmd = line.size() > tag.size() ? line.substr(tag.size() + 1) : "";
        if (!say(c, answer(tag, cmd)) || cmd.rfind("LOGOUT", 0) == 0) {
          return;
        }
      }
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) {
        return;
      }
      in.append(buf, static_cast<std::size_t>(n));
    }
  }

  int fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  std::mutex mu_;  // guards what follows
  int client_ = -1;
  std::string greeting_ = "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n";
  bool uidvalidity_ = true;
  std::map<std::uint64_t, std::string> messages_;
  std::vector<std::string> commands_;
  int fetches_ = 0;
};

}  // namespace sb::test
