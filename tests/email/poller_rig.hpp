#pragma once
// The email poller without the daemon: the real database and store, a Poller of one account
// "support" on an io thread of its own, and the "email" log captured. What a test adds is the
// IMAP server (a Dovecot, a ScriptedImap) and the Pipeline the Poller stores through (a
// StoreForwarder that watches or disturbs the store): a rig derives from PollerRig, holds them,
// points `account` at the server, and calls shutdown() in its own destructor - its members go
// before this base does, and the Poller must not outlive them.
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "channels/email/poller.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/email/email_daemon.hpp"
#include "tests/support/log_capture.hpp"

namespace sb::test {

class PollerRig {
 public:
  PollerRig() {
    if (const char* lvl = std::getenv("SB_TEST_LOG")) {  // e.g. SB_TEST_LOG=debug
      set_log_level(lvl);
    }
    account.name = "support";
    account.tls = "none";
    account.host = "127.0.0.1";
    options.min_backoff = std::chrono::milliseconds(50);
    options.max_backoff = std::chrono::milliseconds(500);
    writer.start();
    io_thread = std::thread([this] { io.run(); });
  }
  ~PollerRig() { shutdown(); }
  PollerRig(const PollerRig&) = delete;
  PollerRig& operator=(const PollerRig&) = delete;

  // A new Poller of `account` with `options`, storing through `pipeline`, started.
  void start(Pipeline& pipeline) {
    stop();
    poller = std::make_unique<email::Poller>(io, pipeline, metrics,
                                             std::vector<config::Imap>{account}, options);
    poller->start();
  }
  // Stops and destroys the Poller, leaving the database as a daemon that went away leaves it;
  // start() makes a new one.
  void stop() {
    if (poller) {
      poller->stop();
      poller.reset();
    }
  }
  // The Poller, then the io thread, then the writer. Once; the destructor does it too.
  void shutdown() {
    if (shut_down_) {
      return;
    }
    shut_down_ = true;
    stop();
    work.reset();
    io.stop();
    io_thread.join();
    writer.stop();
  }

  std::string logged() { return log.text(); }
  // The lines of the log that contain `needle`.
  std::vector<std::string> lines_with(const std::string& needle) { return log.lines_with(needle); }
  long long rows(const std::string& sql) { return count_rows(dir.file("switchboard.db"), sql); }
  // The committed cursor of the account's first mailbox ("" while there is none).
  std::string cursor() { return store.cursor("support", account.mailboxes[0]).value_or(""); }
  // The account's series of the metric `name` (0 while it has none).
  long long metric(const std::string& name) {
    const std::string key = name + R"({channel="email",account="support"} )";
    auto text = metrics.render();
    auto at = text.find(key);
    return at == std::string::npos ? 0 : std::stoll(text.substr(at + key.size()));
  }
  long long errors() { return metric("switchboard_channel_errors_total"); }

  TempDir dir;
  storage::Writer writer{dir.file("switchboard.db")};
  storage::Store store{writer, Rules::compile(config::defaults().routing)};
  Metrics metrics;
  config::Imap account;          // name, tls none and host 127.0.0.1 set; the rest the rig's
  email::PollerOptions options;  // back-off 50 ms doubling up to 500 ms
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  std::thread io_thread;
  std::unique_ptr<email::Poller> poller;
  LogCapture log{"email"};

 private:
  bool shut_down_ = false;
};

// A PollerRig on a real Dovecot (dovecot.hpp) as its user, `after` applied to `mailbox`.
class DovecotPollerRig : public PollerRig {
 public:
  explicit DovecotPollerRig(const std::string& after = "keep", const std::string& mailbox = "INBOX",
                            const std::string& dovecot_conf = "")
      : dovecot(dovecot_conf) {
    account.port = dovecot.imap_port();
    account.username = Dovecot::user;
    account.password = Dovecot::password;
    account.after = after;
    account.mailboxes = {mailbox};
  }
  ~DovecotPollerRig() { shutdown(); }

  // How many messages `mailbox` holds (-1 when doveadm does not say).
  long long messages_in(const std::string& mailbox) {
    auto out = dovecot.doveadm("mailbox status -u alice messages '" + mailbox + "'");
    auto at = out.find("messages=");
    return at == std::string::npos ? -1 : std::stoll(out.substr(at + 9));
  }

  Dovecot dovecot;
};

}  // namespace sb::test
