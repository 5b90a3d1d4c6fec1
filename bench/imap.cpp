// bench/imap: initial sync of a 10,000-message mailbox from a local Dovecot into Redis (the
// whole daemon in-process: IMAP over implicit TLS -> parse -> SQLite -> Redis streams) against
// `mbsync` (Debian isync) copying the same mailbox over the same TLS listener to a local
// Maildir, in the same run; then IDLE delivery latency (message saved -> in its Redis stream),
// median of 20.
//
//   build/bench/bench_imap [--messages N] [--idle N]
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "bench/bench_util.hpp"
#include "core/log.hpp"
#include "daemon/app.hpp"
#include "storage/sqlite.hpp"
#include "tests/email/dovecot.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using clk = std::chrono::steady_clock;

namespace {

std::string message(int i) {
  std::string body;
  for (int line = 0; line < 40; ++line) {  // ~2.5 KB, a typical support mail
    body += "Line " + std::to_string(line) + " of message " + std::to_string(i) +
            ": the parcel has not arrived and tracking shows no update.\r\n";
  }
  return "From: Customer " + std::to_string(i % 1000) + " <customer" + std::to_string(i % 1000) +
         "@example.com>\r\nTo: support@example.com\r\nSubject: Order " + std::to_string(i) +
         " \xe2\x80\x94 wo ist es?\r\nMessage-ID: <bench-" + std::to_string(i) +
         "@example.com>\r\nDate: Fri, 02 Jan 2026 03:04:05 +0000\r\nMIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=utf-8\r\n\r\n" +
         body;
}

double seconds_since(clk::time_point t) {
  return std::chrono::duration<double>(clk::now() - t).count();
}

}  // namespace

int main(int argc, char** argv) {
  int total = 10000, idle_rounds = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--messages")) {
      total = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--idle")) {
      idle_rounds = std::atoi(argv[i + 1]);
    }
  }
  test::TempDir dir;
  test::RedisServer redis;
  Dovecot dovecot;
  std::vector<std::string> raws;
  for (int i = 0; i < total; ++i) {
    raws.push_back(message(i));
  }
  dovecot.deliver_many(raws);
  dovecot.doveadm("mailbox status -u alice messages INBOX");  // Dovecot indexes new/ once, untimed

  // mbsync: the same mailbox, the same TLS listener, into a fresh Maildir.
  std::ofstream(dir.file("pass")) << Dovecot::password;
  // FSync no: mbsync's default fsyncs every message, which alone made it 10x slower here; the
  // daemon fsyncs once per batch commit, so the fair comparison leaves fsync out of mbsync.
  std::ofstream(dir.file("mbsyncrc"))
      << "FSync no\n\nIMAPAccount bench\nHost localhost\nPort " << dovecot.imaps_port()
      << "\nUser alice\nPassCmd \"cat " << dir.file("pass") << "\"\nSSLType IMAPS\n"
      << "CertificateFile " << dovecot.ca_file() << "\n\nIMAPStore remote\nAccount bench\n\n"
      << "MaildirStore local\nPath " << dir.file("maildir/") << "\nInbox "
      << dir.file("maildir/INBOX")
      << "\n\nChannel bench\nFar :remote:INBOX\nNear :local:INBOX\nSync Pull\nCreate Near\n"
      << "SyncState *\n";
  std::filesystem::create_directories(dir.file("maildir"));
  auto t_mbsync = clk::now();
  std::string cmd =
      "mbsync -q -c " + dir.file("mbsyncrc") + " bench > " + dir.file("mbsync.log") + " 2>&1";
  int rc = std::system(cmd.c_str());
  double mbsync_s = seconds_since(t_mbsync);
  if (rc != 0) {
    std::cerr << "mbsync failed:\n" << std::ifstream(dir.file("mbsync.log")).rdbuf() << "\n";
    return 1;
  }

  auto cfg = test::test_config(dir, redis.port());
  config::Imap imap;
  imap.name = "support";
  imap.host = "localhost";
  imap.port = dovecot.imaps_port();
  imap.tls = "implicit";
  imap.ca_file = dovecot.ca_file();
  imap.username = Dovecot::user;
  imap.password = Dovecot::password;
  cfg.channels.imap.push_back(imap);
  set_log_level("warn");
  App app(cfg);
  auto t_sync = clk::now();
  app.start();
  double stored_s = 0;  // all committed to SQLite (the relay to Redis follows)
  storage::Db db(dir.file("switchboard.db"), true);
  if (!test::eventually(
          [&] {
            if (stored_s == 0) {
              auto st = db.prepare("SELECT count(*) FROM interactions");
              st.step();
              if (st.int64(0) >= total) {
                stored_s = seconds_since(t_sync);
              }
            }
            return redis.xlen("sb:q:general:normal") >= total;
          },
          std::chrono::minutes(10))) {
    std::cerr << "the daemon did not sync the mailbox within 10 minutes\n";
    return 1;
  }
  double sync_s = seconds_since(t_sync);

  std::vector<double> from_start, from_saved;
  for (int i = 0; i < idle_rounds; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // back in IDLE
    long long want = total + i + 1;
    auto t0 = clk::now();
    dovecot.deliver(message(total + i));
    auto t1 = clk::now();
    if (!test::eventually([&] { return redis.xlen("sb:q:general:normal") >= want; },
                          std::chrono::seconds(30))) {
      std::cerr << "message " << i << " did not arrive within 30 s\n";
      return 1;
    }
    from_start.push_back(seconds_since(t0) * 1000);
    from_saved.push_back(seconds_since(t1) * 1000);
  }
  app.stop();

  bench::Table t;
  t.add("messages", std::to_string(total));
  t.add("switchboard: IMAP -> SQLite -> Redis",
        bench::fmt("%.2f s", sync_s) + bench::fmt(" (%.0f msg/s)", total / sync_s));
  t.add("switchboard: IMAP -> SQLite (committed)", bench::fmt("%.2f s", stored_s));
  t.add("mbsync: IMAP -> Maildir (FSync no)",
        bench::fmt("%.2f s", mbsync_s) + bench::fmt(" (%.0f msg/s)", total / mbsync_s));
  t.add("switchboard / mbsync time", bench::fmt("%.2f", sync_s / mbsync_s));
  t.add("IDLE latency, saved -> Redis, median",
        bench::fmt("%.0f ms", bench::percentile(from_saved, 0.5)));
  t.add("IDLE latency, saved -> Redis, max",
        bench::fmt("%.0f ms", bench::percentile(from_saved, 1.0)));
  t.add("IDLE latency incl. doveadm save, median",
        bench::fmt("%.0f ms", bench::percentile(from_start, 0.5)));
  t.add("rounds", std::to_string(idle_rounds));
  t.print("bench_imap: initial sync and IDLE delivery (target: <= mbsync, median <= 1000 ms)");
  return 0;
}
