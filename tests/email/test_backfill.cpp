// `backfill` of an IMAP account: what the first sync of a mailbox reads (no cursor stored for
// it). Old mail is APPENDed with an INTERNALDATE in the past, as a support inbox with years of
// history holds it; the stored cursor then wins over whatever backfill says at later starts.
#include <doctest/doctest.h>

#include <ctime>

#include "core/time.hpp"
#include "tests/email/poller_rig.hpp"

using namespace sb;
using namespace sb::test;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kHour = 3600 * 1000;

// An RFC 3501 date-time `ago` before now, in UTC: "02-Nov-2026 10:00:00 +0000".
std::string date_ago(std::int64_t ago_ms) {
  std::time_t t = (now_ms() - ago_ms) / 1000;
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%d-%b-%Y %H:%M:%S +0000", &tm);
  return buf;
}

struct Rig : DovecotPollerRig {
  explicit Rig(const std::string& mailbox = "INBOX") : DovecotPollerRig("keep", mailbox) {}
  ~Rig() { shutdown(); }
  void start() { DovecotPollerRig::start(store); }
  long long stored() { return rows("SELECT count(*) FROM interactions"); }
  // Whether the message test_email(i, ...) was stored.
  bool has(int i) {
    return rows("SELECT count(*) FROM interactions WHERE external_id = '<msg-" + std::to_string(i) +
                "@example.com>'") == 1;
  }
  // UIDs 1..5: two a month old, one a week and six hours old (on the day SEARCH SINCE lists
  // for a 168h look-back, older than it by the hour), then two of the last day.
  void old_and_recent() {
    dovecot.append(test_email(1, 1), date_ago(30 * 24 * kHour));
    dovecot.append(test_email(2, 1), date_ago(29 * 24 * kHour));
    dovecot.append(test_email(3, 2), date_ago(7 * 24 * kHour + 6 * kHour));
    dovecot.append(test_email(4, 2), date_ago(20 * kHour));
    dovecot.append(test_email(5, 3), date_ago(2 * kHour));
    REQUIRE(messages_in("INBOX") == 5);
  }
  std::string uidvalidity() {
    auto out =
        dovecot.doveadm("mailbox status -u alice uidvalidity '" + account.mailboxes[0] + "'");
    auto at = out.find("uidvalidity=");
    REQUIRE(at != std::string::npos);
    return std::to_string(std::stoull(out.substr(at + 12)));
  }
};

}  // namespace

TEST_CASE(
    "backfill = 168h: the first sync stores only the messages whose INTERNALDATE is within it") {
  Rig r;
  r.old_and_recent();
  r.account.backfill = 168h;
  r.start();
  REQUIRE(eventually([&] { return r.stored() == 2; }, 30s));
  CHECK(r.has(4));
  CHECK(r.has(5));
  CHECK(eventually([&] { return r.cursor() == r.uidvalidity() + ":5"; }, 10s));
  CHECK(r.lines_with("INBOX: first sync reads back 168h: 2 of 5 messages").size() == 1);
  // New mail is read as always.
  r.dovecot.deliver(test_email(6, 3));
  CHECK(eventually([&] { return r.stored() == 3; }, 30s));
  CHECK(r.has(6));
  CHECK_FALSE(r.has(1));
  CHECK_FALSE(r.has(3));
}

TEST_CASE(
    "backfill = none: the first sync stores nothing already in the mailbox, then new mail as "
    "always") {
  Rig r;
  r.old_and_recent();
  r.account.backfill = 0ms;
  r.start();
  // The start is committed on its own, before anything is stored.
  REQUIRE(eventually([&] { return r.cursor() == r.uidvalidity() + ":5"; }, 30s));
  CHECK(r.lines_with("INBOX: first sync reads back none: 0 of 5 messages").size() == 1);
  r.dovecot.deliver(test_email(6, 3));
  REQUIRE(eventually([&] { return r.stored() == 1; }, 30s));
  CHECK(r.has(6));
  CHECK(eventually([&] { return r.cursor() == r.uidvalidity() + ":6"; }, 10s));
}

TEST_CASE(
    "backfill applies to the first sync only: a restart with backfill = all goes on from the "
    "cursor and reads nothing old") {
  Rig r;
  r.old_and_recent();
  r.account.backfill = 168h;
  r.start();
  REQUIRE(eventually([&] { return r.stored() == 2; }, 30s));
  REQUIRE(eventually([&] { return r.cursor() == r.uidvalidity() + ":5"; }, 10s));
  r.stop();

  r.account.backfill.reset();  // "all"
  r.dovecot.deliver(test_email(6, 3));
  r.start();
  REQUIRE(eventually([&] { return r.stored() == 3; }, 30s));
  CHECK(r.has(6));
  CHECK(eventually([&] { return r.cursor() == r.uidvalidity() + ":6"; }, 10s));
  CHECK(r.lines_with("first sync reads back").size() == 1);  // the first start's
  std::this_thread::sleep_for(500ms);  // a re-read from UID 1 would have stored UID 1 by now
  CHECK(r.stored() == 3);
  CHECK_FALSE(r.has(1));
}

TEST_CASE(
    "backfill applies to the first sync only: a mailbox rebuilt with a new UIDVALIDITY is read "
    "again whole, its mail never stored included, what was stored dropped as a duplicate") {
  Rig r("Support");
  r.dovecot.doveadm("mailbox create -u alice Support");
  r.account.backfill = 0ms;
  r.dovecot.deliver(test_email(1, 1), "Support");
  r.start();
  REQUIRE(eventually([&] { return r.cursor() == r.uidvalidity() + ":1"; }, 30s));
  r.dovecot.deliver(test_email(2, 1), "Support");
  REQUIRE(eventually([&] { return r.stored() == 1; }, 30s));
  r.stop();

  // Rebuilt by the server while the daemon was down: message 2 comes back under a new UID, and
  // four messages arrived meanwhile that nobody has read.
  r.dovecot.doveadm("mailbox delete -u alice Support");
  r.dovecot.doveadm("mailbox create -u alice Support");
  r.dovecot.set_uidvalidity(777, "Support");
  r.dovecot.deliver(test_email(2, 1), "Support");
  for (int i = 10; i < 14; ++i) {
    r.dovecot.deliver(test_email(i, 2), "Support");
  }
  r.start();
  REQUIRE(eventually([&] { return r.cursor() == "777:5"; }, 30s));
  CHECK(r.stored() == 5);
  for (int i = 10; i < 14; ++i) {
    CHECK(r.has(i));
  }
  CHECK(r.lines_with("first sync reads back").size() == 1);  // the first start's only
}

TEST_CASE(
    "backfill = none: a new UIDVALIDITY re-reads the mail received since a day before the last "
    "commit, not the old mail the first sync skipped") {
  Rig r;
  // An inbox with years of history, none of it to be read (backfill = none).
  for (int i = 1; i <= 5; ++i) {
    r.dovecot.append(test_email(i, 1), date_ago((400 - 10 * i) * 24 * kHour));
  }
  r.account.backfill = 0ms;
  r.start();
  REQUIRE(eventually([&] { return r.cursor() == r.uidvalidity() + ":5"; }, 30s));
  r.dovecot.deliver(test_email(6, 2));
  REQUIRE(eventually([&] { return r.stored() == 1; }, 30s));
  REQUIRE(eventually([&] { return r.cursor() == r.uidvalidity() + ":6"; }, 10s));
  r.stop();

  // The server's index rebuilt while the daemon was down: the same messages under a new
  // UIDVALIDITY, and one more that arrived meanwhile.
  r.dovecot.set_uidvalidity(777, "INBOX");
  r.dovecot.deliver(test_email(7, 3));
  r.start();
  REQUIRE(eventually([&] { return r.cursor() == "777:7"; }, 30s));
  CHECK(r.has(6));
  CHECK(r.has(7));
  for (int i = 1; i <= 5; ++i) {
    CHECK_FALSE(r.has(i));
  }
  CHECK(r.stored() == 2);
  CHECK(r.rows("SELECT count(*) FROM outbox") == 2);  // queued: the first mail and the new one
  CHECK(r.lines_with("INBOX: UIDVALIDITY changed: reading 2 of 7 messages, from the first "
                     "received since")
            .size() == 1);
  CHECK(r.lines_with("the 5 before it are not read (stored already, or skipped by backfill = "
                     "none)")
            .size() == 1);
  // A restart goes on from the new cursor: the old mail stays unread.
  r.stop();
  r.dovecot.deliver(test_email(8, 3));
  r.start();
  REQUIRE(eventually([&] { return r.stored() == 3; }, 30s));
  CHECK(r.has(8));
  CHECK_FALSE(r.has(1));
}

TEST_CASE(
    "backfill = 168h: a new UIDVALIDITY reads at least as far back as a first start would, mail "
    "older than that and never stored stays unread") {
  Rig r;
  r.dovecot.append(test_email(1, 1), date_ago(30 * 24 * kHour));
  r.dovecot.append(test_email(2, 1), date_ago(3 * 24 * kHour));
  r.account.backfill = 168h;
  r.start();
  REQUIRE(eventually([&] { return r.cursor() == r.uidvalidity() + ":2"; }, 30s));
  REQUIRE(eventually([&] { return r.stored() == 1; }, 10s));
  r.stop();

  // Moved in from another folder while the daemon was down (INTERNALDATE kept, five days old,
  // within 168h but before the last commit), then the UIDVALIDITY changed.
  r.dovecot.append(test_email(3, 2), date_ago(5 * 24 * kHour));
  r.dovecot.set_uidvalidity(777, "INBOX");
  r.start();
  REQUIRE(eventually([&] { return r.cursor() == "777:3"; }, 30s));
  REQUIRE(eventually([&] { return r.stored() == 2; }, 10s));
  CHECK(r.has(2));
  CHECK(r.has(3));
  CHECK_FALSE(r.has(1));
  CHECK(r.lines_with("UIDVALIDITY changed: reading 2 of 3 messages").size() == 1);
  CHECK(r.lines_with("(a day before the last commit, or backfill 168h if earlier)").size() == 1);
}

// Before: under "all" a new UIDVALIDITY read the mailbox whole, a box of 200k messages
// downloaded again only to find duplicates.
TEST_CASE(
    "backfill = all: a new UIDVALIDITY re-reads from a day before the last commit, not the whole "
    "mailbox") {
  Rig r;
  r.dovecot.append(test_email(1, 1), date_ago(30 * 24 * kHour));
  r.start();  // backfill = "all", the default
  REQUIRE(eventually([&] { return r.stored() == 1; }, 30s));
  REQUIRE(eventually([&] { return r.cursor() == r.uidvalidity() + ":1"; }, 10s));
  r.stop();

  // Moved in from an archive while the daemon was down, a year old, and one new mail; then
  // the UIDVALIDITY changed.
  r.dovecot.append(test_email(2, 2), date_ago(365 * 24 * kHour));
  r.dovecot.deliver(test_email(3, 2));
  r.dovecot.set_uidvalidity(777, "INBOX");
  r.start();
  REQUIRE(eventually([&] { return r.cursor() == "777:3"; }, 30s));
  REQUIRE(eventually([&] { return r.stored() == 2; }, 10s));
  CHECK(r.has(3));
  CHECK_FALSE(r.has(2));
  CHECK(r.lines_with("UIDVALIDITY changed: reading 1 of 3 messages").size() == 1);
  CHECK(r.lines_with("the 2 before it are not read (stored already, or moved in with an older "
                     "date: backfill = all)")
            .size() == 1);
}
