// The durable outbound queue of replies: a permanent failure is visible with the provider's
// error; a reply accepted before a restart is sent after it; Redis down is a clear 503.
#include <doctest/doctest.h>

#include <mutex>
#include <thread>

#include "agents/send_loop.hpp"
#include "core/sender.hpp"
#include "core/time.hpp"
#include "storage/sqlite.hpp"
#include "tests/agents/fixture.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;

namespace {
struct RejectingSender : Sender {
  void send(OutboundMessage, Done done) override {
    done(SendResult::failed("400 recipient blocked the account"));
  }
};
// Accepts the job and never answers: the process "crashes" before the provider replied.
struct HangingSender : Sender {
  std::mutex mu;
  std::vector<Done> held;
  void send(OutboundMessage, Done done) override {
    std::lock_guard lock(mu);
    held.push_back(std::move(done));
  }
};
struct CountingSender : Sender {
  std::atomic<int> sent{0};
  void send(OutboundMessage m, Done done) override {
    ++sent;
    done(SendResult::sent("p-" + m.id));
  }
};

// Answers `sent` a while after the send starts, from a thread of its own (a provider that takes
// its time).
struct SlowSender : Sender {
  std::chrono::milliseconds after;
  std::atomic<int> sent{0};
  std::mutex mu;
  std::vector<std::thread> threads;
  explicit SlowSender(std::chrono::milliseconds a) : after(a) {}
  ~SlowSender() override { join(); }
  void send(OutboundMessage m, Done done) override {
    ++sent;
    std::lock_guard lock(mu);
    threads.emplace_back([this, id = m.id, done = std::move(done)] {
      std::this_thread::sleep_for(after);
      done(SendResult::sent("p-" + id));
    });
  }
  void join() {
    std::lock_guard lock(mu);
    for (auto& t : threads) {
      t.join();
    }
    threads.clear();
  }
};

// Answers every send with a retry after `after`, as a provider's 429 with its reset.
struct RateLimitedSender : Sender {
  std::chrono::milliseconds after;
  explicit RateLimitedSender(std::chrono::milliseconds a) : after(a) {}
  void send(OutboundMessage, Done done) override {
    done(SendResult::retry("429 Too Many Requests", after));
  }
};

// Pauses its account `pauses` times (X's 24-hour posting limit), then takes the reply.
struct PausingSender : Sender {
  int pauses;
  std::chrono::milliseconds after;
  std::atomic<int> calls{0};
  PausingSender(int p, std::chrono::milliseconds a) : pauses(p), after(a) {}
  void send(OutboundMessage m, Done done) override {
    done(++calls <= pauses ? SendResult::paused("429 Too Many Requests (daily limit)", after)
                           : SendResult::sent("p-" + m.id));
  }
};

// Answers every send with a throttled retry and no wait of its own (Meta's rate limits).
struct ThrottledSender : Sender {
  std::atomic<int> calls{0};
  void send(OutboundMessage, Done done) override {
    ++calls;
    done(SendResult::throttle("(#131056) pair rate limit hit"));
  }
};

// Refuses the first attempt for a while (a provider's 503), then takes the reply.
struct OnceBusySender : Sender {
  std::atomic<int> calls{0};
  void send(OutboundMessage m, Done done) override {
    done(++calls == 1 ? SendResult::retry("503 Service Unavailable")
                      : SendResult::sent("p-" + m.id));
  }
};

// Throttles the first attempt of the first reply it is handed (a provider's rate limit, with a
// wait), takes every other attempt; keeps the texts in the order it took them.
struct FirstThrottledSender : Sender {
  std::mutex mu;
  std::string first;
  std::vector<std::string> taken;
  std::atomic<int> calls{0};
  void send(OutboundMessage m, Done done) override {
    ++calls;
    bool throttle = false;
    {
      std::lock_guard lock(mu);
      if (first.empty()) {
        first = m.id;
        throttle = true;
      } else {
        taken.push_back(m.text);
      }
    }
    done(throttle ? SendResult::throttle("(#131056) pair rate limit hit",
                                         std::chrono::milliseconds(1500))
                  : SendResult::sent("p-" + m.id));
  }
  std::vector<std::string> texts() {
    std::lock_guard lock(mu);
    return taken;
  }
};

// The value of one series in /metrics, or -1 when it is not there.
long long series_value(AgentDaemon& d, const std::string& name_and_labels) {
  const std::string text = d.app->metrics().render();
  const auto at = text.find("\n" + name_and_labels + " ");
  if (at == std::string::npos) {
    return -1;
  }
  return std::stoll(text.substr(at + 1 + name_and_labels.size() + 1));
}

// Fixes the id of each reply when it is stored (as email's Message-ID) and keeps what each
// attempt was handed.
struct PlanningSender : Sender {
  std::mutex mu;
  std::vector<OutboundMessage> seen;
  std::string planned_id(std::string_view outbound_id, std::string_view) const override {
    return "<plan-" + std::string(outbound_id) + ">";
  }
  void send(OutboundMessage m, Done done) override {
    std::string id = m.planned_id;
    {
      std::lock_guard lock(mu);
      seen.push_back(std::move(m));
    }
    done(SendResult::sent(id));
  }
  std::vector<OutboundMessage> messages() {
    std::lock_guard lock(mu);
    return seen;
  }
};

std::string reply_to_first(AgentDaemon& d) {
  d.ingest("s-1", "please answer");
  d.drained();
  std::string id = claimed_id(d.claim("alice-token", "general"));
  auto r = d.act("alice-token", id, "reply", R"({"text":"answer"})");
  REQUIRE(r.status == 202);
  return std::string(parse(r.body).at("id").as_string());
}
}  // namespace

TEST_CASE("a permanently failed send is recorded as failed with the provider's error") {
  AgentDaemon d(nullptr, [](App& app) {
    app.senders().add("api", "web-form", std::make_shared<RejectingSender>());
  });
  auto out = reply_to_first(d);
  REQUIRE(eventually([&] {
    return d.rows(
               "SELECT count(*) FROM sends WHERE state='failed' AND attempts=1 AND "
               "last_error='400 recipient blocked the account'") == 1;
  }));
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE direction='outbound'") == 1);
}

// Before: a reply given up on was only logged, and nothing an operator could alert on said that
// a customer was left without an answer.
TEST_CASE("switchboard_replies_total counts a reply given up on as failed, a sent one as sent") {
  auto replies = [](const char* outcome) {
    return std::string(R"(switchboard_replies_total{channel="api",account="web-form",outcome=")") +
           outcome + "\"}";
  };
  SUBCASE("a permanent refusal") {
    AgentDaemon d(nullptr, [](App& app) {
      app.senders().add("api", "web-form", std::make_shared<RejectingSender>());
    });
    reply_to_first(d);
    REQUIRE(eventually([&] { return series_value(d, replies("failed")) == 1; }));
    CHECK(d.rows("SELECT count(*) FROM sends WHERE state='failed'") == 1);
    CHECK(series_value(d, replies("sent")) == -1);
    CHECK(series_value(d, replies("retried")) == -1);
    // The help says what each outcome is (and that an unknown one is counted elsewhere too).
    CHECK(d.app->metrics().render().find("# HELP switchboard_replies_total Agent replies") !=
          std::string::npos);
  }
  SUBCASE("sent at once") {
    AgentDaemon d(nullptr, [](App& app) {
      app.senders().add("api", "web-form", std::make_shared<CountingSender>());
    });
    reply_to_first(d);
    REQUIRE(eventually([&] { return series_value(d, replies("sent")) == 1; }));
    CHECK(series_value(d, replies("failed")) == -1);
    CHECK(series_value(d, replies("retried")) == -1);
  }
  SUBCASE("sent at the second attempt: one retry counted") {
    auto flaky = std::make_shared<OnceBusySender>();
    AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", flaky); });
    reply_to_first(d);
    REQUIRE(eventually([&] { return series_value(d, replies("sent")) == 1; }));
    CHECK(series_value(d, replies("retried")) == 1);
    CHECK(series_value(d, replies("failed")) == -1);
    CHECK(flaky->calls == 2);
  }
}

TEST_CASE("a reply accepted before a restart is sent after it") {
  auto hanging = std::make_shared<HangingSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", hanging); });
  auto out = reply_to_first(d);
  REQUIRE(eventually([&] {
    std::lock_guard lock(hanging->mu);
    return hanging->held.size() == 1;
  }));
  d.http.reset();
  d.app->stop();
  d.app.reset();
  CHECK(d.rows("SELECT count(*) FROM sends WHERE state='pending'") == 1);

  auto counting = std::make_shared<CountingSender>();
  d.app = std::make_unique<App>(test_config(d.dir, d.redis.port()));
  d.app->senders().add("api", "web-form", counting);
  d.app->start();
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE state='sent' AND provider_id='p-" + out +
                  "'") == 1;
  }));
  CHECK(counting->sent == 1);
}

// Before: the query of due sends read the parent's payload with json_extract, which fails the
// whole query on a payload that is not JSON: one such parent held every channel's replies.
TEST_CASE("a reply whose parent's payload is unreadable does not hold back the other replies") {
  auto hanging = std::make_shared<HangingSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", hanging); });
  auto out = reply_to_first(d);
  REQUIRE(eventually([&] {
    std::lock_guard lock(hanging->mu);
    return hanging->held.size() == 1;
  }));
  d.http.reset();
  d.app->stop();
  d.app.reset();
  {
    // A second pending reply, to one of our own replies (outbound, as a reply to a reply is)
    // whose stored payload is not JSON.
    storage::Db db(d.dir.file("switchboard.db"));
    auto copy = [&](const std::string& from, const std::string& id, const char* direction,
                    const char* payload) {
      db.exec("DROP TABLE IF EXISTS temp.c");
      auto st = db.prepare("CREATE TEMP TABLE c AS SELECT * FROM interactions WHERE id = ?1");
      st.bind(1, from).run();
      auto up = db.prepare(
          "UPDATE temp.c SET seq = NULL, id = ?1, external_id = ?1, direction = ?2, payload = "
          "coalesce(?3, payload)");
      up.bind(1, id).bind(2, std::string(direction));
      if (payload != nullptr) {
        up.bind(3, std::string(payload));
      }
      up.run();
      db.exec("INSERT INTO interactions SELECT * FROM temp.c");
    };
    copy(out, "01BADPARENT0000000000000000", "outbound", "not json");
    copy(out, "01BADREPLY00000000000000000", "outbound", nullptr);
    db.exec(
        "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
        "next_attempt_at, created_at, updated_at) VALUES ('01BADREPLY00000000000000000', "
        "'01BADPARENT0000000000000000', 'api', 'web-form', 'pending', 0, 0, 0, 0)");
  }
  auto counting = std::make_shared<CountingSender>();
  d.app = std::make_unique<App>(test_config(d.dir, d.redis.port()));
  d.app->senders().add("api", "web-form", counting);
  d.app->start();
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE state='sent' AND provider_id='p-" + out +
                  "'") == 1;
  }));
}

TEST_CASE(
    "a reply's planned id is stored with it and handed to its attempts - a later reply gets our "
    "earlier replies its parent names with the ids they went out with") {
  auto planning = std::make_shared<PlanningSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", planning); });
  auto first = reply_to_first(d);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE interaction_id = '" + first +
               "' AND planned_id = '<plan-" + first + ">'") == 1);
  REQUIRE(eventually([&] { return planning->messages().size() == 1; }));
  CHECK(planning->messages()[0].planned_id == "<plan-" + first + ">");
  CHECK(planning->messages()[0].earlier_ids.empty());
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE state = 'sent' AND interaction_id = '" + first +
                  "'") == 1;
  }));

  // A parent that names our replies, as one of ours does (the reply route stores their ids in
  // in_reply_to and references): our first reply, one stored by an older build (no planned id,
  // sent as its provider id) and one never stored. The parent is marked outbound: only ours name
  // replies by interaction id, and only theirs are read for them.
  d.ingest("s-2", "one more question");
  d.drained();
  std::string parent = claimed_id(d.claim("alice-token", "general"));
  {
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec(
        "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
        "next_attempt_at, created_at, updated_at, provider_id) VALUES "
        "('01OLDREPLY', 'x', 'api', 'web-form', 'sent', 1, 5, 5, 5, '<old@example.com>')");
    auto st = db.prepare(
        "UPDATE interactions SET direction = 'outbound', "
        "payload = json_set(payload, '$.in_reply_to', ?2, "
        "'$.references', json_array('01OLDREPLY', '<a@customer.example>', ?2, '01NEVER')) "
        "WHERE id = ?1");
    st.bind(1, parent).bind(2, first).run();
  }
  auto r = d.act("alice-token", parent, "reply", R"({"text":"second answer"})");
  REQUIRE(r.status == 202);
  std::string second(parse(r.body).at("id").as_string());
  REQUIRE(eventually([&] { return planning->messages().size() == 2; }));
  auto m = planning->messages()[1];
  CHECK(m.id == second);
  CHECK(m.planned_id == "<plan-" + second + ">");
  CHECK(m.earlier_ids == std::map<std::string, std::string>{{first, "<plan-" + first + ">"},
                                                            {"01OLDREPLY", "<old@example.com>"}});
}

TEST_CASE("a send result the database refuses is kept and written again: the reply goes once") {
  auto counting = std::make_shared<CountingSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", counting); });
  {
    // Every write of a send's result fails (a full disk, say); the reply's own rows are inserts.
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec(
        "CREATE TRIGGER full_disk BEFORE UPDATE ON sends BEGIN SELECT RAISE(ABORT, 'disk full'); "
        "END");
  }
  auto out = reply_to_first(d);
  REQUIRE(eventually([&] { return counting->sent >= 1; }));
  // The row is still pending and due while its result waits to be written: it must not be
  // handed to the sender again meanwhile (before: sent again on every pass, thousands of times).
  std::this_thread::sleep_for(std::chrono::seconds(1));
  CHECK(counting->sent == 1);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE state='pending'") == 1);
  {
    storage::Db db(d.dir.file("switchboard.db"));
    db.exec("DROP TRIGGER full_disk");
  }
  REQUIRE(eventually([&] {
    return d.rows(
               "SELECT count(*) FROM sends WHERE state='sent' AND attempts=1 AND provider_id='p-" +
               out + "'") == 1;
  }));
  CHECK(counting->sent == 1);
}

TEST_CASE("shutdown waits a while for a send in flight: its result is recorded, not sent again") {
  auto slow = std::make_shared<SlowSender>(std::chrono::milliseconds(500));
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", slow); });
  auto out = reply_to_first(d);
  REQUIRE(eventually([&] { return slow->sent == 1; }));
  d.http.reset();
  d.app->stop();  // SIGTERM while the provider is still at it
  slow->join();   // (its answer has been given before the App goes)
  d.app.reset();
  // Before: the answer came after the io thread had stopped and was dropped; the row stayed
  // pending and the reply went out a second time after the restart.
  CHECK(d.rows("SELECT count(*) FROM sends WHERE state='sent' AND provider_id='p-" + out + "'") ==
        1);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE state='pending'") == 0);
}

TEST_CASE("a stalled account holds only its share of sends: another account's reply goes out") {
  auto hanging = std::make_shared<HangingSender>();  // a stalled SMTP server, say
  auto counting = std::make_shared<CountingSender>();
  AgentDaemon d(nullptr, [&](App& app) {
    app.senders().add("api", "web-form", hanging);
    app.senders().add("api", "shop", counting);
  });
  std::string stalled = d.ingest("h-1", "answered through a stalled provider");
  std::string fine =
      d.ingest("h-2", "answered through a working one", "bob@example.com", "", "shop");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == stalled);
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == fine);
  constexpr int kStalled = 70;  // more than the 64 rows the send loop reads at a time
  for (int i = 0; i < kStalled; ++i) {
    REQUIRE(d.act("alice-token", stalled, "reply", R"({"text":"answer"})").status == 202);
  }
  REQUIRE(d.act("alice-token", fine, "reply", R"({"text":"answer"})").status == 202);
  // Before: the stalled rows, pending and due while in flight, filled every read of due sends,
  // and this one was never handed to its sender.
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE account='shop' AND state='sent'") == 1;
  }));
  CHECK(counting->sent == 1);
  {
    std::lock_guard lock(hanging->mu);
    CHECK(hanging->held.size() == 16);  // its account's share (SendPolicy), not every slot
  }
  // The provider answers again: the rest go out, each once.
  std::size_t answered = 0;
  REQUIRE(eventually([&] {
    std::vector<Sender::Done> batch;
    {
      std::lock_guard lock(hanging->mu);
      batch.swap(hanging->held);
    }
    for (auto& done : batch) {
      done(SendResult::sent("p"));
    }
    answered += batch.size();
    return d.rows("SELECT count(*) FROM sends WHERE account='web-form' AND state='sent'") ==
           kStalled;
  }));
  CHECK(answered == kStalled);
}

TEST_CASE("redis down: claims answer 503 naming redis, and back when it returns") {
  AgentDaemon d;
  d.redis.stop();
  auto r = d.claim("alice-token", "general");
  CHECK(r.status == 503);
  CHECK(error_message(r).find("redis") != std::string::npos);
  CHECK(d.get("alice-token", "/v1/queues").status == 503);
  d.redis.start();
  REQUIRE(eventually([&] { return d.claim("alice-token", "general").status == 204; }));
}

TEST_CASE("a provider's wait 10 days ahead holds the reply an hour at most, not 10 days") {
  // A reset in the provider's clock, or milliseconds sent as seconds: the send loop bounds it
  // (core/provider_wait.hpp), as it would wait no longer than its own back-off otherwise.
  AgentDaemon d(nullptr, [](App& app) {
    app.senders().add("api", "web-form",
                      std::make_shared<RateLimitedSender>(std::chrono::hours(24 * 10)));
  });
  std::int64_t before = now_ms();
  reply_to_first(d);
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE state='pending' AND attempts=1") == 1;
  }));
  std::int64_t next = d.rows("SELECT next_attempt_at FROM sends");
  CHECK(next <= now_ms() + 3600 * 1000);
  CHECK(next >= before + 3600 * 1000);  // the cap, not the first back-off of a second
}

TEST_CASE(
    "a failing read of the due sends is logged once with its consequence, and once when it works "
    "again, not at every pass") {
  LogCapture log("agents");  // before the daemon, which logs from its own threads
  std::string db_path;
  // The table the send loop reads is gone from its start: every pass fails, a second apart.
  AgentDaemon d([&](config::Config& c) { db_path = c.storage.path; },
                [&](App&) { storage::Db(db_path).exec("ALTER TABLE sends RENAME TO sends_away"); });
  // Nothing to await: what is checked is that the passes meanwhile added no line.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));  // 4 passes or so
  auto failed = log.lines_with("reading due sends failed");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].find("error [agents] reading due sends failed: ") == 0);
  CHECK(failed[0].find("no such table: sends; replies wait, tried again every second") !=
        std::string::npos);
  storage::Db(db_path).exec("ALTER TABLE sends_away RENAME TO sends");
  CHECK(eventually([&] { return !log.lines_with("reading due sends works again").empty(); }));
  d.app.reset();
  CHECK(log.lines_with("reading due sends failed").size() == 1);
}

TEST_CASE(
    "a provider's pause of the whole account spends none of the reply's attempts, however many "
    "times it comes") {
  // More pauses than SendPolicy::max_attempts (8): each a second, the shortest provider wait.
  auto pausing = std::make_shared<PausingSender>(9, std::chrono::milliseconds(1));
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", pausing); });
  reply_to_first(d);
  REQUIRE(eventually([&] { return pausing->calls >= 1; }));
  REQUIRE(eventually([&] {
    return d.rows(
               "SELECT count(*) FROM sends WHERE state='pending' AND attempts=0 AND "
               "last_error='429 Too Many Requests (daily limit)'") == 1;
  }));
  REQUIRE(eventually([&] { return d.rows("SELECT count(*) FROM sends WHERE state='sent'") == 1; },
                     std::chrono::seconds(20)));
  CHECK(pausing->calls == 10);
  CHECK(d.rows("SELECT attempts FROM sends") == 1);
}

TEST_CASE("a provider's pause of the whole account may last a day, bounded a little past it") {
  SUBCASE("20 hours: as asked, past the hour of other provider waits") {
    auto pausing = std::make_shared<PausingSender>(1, std::chrono::hours(20));
    AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", pausing); });
    std::int64_t before = now_ms();
    reply_to_first(d);
    REQUIRE(eventually([&] { return pausing->calls == 1; }));
    REQUIRE(eventually(
        [&] { return d.rows("SELECT count(*) FROM sends WHERE last_error != ''") == 1; }));
    std::int64_t next = d.rows("SELECT next_attempt_at FROM sends");
    CHECK(next >= before + 20 * 3600 * 1000LL);
    CHECK(next <= now_ms() + 20 * 3600 * 1000LL);
    CHECK(d.rows("SELECT attempts FROM sends") == 0);
    // The send loop's passes (a second apart) bring forward a row due later than any wait they
    // schedule, as after a clock set back: a pause is such a wait, and stays.
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    CHECK(d.rows("SELECT next_attempt_at FROM sends") == next);
  }
  SUBCASE("10 days: a day and 5 minutes") {
    auto pausing = std::make_shared<PausingSender>(1, std::chrono::hours(24 * 10));
    AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", pausing); });
    std::int64_t before = now_ms();
    reply_to_first(d);
    REQUIRE(eventually(
        [&] { return d.rows("SELECT count(*) FROM sends WHERE last_error != ''") == 1; }));
    std::int64_t next = d.rows("SELECT next_attempt_at FROM sends");
    CHECK(next >= before + (24 * 60 + 5) * 60 * 1000LL);
    CHECK(next <= now_ms() + (24 * 60 + 5) * 60 * 1000LL);
  }
}

TEST_CASE(
    "a throttled attempt with no wait of the provider's waits a minute, not a second, and the "
    "attempts span an hour") {
  auto throttled = std::make_shared<ThrottledSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", throttled); });
  std::int64_t before = now_ms();
  reply_to_first(d);
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE state='pending' AND attempts=1") == 1;
  }));
  std::int64_t next = d.rows("SELECT next_attempt_at FROM sends");
  CHECK(next >= before + 60 * 1000);
  CHECK(next <= now_ms() + 60 * 1000);
  CHECK(throttled->calls == 1);

  // The whole schedule: 1, 2, 4, 8, 15, 15, 15 minutes between the 8 attempts; the ordinary
  // back-off (a 503) gives up after about 2 minutes.
  agents::SendPolicy policy;
  std::chrono::milliseconds slow{0}, fast{0};
  for (int attempt = 1; attempt < policy.max_attempts; ++attempt) {
    slow += agents::send_backoff(policy, attempt, true);
    fast += agents::send_backoff(policy, attempt, false);
  }
  CHECK(slow == std::chrono::minutes(60));
  CHECK(fast == std::chrono::seconds(127));
}

// Before: the send loop took due replies by next_attempt_at alone, so a reply written while an
// earlier one of the same chat waited for its retry went at once, and the customer read the
// answers out of order.
TEST_CASE(
    "a reply waits behind an earlier one of its conversation that waits for a retry, while "
    "another conversation's reply goes at once") {
  auto sender = std::make_shared<FirstThrottledSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", sender); });
  std::string ann = d.ingest("o-1", "my order");
  std::string bob = d.ingest("o-2", "my refund", "bob@example.com");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == ann);
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == bob);
  REQUIRE(d.act("alice-token", ann, "reply", R"({"text":"first"})").status == 202);
  REQUIRE(eventually([&] {
    return d.rows("SELECT count(*) FROM sends WHERE state='pending' AND attempts=1") == 1;
  }));
  REQUIRE(d.act("alice-token", ann, "reply", R"({"text":"second"})").status == 202);
  REQUIRE(d.act("alice-token", bob, "reply", R"({"text":"other chat"})").status == 202);
  REQUIRE(eventually([&] { return d.rows("SELECT count(*) FROM sends WHERE state='sent'") == 3; },
                     std::chrono::seconds(10)));
  CHECK(sender->texts() == std::vector<std::string>{"other chat", "first", "second"});
  CHECK(sender->calls == 4);
  CHECK(d.rows("SELECT count(*) FROM sends WHERE attempts=2") == 1);
}

TEST_CASE(
    "a reply waits behind an earlier one of its conversation whose marked attempt is out, and "
    "goes once that one is answered") {
  // A sender that marks its attempts (Telegram, Meta, X, Mastodon) and a provider that takes
  // its time: the first reply's request is out when the second is written.
  struct MarkingHangingSender : HangingSender {
    std::vector<std::string> texts;
    bool marks_attempts() const override { return true; }
    void send(OutboundMessage m, Done done) override {
      std::lock_guard lock(mu);
      texts.push_back(m.text);
      held.push_back(std::move(done));
    }
  };
  auto sender = std::make_shared<MarkingHangingSender>();
  AgentDaemon d(nullptr, [&](App& app) { app.senders().add("api", "web-form", sender); });
  std::string ann = d.ingest("o-1", "my order");
  d.drained();
  REQUIRE(claimed_id(d.claim("alice-token", "general")) == ann);
  REQUIRE(d.act("alice-token", ann, "reply", R"({"text":"first"})").status == 202);
  REQUIRE(eventually([&] {
    std::lock_guard lock(sender->mu);
    return sender->held.size() == 1;
  }));
  REQUIRE(d.act("alice-token", ann, "reply", R"({"text":"second"})").status == 202);
  // Longer than a pass of the loop: the second is not handed over while the first is out.
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  Sender::Done first;
  {
    std::lock_guard lock(sender->mu);
    REQUIRE(sender->texts == std::vector<std::string>{"first"});
    first = std::move(sender->held.front());
    sender->held.clear();
  }
  first(SendResult::sent("p-1"));
  REQUIRE(eventually([&] {
    std::lock_guard lock(sender->mu);
    return sender->held.size() == 1;
  }));
  {
    std::lock_guard lock(sender->mu);
    CHECK(sender->texts == std::vector<std::string>{"first", "second"});
    sender->held.front()(SendResult::sent("p-2"));
    sender->held.clear();
  }
  REQUIRE(eventually([&] { return d.rows("SELECT count(*) FROM sends WHERE state='sent'") == 2; }));
}
