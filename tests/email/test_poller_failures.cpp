// A mailbox session that fails is logged with what failed, counted, backed off and tried again:
// a SELECT the server refuses, a committed cursor that cannot be read, and `after = move`
// applied again on a server without MOVE or UIDPLUS. A real Dovecot, the real store, one Poller.
#include <doctest/doctest.h>

#include <atomic>

#include "core/supervise.hpp"
#include "storage/sqlite.hpp"
#include "storage/wal_batch.hpp"
#include "tests/email/poller_rig.hpp"
#include "tests/email/store_forwarder.hpp"

using namespace sb;
using namespace sb::test;
using namespace std::chrono_literals;

namespace {

// The real store, disturbed on demand: the committed cursor's read throws (SQLITE_BUSY past the
// busy timeout, say), or the cursor-only write that records `after` as done (or a first sync's
// start) fails.
class FaultyStore : public StoreForwarder {
 public:
  using StoreForwarder::StoreForwarder;
  std::optional<std::string> cursor(const std::string& a, const std::string& s) override {
    if (cursor_throws_other > 0) {
      --cursor_throws_other;
      throw NotAStdException{};
    }
    if (cursor_throws > 0) {
      --cursor_throws;
      throw storage::Error(5, "database is locked");
    }
    return store_.cursor(a, s);
  }
  void submit(std::vector<Inbound> items, std::optional<CursorUpdate> cursor, Done done) override {
    if (items.empty() && fail_after_record > 0) {
      --fail_after_record;
      // The real Store's own failure: the commit's WAL write fails, as on a full disk. Nothing
      // else is at the writer while the chain waits for a cursor-only commit, so it is this one.
      storage::wal_batch_fail_next_flush();
    }
    store_.submit(std::move(items), std::move(cursor), std::move(done));
  }
  std::atomic<int> cursor_throws{0};
  // The read throws what is not a std::exception: run() takes a std::exception out of a session
  // as a failed session, so this is what gets past it to the mailbox loop's supervision.
  std::atomic<int> cursor_throws_other{0};
  struct NotAStdException {};
  std::atomic<int> fail_after_record{0};
};

// Dovecot, the database and a Poller on one io thread (poller_rig.hpp), storing through a
// FaultyStore.
struct FailureRig : DovecotPollerRig {
  using DovecotPollerRig::DovecotPollerRig;
  ~FailureRig() { shutdown(); }
  void start() { DovecotPollerRig::start(pipeline); }
  FaultyStore pipeline{store};
};

}  // namespace

// The line of the first session that ended, from "[email:support] " on.
std::string first_ended(const std::string& text) {
  auto at = text.find("[email:support] INBOX: session ended");
  if (at == std::string::npos) {
    return "";
  }
  auto line = text.substr(at);
  return line.substr(0, line.find('\n'));
}

TEST_CASE(
    "an IMAP login that cannot succeed is logged with the account, why and when it is tried "
    "again: the server's refusal, or a token_file that cannot be read (and nothing is sent)") {
  {
    FailureRig r;
    r.account.password = "not-the-password-42";
    r.start();
    REQUIRE(eventually([&] { return !first_ended(r.logged()).empty(); }, 20s));
    auto line = first_ended(r.logged());
    MESSAGE(line);
    CHECK(line.find("[email:support] INBOX: session ended: AUTHENTICATE PLAIN failed: "
                    "authentication failed: \"NO [AUTHENTICATIONFAILED]") == 0);
    CHECK(line.find("; reconnecting in ") != std::string::npos);
    CHECK(r.logged().find("not-the-password-42") == std::string::npos);
  }
  {
    // An empty token would be sent and refused, and the line would blame the server.
    FailureRig r;
    r.account.auth = "xoauth2";
    r.account.token_file = r.dir.file("no-such-token");
    r.start();
    REQUIRE(eventually([&] { return !first_ended(r.logged()).empty(); }, 20s));
    auto line = first_ended(r.logged());
    MESSAGE(line);
    CHECK(line.find("[email:support] INBOX: session ended: token_file " +
                    r.dir.file("no-such-token") +
                    " cannot be read (No such file or directory); nothing was sent to the server; "
                    "reconnecting in ") == 0);
    CHECK(r.errors() >= 1);
  }
}

TEST_CASE("a session that fails is logged with the command and the server's words") {
  FailureRig r("keep", "Missing");  // Dovecot refuses the SELECT
  r.start();
  REQUIRE(eventually([&] { return r.logged().find("session ended") != std::string::npos; }));
  std::string text = r.logged();
  auto line = text.substr(text.find("[email:support] Missing: session ended"));
  line = line.substr(0, line.find('\n'));
  MESSAGE(line);
  CHECK(line.find("SELECT failed") != std::string::npos);
  CHECK(line.find("Mailbox doesn't exist: Missing") != std::string::npos);
  CHECK(r.errors() >= 1);
}

TEST_CASE("a committed cursor that cannot be read fails the session, not the mailbox for good") {
  FailureRig r;
  r.pipeline.cursor_throws = 1;
  r.dovecot.deliver(test_email(1, 1));
  r.start();
  REQUIRE(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 1; }));
  CHECK(r.pipeline.cursor_throws == 0);
  CHECK(r.errors() == 1);
  std::string text = r.logged();
  CHECK(text.find("session ended: reading the committed cursor failed: database is locked") !=
        std::string::npos);
  r.dovecot.deliver(test_email(2, 1));  // and the mailbox goes on
  CHECK(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 2; }));
}

TEST_CASE("a mailbox loop stopped by an exception is started again, and the mailbox goes on") {
  FailureRig r;
  r.pipeline.cursor_throws_other = 1;
  r.dovecot.deliver(test_email(1, 1));
  auto before = task_restarts("email_poller");
  r.start();
  REQUIRE(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 1; }, 20s));
  CHECK(task_restarts("email_poller") == before + 1);
  auto lines = r.lines_with("restarting");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] ==
        "error [email:support] INBOX: the poller stopped by an exception: an exception that is "
        "not a std::exception; restarting it in 1 s");
  r.dovecot.deliver(test_email(2, 1));  // and the mailbox goes on
  CHECK(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 2; }));
}

TEST_CASE("a mailbox loop waiting to be restarted stops at once") {
  FailureRig r;
  r.pipeline.cursor_throws_other = 1000;  // every time: 1 s, 2 s, 4 s... between restarts
  r.start();
  REQUIRE(eventually([&] { return !r.lines_with("restarting it in 4 s").empty(); }, 20s));
  auto before = std::chrono::steady_clock::now();
  r.stop();  // Poller::stop() waits (up to 10 s) until the mailbox loop has ended
  CHECK(std::chrono::steady_clock::now() - before < 1s);
  CHECK(r.lines_with("restarting").size() == 3);
  CHECK(r.lines_with("did not stop").empty());
}

TEST_CASE(
    "after = move without MOVE or UIDPLUS: applied again after a session ended, nothing is "
    "copied twice") {
  // Without MOVE a move is COPY + \Deleted, and without UIDPLUS the originals stay, flagged.
  // Here the cursor-only write that records `after` as done fails once: the session ends with
  // `after` done on the server but due in the cursor, and the next session applies it again.
  FailureRig r("move:Processed", "INBOX",
               "protocol imap {\n  imap_capability = IMAP4rev1 SASL-IR LITERAL+ IDLE\n}");
  r.dovecot.doveadm("mailbox create -u alice Processed");
  for (int i = 0; i < 5; ++i) {
    r.dovecot.deliver(test_email(i, i % 3));
  }
  r.pipeline.fail_after_record = 1;
  r.start();
  REQUIRE(eventually([&] { return r.pipeline.fail_after_record == 0; }, 30s));
  // The next session applies what the cursor says is due, then records it as done.
  REQUIRE(eventually([&] { return r.cursor().ends_with(":5"); }, 30s));
  CHECK(r.logged().find("applying after") == std::string::npos);  // nothing was left to move
  CHECK(r.messages_in("Processed") == 5);
  CHECK(r.messages_in("INBOX") == 5);  // flagged \Deleted, not expunged: no UIDPLUS
  CHECK(r.rows("SELECT count(*) FROM interactions") == 5);
}

TEST_CASE(
    "backfill = none: a first-sync start whose commit fails is chosen again before anything is "
    "read") {
  // The start is committed alone before anything is fetched (Poller::State::session). When that
  // commit fails the session ends, and the next one, finding no cursor, chooses again. Taken
  // for done, the session went on with no cursor stored: a restart before the next new mail
  // would choose again and skip what arrived meanwhile.
  FailureRig r("keep");
  for (int i = 0; i < 5; ++i) {
    r.dovecot.deliver(test_email(i, i % 3));
  }
  r.account.backfill = 0ms;
  r.pipeline.fail_after_record = 1;
  r.start();
  REQUIRE(eventually([&] { return r.pipeline.fail_after_record == 0; }, 30s));
  REQUIRE(eventually([&] { return r.cursor().ends_with(":5"); }, 30s));
  CHECK(r.lines_with("INBOX: first sync reads back none: 0 of 5 messages").size() == 2);
  auto failed = r.lines_with("recording `after` done up to UID 5 failed");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].find("disk I/O error") != std::string::npos);
  CHECK(r.rows("SELECT count(*) FROM interactions") == 0);
  r.dovecot.deliver(test_email(6, 1));
  REQUIRE(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 1; }, 30s));
  CHECK(eventually([&] { return r.cursor().ends_with(":6"); }, 10s));
}
