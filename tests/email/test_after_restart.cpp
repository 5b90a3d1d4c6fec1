// `after = seen | move:Folder` survives the daemon: a batch commits, then the daemon goes away
// before `after` reaches the server (here: Dovecot is killed between the commit and `after`,
// and the whole App destroyed while it is down, as a kill -9 of the daemon would leave it). The
// committed cursor says `after` is still due; the next daemon on the same database applies it,
// unless the mailbox's UIDVALIDITY changed meanwhile.
#include <doctest/doctest.h>

#include <future>
#include <thread>

#include "tests/email/email_daemon.hpp"

using namespace sb;
using namespace sb::test;
using namespace std::chrono_literals;

namespace {

long long messages_in(EmailDaemon& d, const std::string& mailbox) {
  auto out = d.dovecot.doveadm("mailbox status -u alice messages '" + mailbox + "'");
  auto at = out.find("messages=");
  return at == std::string::npos ? -1 : std::stoll(out.substr(at + 9));
}

long long seen_in(EmailDaemon& d, const std::string& mailbox) {
  auto out = d.dovecot.doveadm("search -u alice mailbox '" + mailbox + "' SEEN");
  return std::count(out.begin(), out.end(), '\n');
}

// Delivers `count` messages to `mailbox` and starts a daemon on a new database whose writer is
// held from the start, so the first sync's one batch waits at the writer; then kills Dovecot,
// lets the batch commit, waits until `after` has failed on the dead connection, and destroys the
// App while Dovecot is still down. Dovecot comes back on the same Maildir; the daemon is not
// started again.
void commit_then_lose_the_daemon(EmailDaemon& d, const std::string& mailbox, int count) {
  for (int i = 0; i < count; ++i) {
    d.dovecot.deliver(test_email(i, i % 3), mailbox);
  }
  d.cfg.channels.imap[0].mailboxes = {mailbox};
  d.app = std::make_unique<App>(d.cfg);
  std::promise<void> open;
  std::shared_future<void> gate = open.get_future().share();
  d.app->writer().submit({[gate](storage::Db&) { gate.wait(); }, {}});  // runs first
  d.app->start();
  // A new database: no outbox for the relay to clear, the call sweep waits a minute. The one
  // job behind the gate is the poller's batch (fetched whole: fewer messages than a batch),
  // and the session now waits for its commit without touching the connection.
  REQUIRE(eventually([&] { return d.app->writer().backlog() >= 1; }, 30s));
  d.dovecot.kill_and_restart([&] {
    open.set_value();
    REQUIRE(eventually([&] { return d.rows("SELECT count(*) FROM interactions") == count; }, 30s));
    // `after` failed on the dead connection (counted), or the session ended: either way the
    // error is counted only after the commit above.
    REQUIRE(eventually(
        [&] {
          return d.metrics().find(
                     R"(switchboard_channel_errors_total{channel="email",account="support"})") !=
                 std::string::npos;
        },
        30s));
    d.stop();  // the App goes away; nothing of it is left but the database
  });
}

}  // namespace

TEST_CASE(
    "after = move: a batch committed just before the daemon went away is moved by the next "
    "start, each message stored once") {
  EmailDaemon d("none", "move:Processed");
  d.dovecot.doveadm("mailbox create -u alice Processed");
  commit_then_lose_the_daemon(d, "INBOX", 5);
  REQUIRE(messages_in(d, "INBOX") == 5);  // `after` never reached the server
  CHECK(d.rows("SELECT count(*) FROM cursors WHERE value LIKE '%:5:0'") == 1);  // due: 1..5

  d.start();
  CHECK(eventually([&] { return messages_in(d, "Processed") == 5; }, 30s));
  CHECK(messages_in(d, "INBOX") == 0);
  // Once applied, the cursor says so: a later restart does not apply it again.
  CHECK(eventually(
      [&] { return d.rows("SELECT count(*) FROM cursors WHERE value NOT LIKE '%:%:%'") == 1; },
      10s));
  d.dovecot.deliver(test_email(5, 1));
  REQUIRE(eventually([&] { return messages_in(d, "Processed") == 6; }, 30s));
  CHECK(d.rows("SELECT count(*) FROM interactions") == 6);
  REQUIRE(eventually([&] { return d.queued() >= 6; }, 10s));
  CHECK(d.queued() == 6);
  CHECK(d.distinct_queued() == 6);
}

TEST_CASE("after = seen: a batch committed just before the daemon went away is flagged \\Seen by "
          "the next start") {
  EmailDaemon d("none", "seen");
  commit_then_lose_the_daemon(d, "INBOX", 3);
  REQUIRE(seen_in(d, "INBOX") == 0);
  d.start();
  CHECK(eventually([&] { return seen_in(d, "INBOX") == 3; }, 30s));
  CHECK(eventually(
      [&] { return d.rows("SELECT count(*) FROM cursors WHERE value NOT LIKE '%:%:%'") == 1; },
      10s));
  CHECK(d.rows("SELECT count(*) FROM interactions") == 3);
  REQUIRE(eventually([&] { return d.queued() >= 3; }, 10s));
  CHECK(d.distinct_queued() == 3);
}

TEST_CASE(
    "after = move: UIDVALIDITY changed while the daemon was away - the `after` still due is "
    "dropped, the UIDs' new messages are stored before they move, nothing twice") {
  EmailDaemon d("none", "move:Processed");
  d.dovecot.doveadm("mailbox create -u alice Processed");
  d.dovecot.doveadm("mailbox create -u alice Support");
  commit_then_lose_the_daemon(d, "Support", 5);
  REQUIRE(messages_in(d, "Support") == 5);
  // The mailbox is made anew: UIDs 1..5, the ones `after` is due for, now name five other
  // messages, which were never stored. Moving them by the old UIDs would lose them.
  d.dovecot.doveadm("mailbox delete -u alice Support");
  d.dovecot.doveadm("mailbox create -u alice Support");
  d.dovecot.set_uidvalidity(777, "Support");
  for (int i = 10; i < 15; ++i) {
    d.dovecot.deliver(test_email(i, 2), "Support");
  }
  REQUIRE(messages_in(d, "Support") == 5);

  d.start();
  CHECK(eventually([&] { return d.rows("SELECT count(*) FROM interactions") == 10; }, 30s));
  CHECK(eventually([&] { return messages_in(d, "Processed") == 5; }, 30s));
  CHECK(messages_in(d, "Support") == 0);
  CHECK(eventually(
      [&] { return d.rows("SELECT count(*) FROM cursors WHERE value = '777:5'") == 1; }, 10s));
  REQUIRE(eventually([&] { return d.queued() >= 10; }, 10s));
  std::this_thread::sleep_for(300ms);
  CHECK(d.queued() == 10);
  CHECK(d.distinct_queued() == 10);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE external_id LIKE '<msg-1_@%'") == 5);
}
