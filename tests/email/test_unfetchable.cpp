// Issue 4: a message the IMAP server cannot deliver never stops its mailbox. A real Dovecot
// fails every FETCH of a message whose Maildir file is shorter than the S= size in its name (it
// drops the connection in the middle of the literal: "Cached message size larger than
// expected"), and answers `* BYE FETCH failed: Internal error occurred` for a file it cannot
// open. After a few attempts the message is stored as a placeholder flagged `malformed`, in
// the transaction that moves the cursor past it, and the mail after it arrives.
#include <doctest/doctest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "channels/email/unfetchable.hpp"
#include "tests/email/email_daemon.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

std::string maildir_of(const Dovecot& d) {
  std::string ca = d.ca_file();
  return ca.substr(0, ca.rfind('/')) + "/home/alice/Maildir";
}

// The Maildir file (new/ or cur/) whose bytes contain `needle`.
std::string file_with(const Dovecot& d, const std::string& needle) {
  for (const char* sub : {"/new", "/cur"}) {
    for (const auto& e : std::filesystem::directory_iterator(maildir_of(d) + sub)) {
      std::ifstream f(e.path(), std::ios::binary);
      std::stringstream ss;
      ss << f.rdbuf();
      if (ss.str().find(needle) != std::string::npos) {
        return e.path().string();
      }
    }
  }
  return {};
}

bool has_flag(const json::object& p, const char* flag) {
  const auto& flags = p.at("flags").as_array();
  return std::find(flags.begin(), flags.end(), json::value(flag)) != flags.end();
}

std::string id_of(const json::object& p) {
  return std::string(p.at("external_id").as_string());
}

const std::string unfetchable_metric =
    R"(switchboard_email_unfetchable_total{channel="email",account="support"} )";

}  // namespace

TEST_CASE(
    "a message Dovecot cannot deliver (its file cut short) becomes a malformed placeholder - the "
    "mail after it flows, a restart stores nothing twice") {
  EmailDaemon d("none", "seen");
  for (int i = 1; i <= 5; ++i) {
    d.dovecot.deliver(test_email(i, i));
  }
  std::string file = file_with(d.dovecot, "<msg-3@example.com>");
  REQUIRE(file.find(",S=") != std::string::npos);  // doveadm save records the size in the name
  std::filesystem::resize_file(file, 60);
  d.start();
  REQUIRE(eventually([&] { return d.queued() >= 5; }, 60s));
  auto ps = d.payloads();
  REQUIRE(ps.size() == 5);
  CHECK(id_of(ps[0]) == "<msg-1@example.com>");
  CHECK(id_of(ps[1]) == "<msg-2@example.com>");
  CHECK(id_of(ps[3]) == "<msg-4@example.com>");
  CHECK(id_of(ps[4]) == "<msg-5@example.com>");
  const auto& p = ps[2];
  CHECK(has_flag(p, "malformed"));
  CHECK(has_flag(p, "unfetchable"));
  std::string text(p.at("text").as_string());
  MESSAGE("placeholder text: " << text);
  CHECK(text.find("message could not be fetched from the server: the server closed the "
                  "connection during the FETCH") != std::string::npos);
  CHECK(text.find("INBOX UID 3") != std::string::npos);
  CHECK_FALSE(has_flag(ps[3], "malformed"));
  CHECK(d.metrics().find(unfetchable_metric + "1") != std::string::npos);
  // The cursor is past every UID: nothing is fetched again.
  CHECK(d.rows("SELECT count(*) FROM cursors WHERE account='support' AND scope='INBOX' AND "
               "value LIKE '%:5'") == 1);

  // `after` reaches every UID, the placeholder's too (it committed after its session died).
  auto seen = [&] {
    auto out = d.dovecot.doveadm("search -u alice mailbox INBOX SEEN");
    return std::count(out.begin(), out.end(), '\n');
  };
  REQUIRE(eventually([&] { return seen() == 5; }, 30s));

  d.dovecot.deliver(test_email(6, 6));
  REQUIRE(eventually([&] { return d.queued() >= 6; }, 30s));
  d.stop();
  d.start();
  d.dovecot.deliver(test_email(7, 7));
  REQUIRE(eventually([&] { return d.queued() >= 7; }, 30s));
  std::this_thread::sleep_for(300ms);
  CHECK(d.queued() == 7);
  CHECK(d.distinct_queued() == 7);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 7);
}

TEST_CASE(
    "a message Dovecot cannot open (BYE on every FETCH): placeholder with the server's words - "
    "after = seen reaches it too, though it committed after its session ended") {
  EmailDaemon d("none", "seen");
  d.dovecot.deliver(test_email(1, 1));
  d.dovecot.deliver(test_email(2, 2));
  REQUIRE(::chmod(file_with(d.dovecot, "<msg-2@example.com>").c_str(), 0) == 0);
  d.start();
  REQUIRE(eventually([&] { return d.queued() >= 2; }, 60s));
  d.dovecot.deliver(test_email(3, 3));
  REQUIRE(eventually([&] { return d.queued() >= 3; }, 30s));
  auto ps = d.payloads();
  REQUIRE(ps.size() == 3);
  CHECK(id_of(ps[0]) == "<msg-1@example.com>");
  CHECK(has_flag(ps[1], "malformed"));
  std::string text(ps[1].at("text").as_string());
  MESSAGE("placeholder text: " << text);
  CHECK(text.find("BYE FETCH failed: Internal error occurred") != std::string::npos);
  CHECK(id_of(ps[2]) == "<msg-3@example.com>");
  // The placeholder is committed once the connection has died (Dovecot closes it with the
  // BYE): the next session applies `after` to its UID.
  REQUIRE(eventually(
      [&] {
        auto out = d.dovecot.doveadm("search -u alice mailbox INBOX SEEN");
        return std::count(out.begin(), out.end(), '\n') == 3;
      },
      30s));
}

TEST_CASE("two undeliverable messages side by side: both become placeholders, in UID order") {
  EmailDaemon d;
  for (int i = 1; i <= 4; ++i) {
    d.dovecot.deliver(test_email(i, i));
  }
  std::filesystem::resize_file(file_with(d.dovecot, "<msg-2@example.com>"), 60);
  std::filesystem::resize_file(file_with(d.dovecot, "<msg-3@example.com>"), 60);
  d.start();
  REQUIRE(eventually([&] { return d.queued() >= 4; }, 60s));
  auto ps = d.payloads();
  REQUIRE(ps.size() == 4);
  CHECK(id_of(ps[0]) == "<msg-1@example.com>");
  CHECK(has_flag(ps[1], "unfetchable"));
  CHECK(std::string(ps[1].at("text").as_string()).find("INBOX UID 2") != std::string::npos);
  CHECK(has_flag(ps[2], "unfetchable"));
  CHECK(std::string(ps[2].at("text").as_string()).find("INBOX UID 3") != std::string::npos);
  CHECK(id_of(ps[3]) == "<msg-4@example.com>");
  CHECK(d.metrics().find(unfetchable_metric + "2") != std::string::npos);
}

TEST_CASE("fetch failures: a failure that does not repeat never narrows down, nor gives up") {
  email::FetchFailures f;
  f.failed(1, 200, 200, "End of file");  // Dovecot restarted mid-fetch
  CHECK_FALSE(f.narrowing(0));
  f.passed(200);  // the next session fetched the batch
  f.failed(201, 400, 200, "End of file");
  f.failed(401, 600, 200, "End of file");  // two different batches: no repeat
  CHECK_FALSE(f.narrowing(400));
  CHECK(f.batch_failures() == 1);
}

TEST_CASE(
    "fetch failures: a batch failing three times goes UID by UID - a UID failing twice alone "
    "is given up") {
  email::FetchFailures f;
  f.failed(201, 400, 200, "BYE");
  f.failed(201, 400, 200, "BYE");
  CHECK_FALSE(f.narrowing(200));
  f.failed(201, 400, 200, "BYE");
  CHECK(f.narrowing(200));
  CHECK(f.range_lo() == 201);
  CHECK(f.range_hi() == 400);
  f.passed(250);  // UIDs before the bad one came one by one
  CHECK(f.narrowing(250));
  f.failed(251, 251, 1, "BYE");
  CHECK(f.suspect(251));
  CHECK_FALSE(f.give_up(251));
  CHECK(f.range_hi() == 400);  // the batch's range is kept while it is gone through
  f.failed(251, 251, 1, "BYE FETCH failed");
  CHECK(f.give_up(251));
  CHECK(f.reason() == "BYE FETCH failed");
  f.passed(251);
  CHECK_FALSE(f.give_up(251));
  CHECK(f.narrowing(251));  // the rest of the batch, still one by one
  f.passed(400);
  CHECK_FALSE(f.narrowing(400));
}

TEST_CASE("fetch failures: a UID is given up only once its own failures span long enough") {
  email::FetchFailures f;
  for (int i = 0; i < 3; ++i) {
    f.failed(1, 5, 5, "BYE");
  }
  f.failed(2, 2, 1, "BYE");
  f.failed(2, 2, 1, "BYE");
  CHECK(f.give_up(2));  // enough sessions, no time asked
  CHECK_FALSE(f.give_up(2, std::chrono::milliseconds(300)));
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  CHECK_FALSE(f.give_up(2, std::chrono::milliseconds(300)));  // time alone is not a failure
  f.failed(2, 2, 1, "BYE");
  CHECK(f.give_up(2, std::chrono::milliseconds(300)));
  f.passed(2);
  f.failed(3, 3, 1, "BYE");  // the next UID starts its own span
  f.failed(3, 3, 1, "BYE");
  CHECK_FALSE(f.give_up(3, std::chrono::milliseconds(300)));
}

TEST_CASE(
    "a message the server cannot give for a few seconds (a failover) arrives whole, not as a "
    "placeholder") {
  EmailDaemon d;
  d.cfg.channels.imap[0].unfetchable_after = std::chrono::seconds(60);
  d.dovecot.deliver(test_email(1, 1));
  d.dovecot.deliver(test_email(2, 2));
  std::string file = file_with(d.dovecot, "<msg-2@example.com>");
  REQUIRE(::chmod(file.c_str(), 0) == 0);
  d.start();
  // Three failures of the batch and two of UID 2 alone: where the placeholder used to be stored.
  auto errors = [&] {
    auto m = d.metrics();
    std::string key = R"(switchboard_channel_errors_total{channel="email",account="support"} )";
    auto at = m.find(key);
    return at == std::string::npos ? 0 : std::stoi(m.substr(at + key.size()));
  };
  REQUIRE(eventually([&] { return errors() >= 5; }, 90s));
  std::this_thread::sleep_for(500ms);
  file = file_with(d.dovecot, "<msg-2@example.com>");  // new/ -> cur/ once the session saw it
  REQUIRE(::chmod(file.c_str(), 0644) == 0);           // the server can read it again
  REQUIRE(eventually([&] { return d.queued() >= 2; }, 90s));
  auto ps = d.payloads();
  REQUIRE(ps.size() == 2);
  CHECK(id_of(ps[1]) == "<msg-2@example.com>");
  CHECK_FALSE(has_flag(ps[1], "malformed"));
  CHECK(d.metrics().find(unfetchable_metric) == std::string::npos);
}

TEST_CASE("fetch failures: the placeholder names the mailbox, UID and the server's reply") {
  auto in = email::unfetchable_inbound(
      "support", "INBOX", 7, 42,
      email::fetch_failure_text("server closed the session (BYE)", "BYE Internal error occurred"));
  CHECK(in.external_id == "<unfetchable.7.42.INBOX@switchboard.invalid>");
  CHECK(in.flags == std::vector<std::string>{"malformed", "unfetchable"});
  CHECK(in.text.find("message could not be fetched from the server: server closed the session "
                     "(BYE): BYE Internal error occurred") == 0);
  CHECK(in.text.find("INBOX UID 42 (UIDVALIDITY 7)") != std::string::npos);
}
