// A Telegram reply whose request is out when the daemon stops: kill -9, or SIGTERM while the
// provider takes longer than the stop waits for it (5 s). Telegram takes no idempotency key, and
// the daemon marks the attempt before it goes out: the send is settled as an unknown outcome,
// not sent a second time after the restart. The real binary as a process, the fake Telegram in
// the test, holding its answer to sendMessage.
#include <doctest/doctest.h>
#include <signal.h>

#include <fstream>

#include "storage/sqlite.hpp"
#include "tests/integration/agent_api.hpp"
#include "tests/social/fakes/fake_telegram.hpp"
#include "tests/support/free_port.hpp"

using namespace sb;
using namespace sb::test;
using namespace std::chrono_literals;

namespace {

struct TelegramDaemon {
  FakeTelegram tg;
  TempDir dir;
  RedisServer redis;
  std::uint16_t port = free_port();
  std::string cfg;
  std::unique_ptr<Process> daemon;

  TelegramDaemon() {
    tg.start();
    cfg = dir.file("switchboard.toml");
    std::ofstream(cfg) << "[server]\nlisten = \"127.0.0.1:" << port << "\"\n"
                       << "[storage]\npath = \"" << dir.file("sb.db") << "\"\n"
                       << "[redis]\nurl = \"redis://127.0.0.1:" << redis.port() << "/0\"\n"
                       << "[api]\ntokens = [\"t\"]\n"
                       << "[routing]\ndefault_queue = \"general\"\n"
                       << "[[agents]]\nid = \"alice\"\ntoken = \"alice-token\"\n"
                       << "queues = [\"general\"]\n"
                       << "[[channels.telegram]]\nname = \"tg\"\nbase_url = \"" << tg.base_url()
                       << "\"\nbot_token = \"123:tg-token\"\n";
  }
  void start() {
    daemon = daemon_process(dir, cfg);
    REQUIRE(eventually([&] { return healthy(port); }));
  }
  std::string text(const std::string& sql) {
    storage::Db db(dir.file("sb.db"), true);
    auto st = db.prepare(sql);
    return st.step() ? st.text(0) : std::string();
  }
};

// A message to the bot, claimed and answered while Telegram holds its answer to sendMessage.
// Returns the customer's id and the reply's.
std::pair<std::string, std::string> reply_held(TelegramDaemon& d) {
  d.tg.add_private_message(501, "Ann", "are you there?");
  d.start();
  AgentClient alice(d.port, "alice-token");
  auto in = alice.claim("general", 10000);
  d.tg.hold_send_answers(true);
  std::string out = alice.reply(s(in.at("id")), "Yes, here.");
  REQUIRE(eventually([&] { return d.tg.sent().size() == 1; }));
  return {s(in.at("customer").at("id")), out};
}

// After the restart: failed as an unknown outcome, saying the daemon stopped, delivered once.
void check_settled(TelegramDaemon& d, const std::string& customer, const std::string& out,
                   const std::string& how) {
  d.start();
  AgentClient alice(d.port, "alice-token");
  auto failed = alice.outbound_when(customer, out, "failed", 1, 10s);
  std::string why = s(failed.at("send").at("error"));
  CHECK_MESSAGE(why.rfind("outcome unknown: the daemon stopped while the request was out "
                          "(attempt 1, started ",
                          0) == 0,
                why);
  CHECK_MESSAGE(why.find(how) != std::string::npos, why);
  CHECK(why.find("not retried so that the customer does not get it twice - check the "
                 "conversation on Telegram") != std::string::npos);
  // Longer than the first back-off (1 s): nothing is tried again.
  std::this_thread::sleep_for(1500ms);
  CHECK(d.tg.sent().size() == 1);
  CHECK(d.text("SELECT coalesce(attempt_started_at, 'none') FROM sends") == "none");
  d.tg.hold_send_answers(false);
  d.daemon->kill(SIGTERM);
  d.daemon->wait();
}

}  // namespace

TEST_CASE(
    "telegram: kill -9 while a reply's request is out: after the restart it is failed as "
    "outcome unknown, delivered once") {
  TelegramDaemon d;
  auto [customer, out] = reply_held(d);
  d.daemon->kill(SIGKILL);
  d.daemon->wait();
  // Before: still pending with nothing to tell it had gone out; the restart sent it again.
  CHECK(d.text("SELECT state FROM sends") == "pending");
  check_settled(d, customer, out, "started ");
}

TEST_CASE(
    "telegram: a stop whose wait for a reply's request ends first fails it as outcome unknown, "
    "delivered once") {
  TelegramDaemon d;
  auto [customer, out] = reply_held(d);
  d.daemon->kill(SIGTERM);  // Telegram answers no sooner than the stop's 5 s wait ends
  d.daemon->wait();
  // Settled by the stop itself, as the restart would (before: pending, sent again after it).
  CHECK(d.text("SELECT state FROM sends") == "failed");
  CHECK(d.text("SELECT last_error FROM sends").find("the stop's wait of 5 s for it ended first") !=
        std::string::npos);
  check_settled(d, customer, out, "the stop's wait of 5 s for it ended first");
}
