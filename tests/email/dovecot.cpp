#include "dovecot.hpp"

#include "tests/support/free_port.hpp"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

namespace {

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    throw std::runtime_error("popen failed: " + cmd);
  }
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) {
    out.append(buf.data(), n);
  }
  int rc = ::pclose(p);
  if (rc != 0) {
    throw std::runtime_error("command failed (" + std::to_string(rc) + "): " + cmd);
  }
  return out;
}

}  // namespace

bool port_open(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

std::string Dovecot::run_as_prefix() const {
  return ::geteuid() == 0 ? "setpriv --reuid=65534 --regid=65534 --clear-groups " : "";
}

Dovecot::Dovecot(std::string extra_conf) : extra_conf_(std::move(extra_conf)) {
  try {
    start();
  } catch (...) {
    stop();
    throw;
  }
}

void Dovecot::start() {
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "sb-dovecot-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  dir_ = tmpl;
  bool root = ::geteuid() == 0;
  uid_t uid = root ? 65534 : ::geteuid();
  gid_t gid = root ? 65534 : ::getegid();
  passwd* pw = ::getpwuid(uid);
  std::string account = pw != nullptr ? pw->pw_name : "nobody";
  group* gr = ::getgrgid(gid);
  std::string group_name = gr != nullptr ? gr->gr_name : "nogroup";
  fs::create_directories(dir_ + "/run");
  fs::create_directories(dir_ + "/state");
  fs::create_directories(dir_ + "/home/alice");
  imap_port_ = sb::test::free_port();
  imaps_port_ = sb::test::free_port();
  run("openssl req -x509 -newkey rsa:2048 -nodes -keyout " + dir_ + "/key.pem -out " + dir_ +
      "/cert.pem -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null");
  write_file(dir_ + "/passwd", std::string(user) + ":{PLAIN}" + password + ":" +
                                   std::to_string(uid) + ":" + std::to_string(gid) + "::" + dir_ +
                                   "/home/alice::\n");
  std::string conf =
      "base_dir = " + dir_ + "/run\nstate_dir = " + dir_ + "/state\nlog_path = " + dir_ +
      "/dovecot.log\nprotocols = imap\nlisten = 127.0.0.1\nssl = yes\nssl_cert = <" + dir_ +
      "/cert.pem\nssl_key = <" + dir_ +
      "/key.pem\ndisable_plaintext_auth = no\nauth_mechanisms = plain login\n"
      "default_internal_user = " +
      account + "\ndefault_internal_group = " + group_name + "\ndefault_login_user = " + account +
      "\nfirst_valid_uid = 1\nfirst_valid_gid = 1\nmail_location = maildir:~/Maildir\n"
      "passdb {\n  driver = passwd-file\n  args = " +
      dir_ +
      "/passwd\n}\n"
      "userdb {\n  driver = passwd-file\n  args = " +
      dir_ +
      "/passwd\n}\n"
      "service imap-login {\n  chroot =\n  inet_listener imap {\n    address = 127.0.0.1\n"
      "    port = " +
      std::to_string(imap_port_) +
      "\n  }\n  inet_listener imaps {\n    address = 127.0.0.1\n    port = " +
      std::to_string(imaps_port_) +
      "\n    ssl = yes\n  }\n}\n"
      "service anvil {\n  chroot =\n}\nservice stats {\n  chroot =\n}\n" +
      extra_conf_ + "\n";
  write_file(dir_ + "/dovecot.conf", conf);
  if (root) {
    run("chown -R 65534:65534 " + dir_);
  }
  launch();
  // Create the Maildir so SELECT INBOX works before the first delivery.
  doveadm("mailbox status -u alice messages INBOX");
}

Dovecot::~Dovecot() {
  stop();
}

void Dovecot::launch() {
  bool root = ::geteuid() == 0;
  pid_ = ::fork();
  if (pid_ == 0) {
    std::string cfg = dir_ + "/dovecot.conf";
    ::close_range(3, ~0U, 0);  // none of the test's sockets (see Process in tests/support)
    if (root) {
      ::execlp("setpriv", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "dovecot",
               "-F", "-c", cfg.c_str(), static_cast<char*>(nullptr));
    } else {
      ::execlp("dovecot", "dovecot", "-F", "-c", cfg.c_str(), static_cast<char*>(nullptr));
    }
    ::_exit(127);
  }
  // Bounded wait for both listeners (Dovecot has no readiness notification we can await).
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (!(port_open(imap_port_) && port_open(imaps_port_))) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("dovecot exited at start; see " + dir_ + "/dovecot.log");
    }
    if (std::chrono::steady_clock::now() > until) {
      throw std::runtime_error("dovecot did not listen within 15 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Dovecot::restart() {
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  launch();
}

namespace {
// Direct and indirect children of `root`, from /proc/<pid>/stat (field 4 is the parent pid).
std::vector<pid_t> descendants(pid_t root) {
  std::vector<std::pair<pid_t, pid_t>> all;  // (pid, ppid)
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::ifstream f(e.path() / "stat");
    std::string stat;
    std::getline(f, stat);
    auto close_paren = stat.rfind(')');
    if (close_paren == std::string::npos) {
      continue;
    }
    char state = 0;
    int ppid = 0;
    if (std::sscanf(stat.c_str() + close_paren + 1, " %c %d", &state, &ppid) == 2) {
      all.emplace_back(std::stoi(name), ppid);
    }
  }
  std::vector<pid_t> out{root};
  for (std::size_t i = 0; i < out.size(); ++i) {
    for (auto [pid, ppid] : all) {
      if (ppid == out[i]) {
        out.push_back(pid);
      }
    }
  }
  out.erase(out.begin());
  return out;
}
}  // namespace

void Dovecot::kill_and_restart(const std::function<void()>& while_down) {
  kill();
  if (while_down) {
    while_down();
  }
  launch();
}

void Dovecot::start_again() {
  launch();
}

void Dovecot::kill() {
  auto children = descendants(pid_);
  ::kill(pid_, SIGKILL);
  for (pid_t p : children) {
    ::kill(p, SIGKILL);
  }
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  // The children were reparented to init (or a subreaper); wait until they are really gone so
  // the listeners are free again.
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (pid_t p : children) {
    while (::kill(p, 0) == 0 && std::chrono::steady_clock::now() < until) {
      ::waitpid(p, &status, WNOHANG);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

void Dovecot::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    dir_.clear();
  }
}

std::string Dovecot::doveadm(const std::string& args) {
  return run(run_as_prefix() + "doveadm -c " + dir_ + "/dovecot.conf " + args);
}

void Dovecot::deliver(const std::string& raw, const std::string& mailbox) {
  std::string file = dir_ + "/incoming.eml";
  write_file(file, raw);
  if (::geteuid() == 0) {
    run("chown 65534:65534 " + file);
  }
  doveadm("save -u alice -m '" + mailbox + "' < " + file);
}

void Dovecot::append(const std::string& raw, const std::string& date, const std::string& mailbox) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(imap_port_);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw std::runtime_error("APPEND: cannot connect to Dovecot");
  }
  std::string buf;
  // Reads until a line starting with `start`; throws on a tagged NO/BAD or a timeout.
  auto until = [&](const std::string& start) {
    for (;;) {
      for (std::size_t eol; (eol = buf.find("\r\n")) != std::string::npos;) {
        std::string line = buf.substr(0, eol);
        buf.erase(0, eol + 2);
        if (line.rfind(start, 0) == 0) {
          if (line.find(" OK") == std::string::npos && start != "+") {
            throw std::runtime_error("APPEND: Dovecot said " + line);
          }
          return;
        }
      }
      char chunk[4096];
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) {
        throw std::runtime_error("APPEND: no answer from Dovecot waiting for " + start);
      }
      buf.append(chunk, static_cast<std::size_t>(n));
    }
  };
  auto send = [&](const std::string& text) {
    for (std::size_t sent = 0; sent < text.size();) {
      ssize_t n = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        throw std::runtime_error("APPEND: send failed");
      }
      sent += static_cast<std::size_t>(n);
    }
  };
  try {
    until("* OK");
    std::string quoted = "\"";
    for (char ch : std::string(password)) {
      quoted += (ch == '"' || ch == '\\') ? std::string{'\\', ch} : std::string{ch};
    }
    send(std::string("a LOGIN ") + user + " " + quoted + "\"\r\n");
    until("a ");
    send("b APPEND \"" + mailbox + "\" \"" + date + "\" {" + std::to_string(raw.size()) + "}\r\n");
    until("+");
    send(raw + "\r\n");
    until("b ");
    send("c LOGOUT\r\n");
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

void Dovecot::set_uidvalidity(std::uint32_t v, const std::string& mailbox) {
  doveadm("mailbox update -u alice --uid-validity " + std::to_string(v) + " '" + mailbox + "'");
}

void Dovecot::deliver_many(const std::vector<std::string>& raws) {
  namespace fs = std::filesystem;
  std::string maildir = dir_ + "/home/alice/Maildir";
  fs::create_directories(maildir + "/tmp");
  fs::create_directories(maildir + "/new");
  static int batch = 0;
  ++batch;
  for (std::size_t i = 0; i < raws.size(); ++i) {
    // Maildir: write in tmp/, then rename into new/ so Dovecot never sees a partial file.
    std::string name = std::to_string(1700000000 + batch) + ".M" + std::to_string(i) + "P" +
                       std::to_string(::getpid()) + ".sbtest";
    write_file(maildir + "/tmp/" + name, raws[i]);
    fs::rename(maildir + "/tmp/" + name, maildir + "/new/" + name);
  }
  if (::geteuid() == 0) {
    run("chown -R 65534:65534 " + maildir);
  }
}

void Dovecot::kick() {
  doveadm("kick alice");
}
