// `after = seen | move:Folder` survives the daemon: a batch commits, then the daemon goes away
// before `after` reaches the server. Here Dovecot is killed right after the batch's COMMIT,
// before the poller hears of it (so its `after` fails on a dead connection), and the whole
// Poller is destroyed while Dovecot is down, as a kill -9 of the daemon would leave things: the
// database is all that is left. The committed cursor says `after` is still due; a new Poller on
// the same database applies it, unless the mailbox's UIDVALIDITY changed meanwhile.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>

#include "tests/email/poller_rig.hpp"
#include "tests/email/store_forwarder.hpp"

using namespace sb;
using namespace sb::test;
using namespace std::chrono_literals;

namespace {

// The real store, except that once armed, the first batch of messages to commit kills Dovecot
// before its `done` runs: the poller learns of the commit only when the server is gone.
class KillAfterCommit : public StoreForwarder {
 public:
  KillAfterCommit(storage::Store& s, Dovecot& d) : StoreForwarder(s), dovecot_(d) {}
  void submit(std::vector<Inbound> items, std::optional<CursorUpdate> cursor, Done done) override {
    bool messages = !items.empty();
    std::size_t text = 0;
    for (const auto& in : items) {
      text += in.text.size();
    }
    for (std::size_t seen = most_text;
         text > seen && !most_text.compare_exchange_weak(seen, text);) {
    }
    store_.submit(std::move(items), std::move(cursor),
                  [this, messages, done = std::move(done)](std::vector<IngestOutcome> out) {
                    if (messages && armed.exchange(false)) {
                      dovecot_.kill();
                      killed = true;
                    }
                    done(std::move(out));
                  });
  }
  std::atomic<bool> armed{false};
  std::atomic<bool> killed{false};
  std::atomic<std::size_t> most_text{0};  // the largest sum of message texts in one batch

 private:
  Dovecot& dovecot_;
};

// Dovecot, the database and a Poller on one io thread (poller_rig.hpp); the Poller can be
// destroyed and made anew on the same database.
struct Rig : DovecotPollerRig {
  KillAfterCommit pipeline{store, dovecot};

  Rig(const std::string& after, const std::string& mailbox) : DovecotPollerRig(after, mailbox) {}
  ~Rig() { shutdown(); }
  void start() { DovecotPollerRig::start(pipeline); }
  long long seen_in(const std::string& mailbox) {
    auto out = dovecot.doveadm("search -u alice mailbox '" + mailbox + "' SEEN");
    return std::count(out.begin(), out.end(), '\n');
  }
  // No batch came back as duplicates: nothing was fetched and stored twice.
  bool no_duplicates() { return metric("switchboard_duplicates_total") == 0; }

  // `count` messages in the mailbox, their batch committed, `after` never applied: Dovecot was
  // killed right after the COMMIT and the Poller destroyed while it was down. Dovecot is back.
  void commit_then_lose_the_daemon(int count) {
    const auto& mailbox = account.mailboxes[0];
    for (int i = 0; i < count; ++i) {
      dovecot.deliver(test_email(i, i % 3), mailbox);
    }
    pipeline.armed = true;
    start();
    REQUIRE(eventually([&] { return pipeline.killed.load(); }, 30s));
    REQUIRE(rows("SELECT count(*) FROM interactions") == count);
    stop();
    dovecot.start_again();
  }
};

}  // namespace

TEST_CASE(
    "after = move: a batch committed just before the daemon went away is moved by the next "
    "start, each message stored once") {
  Rig r("move:Processed", "INBOX");
  r.dovecot.doveadm("mailbox create -u alice Processed");
  r.commit_then_lose_the_daemon(5);
  REQUIRE(r.messages_in("INBOX") == 5);  // `after` never reached the server
  CHECK(r.cursor().ends_with(":5:0"));   // and the cursor says it is due for UIDs 1..5

  r.start();
  CHECK(eventually([&] { return r.messages_in("Processed") == 5; }, 30s));
  CHECK(r.messages_in("INBOX") == 0);
  // Once applied, the cursor says so: a later restart does not apply it again.
  CHECK(eventually([&] { return r.cursor().ends_with(":5"); }, 10s));
  r.dovecot.deliver(test_email(5, 1));
  REQUIRE(eventually([&] { return r.messages_in("Processed") == 6; }, 30s));
  CHECK(r.rows("SELECT count(*) FROM interactions") == 6);
  CHECK(r.rows("SELECT count(*) FROM outbox") == 6);
  CHECK(r.no_duplicates());
}

TEST_CASE(
    "after = seen: a batch committed just before the daemon went away is flagged \\Seen by the "
    "next start") {
  Rig r("seen", "INBOX");
  r.commit_then_lose_the_daemon(3);
  REQUIRE(r.seen_in("INBOX") == 0);
  CHECK(r.cursor().ends_with(":3:0"));
  r.start();
  CHECK(eventually([&] { return r.seen_in("INBOX") == 3; }, 30s));
  CHECK(eventually([&] { return r.cursor().ends_with(":3"); }, 10s));
  CHECK(r.rows("SELECT count(*) FROM interactions") == 3);
  CHECK(r.no_duplicates());
}

TEST_CASE(
    "after = move: UIDVALIDITY changed while the daemon was away - the `after` still due is "
    "dropped, the UIDs' new messages are stored before they move, nothing twice") {
  Rig r("move:Processed", "Support");
  r.dovecot.doveadm("mailbox create -u alice Processed");
  r.dovecot.doveadm("mailbox create -u alice Support");
  r.commit_then_lose_the_daemon(5);
  REQUIRE(r.messages_in("Support") == 5);
  REQUIRE(r.cursor().ends_with(":5:0"));
  // The mailbox is made anew: UIDs 1..5, the ones `after` is due for, now name five other
  // messages, which were never stored. Moving them by the old UIDs would lose them.
  r.dovecot.doveadm("mailbox delete -u alice Support");
  r.dovecot.doveadm("mailbox create -u alice Support");
  r.dovecot.set_uidvalidity(777, "Support");
  for (int i = 10; i < 15; ++i) {
    r.dovecot.deliver(test_email(i, 2), "Support");
  }
  REQUIRE(r.messages_in("Support") == 5);

  r.start();
  CHECK(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 10; }, 30s));
  CHECK(eventually([&] { return r.messages_in("Processed") == 5; }, 30s));
  CHECK(r.messages_in("Support") == 0);
  CHECK(eventually([&] { return r.cursor() == "777:5"; }, 10s));
  CHECK(r.rows("SELECT count(*) FROM interactions WHERE external_id LIKE '<msg-1_@%'") == 5);
  CHECK(r.rows("SELECT count(*) FROM outbox") == 10);
  CHECK(r.no_duplicates());
}

TEST_CASE(
    "large messages come in batches bounded in bytes, each stored once, the cursor at the end") {
  Rig r("seen", "INBOX");
  r.options.max_fetch_bytes = 30000;
  // Every fourth message carries 12 KB: a batch of all 40 would hold 120 KB of them.
  for (int i = 0; i < 40; ++i) {
    r.dovecot.deliver(test_email(i, i % 3) + (i % 4 == 0 ? std::string(12000, 'y') + "\r\n" : ""));
  }
  r.start();
  CHECK(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 40; }, 30s));
  CHECK(eventually([&] { return r.cursor().ends_with(":40"); }, 10s));
  CHECK(eventually([&] { return r.seen_in("INBOX") == 40; }, 10s));
  CHECK(r.no_duplicates());
  // At most the bound plus the one message that crossed it, and its headers.
  CHECK(r.pipeline.most_text.load() > 0);
  CHECK(r.pipeline.most_text.load() <= 30000 + 13000);
}
