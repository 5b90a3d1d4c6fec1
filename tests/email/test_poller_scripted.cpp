// The poller against a scripted IMAP server (scripted_imap.hpp), the real store: a UID FETCH
// answered OK that leaves out a message UID SEARCH listed, a greeting that is not IMAP, a BYE
// greeting and a SELECT without UIDVALIDITY. Nothing is lost in silence, every failed session
// is logged with the account and mailbox, counted, and retried with a growing back-off.
#include <doctest/doctest.h>

#include <regex>

#include "tests/email/poller_rig.hpp"
#include "tests/email/scripted_imap.hpp"
#include "tests/email/store_forwarder.hpp"

using namespace sb;
using namespace sb::test;
using namespace std::chrono_literals;

namespace {

// The scripted server, the database and a Poller on one io thread (poller_rig.hpp).
struct ScriptedRig : PollerRig {
  ScriptedImap server;
  StoreForwarder pipeline{store};

  ScriptedRig() {
    account.port = server.port;
    account.username = "alice";
    account.password = "secret";
    account.unfetchable_after = 0ms;  // the placeholder as soon as the attempts are spent
    options.max_backoff = 1000ms;
  }
  ~ScriptedRig() { shutdown(); }
  void start() {
    server.start();
    PollerRig::start(pipeline);
  }
  long long unfetchable() { return metric("switchboard_email_unfetchable_total"); }
  // The delays of "reconnecting in N ms", in order.
  std::vector<long long> reconnect_delays() {
    std::vector<long long> out;
    static const std::regex re("reconnecting in ([0-9]+) ms");
    for (const auto& line : lines_with("reconnecting in")) {
      std::smatch m;
      if (std::regex_search(line, m, re)) {
        out.push_back(std::stoll(m[1]));
      }
    }
    return out;
  }
};

const std::string placeholder_sql =
    "SELECT count(*) FROM interactions WHERE payload LIKE "
    "'%\"flags\":[\"malformed\",\"unfetchable\"]%' AND payload LIKE "
    "'%unfetchable.7.2.INBOX@switchboard.invalid%'";

}  // namespace

TEST_CASE(
    "a UID FETCH answered OK without a message SEARCH listed: fetched again in later sessions, "
    "then stored as a counted placeholder - the cursor never passes it in silence") {
  ScriptedRig r;
  for (int i = 1; i <= 3; ++i) {
    r.server.add(i, test_email(i, i));
  }
  // SEARCH lists 1 2 3; every FETCH naming 2 answers OK without it.
  r.server.omit = [](int, const std::vector<std::uint64_t>&, std::set<std::uint64_t>&) {
    return std::set<std::uint64_t>{2};
  };
  r.start();
  REQUIRE(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 3; }, 60s));
  CHECK(r.rows(placeholder_sql) == 1);
  CHECK(r.rows("SELECT count(*) FROM interactions WHERE external_id IN "
               "('<msg-1@example.com>', '<msg-3@example.com>')") == 2);
  REQUIRE(eventually([&] { return r.cursor() == "7:3"; }));
  CHECK(r.unfetchable() == 1);
  auto given_up = r.lines_with("UID 2 cannot be fetched");
  REQUIRE(given_up.size() == 1);
  MESSAGE(given_up[0]);
  CHECK(given_up[0].find("[email:support] INBOX:") != std::string::npos);
  CHECK(given_up[0].find("left out a message it still lists") != std::string::npos);
  // Each session fetched it once more alone and asked whether it still exists.
  CHECK(r.server.count("UID FETCH 2 (") >= 2);
  CHECK(r.server.count("UID SEARCH UID 2:2") >= 2);
  CHECK(r.errors() >= 3);
}

TEST_CASE("a message a UID FETCH left out once arrives whole in the same session") {
  ScriptedRig r;
  for (int i = 1; i <= 3; ++i) {
    r.server.add(i, test_email(i, i));
  }
  r.server.omit = [](int n, const std::vector<std::uint64_t>&, std::set<std::uint64_t>&) {
    return n == 1 ? std::set<std::uint64_t>{2} : std::set<std::uint64_t>{};
  };
  r.start();
  REQUIRE(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 3; }, 30s));
  REQUIRE(eventually([&] { return r.cursor() == "7:3"; }));
  CHECK(r.rows("SELECT count(*) FROM interactions WHERE external_id = '<msg-2@example.com>'") == 1);
  CHECK(r.rows(placeholder_sql) == 0);
  CHECK(r.unfetchable() == 0);
  CHECK(r.errors() == 0);
  CHECK(r.server.connections == 1);
}

TEST_CASE(
    "a message expunged by another client between SEARCH and FETCH is logged and passed, not "
    "made a placeholder") {
  ScriptedRig r;
  for (int i = 1; i <= 3; ++i) {
    r.server.add(i, test_email(i, i));
  }
  r.server.omit = [](int n, const std::vector<std::uint64_t>&, std::set<std::uint64_t>& expunge) {
    if (n == 1) {
      expunge.insert(2);
      return std::set<std::uint64_t>{2};
    }
    return std::set<std::uint64_t>{};
  };
  r.start();
  REQUIRE(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 2; }, 30s));
  REQUIRE(eventually([&] { return r.cursor() == "7:3"; }));
  CHECK(r.rows(placeholder_sql) == 0);
  CHECK(r.unfetchable() == 0);
  CHECK(r.errors() == 0);
  auto lines = r.lines_with("expunged meanwhile");
  REQUIRE(lines.size() == 1);
  MESSAGE(lines[0]);
  CHECK(lines[0].find("[email:support] INBOX: UID 2 was listed but left out of the FETCH") !=
        std::string::npos);
}

TEST_CASE(
    "a greeting that is not IMAP, or BYE: logged with the account and what the server said, "
    "retried with a growing back-off - and the mail flows once the server is right") {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"220 mx.example.com ESMTP Postfix\r\n",
       "not an IMAP greeting: \"220 mx.example.com ESMTP Postfix\""},
      {"* BYE Too many connections\r\n",
       "server closed the session (BYE): \"BYE Too many connections\""}};
  for (const auto& [greeting, said] : cases) {
    CAPTURE(greeting);
    ScriptedRig r;
    r.server.add(1, test_email(1, 1));
    r.server.set_greeting(greeting);
    r.start();
    REQUIRE(eventually([&] { return r.server.connections >= 4; }, 30s));
    auto ended = r.lines_with("session ended");
    REQUIRE(ended.size() >= 3);
    MESSAGE(ended[0]);
    CHECK(ended[0].find("[email:support] INBOX: session ended: greeting failed: ") !=
          std::string::npos);
    CHECK(ended[0].find(said) != std::string::npos);
    auto delays = r.reconnect_delays();
    REQUIRE(delays.size() >= 3);
    CHECK(delays[2] > delays[0]);  // 50 ms doubling, jittered in [base/2, base]
    CHECK(r.errors() >= 3);
    r.server.set_greeting("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n");
    CHECK(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 1; }, 30s));
  }
}

TEST_CASE(
    "a SELECT without UIDVALIDITY: logged, retried with back-off, nothing stored under a cursor "
    "that means nothing - until the server names it") {
  ScriptedRig r;
  r.server.add(1, test_email(1, 1));
  r.server.set_uidvalidity(false);
  r.start();
  REQUIRE(eventually([&] { return r.server.connections >= 3; }, 30s));
  auto ended = r.lines_with("session ended");
  REQUIRE_FALSE(ended.empty());
  MESSAGE(ended[0]);
  CHECK(ended[0].find("[email:support] INBOX: session ended: SELECT failed: IMAP protocol error: "
                      "no UIDVALIDITY in the answer") != std::string::npos);
  CHECK(r.server.count("UID SEARCH") == 0);
  CHECK(r.server.count("UID FETCH") == 0);
  CHECK(r.rows("SELECT count(*) FROM interactions") == 0);
  r.server.set_uidvalidity(true);
  REQUIRE(eventually([&] { return r.rows("SELECT count(*) FROM interactions") == 1; }, 30s));
  CHECK(eventually([&] { return r.cursor() == "7:1"; }));
}

TEST_CASE(
    "a server that serves the mail and then refuses every IDLE: reconnected to with a growing "
    "back-off, not twice a second for ever") {
  ScriptedRig r;
  r.server.add(1, test_email(1, 1));
  r.server.idle_fails = true;
  r.start();
  REQUIRE(eventually([&] { return r.server.connections >= 5; }, 30s));
  CHECK(r.rows("SELECT count(*) FROM interactions") == 1);
  auto ended = r.lines_with("session ended");
  REQUIRE_FALSE(ended.empty());
  MESSAGE(ended[0]);
  CHECK(ended[0].find("IDLE is broken here") != std::string::npos);
  auto delays = r.reconnect_delays();
  REQUIRE(delays.size() >= 4);
  // 50 ms doubling, jittered in [base/2, base]: the fourth is at least 200 ms, the first at
  // most 50 ms. Before, each session that caught up started the back-off afresh: all <= 50 ms.
  CHECK(delays[3] >= 4 * delays[0]);
}
