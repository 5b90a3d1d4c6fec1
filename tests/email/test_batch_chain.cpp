// BatchChain against a real Writer + Store on a temporary database, without a server: batches
// reach the store one at a time, in UID order, each with the cursor of its last UID; when a
// commit fails (the database is full) nothing after it is submitted and the cursor stays at the
// last committed batch (DESIGN-NOTES invariant 2).
#include <doctest/doctest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <future>
#include <mutex>

#include "channels/email/batch_chain.hpp"
#include "storage/sqlite.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/email/email_daemon.hpp"
#include "tests/email/store_forwarder.hpp"

using namespace sb;
using namespace std::chrono_literals;

namespace {

// Hands every submission to the real store and records what it saw. `fill_at`: before that
// submission (1-based), the writer's connection is limited to the pages it has, so the
// submission's inserts fail with SQLITE_FULL, as on a full disk.
class Recording : public test::StoreForwarder {
 public:
  Recording(storage::Writer& w, storage::Store& s) : StoreForwarder(s), writer_(w) {}

  void submit(std::vector<Inbound> items, std::optional<CursorUpdate> cursor, Done done) override {
    {
      std::lock_guard lock(mu_);
      overlap = overlap || outstanding_ > 0;
      ++outstanding_;
      cursors.push_back(cursor ? cursor->value : "");
      if (cursors.size() == fill_at) {
        writer_.submit({[](storage::Db& db) { db.exec("PRAGMA max_page_count = 1"); }, {}});
      }
    }
    store_.submit(std::move(items), std::move(cursor),
                  [this, done = std::move(done)](std::vector<IngestOutcome> out) {
                    {
                      std::lock_guard lock(mu_);
                      --outstanding_;
                    }
                    done(std::move(out));
                  });
  }

  std::vector<std::string> recorded() {
    std::lock_guard lock(mu_);
    return cursors;
  }

  std::size_t fill_at = 0;
  bool overlap = false;  // a submission while another was outstanding

 private:
  storage::Writer& writer_;
  std::mutex mu_;
  int outstanding_ = 0;
  std::vector<std::string> cursors;
};

struct ChainFixture {
  test::TempDir dir;
  storage::Writer writer{dir.file("switchboard.db")};
  storage::Store store{writer, Rules::compile(config::defaults().routing)};
  Recording recording{writer, store};
  Metrics metrics;
  config::Imap account;
  boost::asio::io_context io;
  // Parse results and commit outcomes are posted to `io` from other threads: keep it running.
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work{io.get_executor()};
  boost::asio::thread_pool parsers{2};
  std::shared_ptr<email::BatchChain> chain;

  ChainFixture() {
    account.name = "support";
    writer.start();
    chain = std::make_shared<email::BatchChain>(io, parsers, recording, metrics, account, "INBOX",
                                                "[email:support] INBOX:", email::Cursor{7});
  }
  ~ChainFixture() {
    parsers.join();
    writer.stop();
  }
  // Five batches of 40 messages, UIDs 1..200 with every tenth UID missing (expunged).
  void add_batches() {
    std::uint64_t uid = 0;
    for (int b = 0; b < 5; ++b) {
      std::vector<email::imap::FetchedMessage> batch;
      while (batch.size() < 40) {
        if (++uid % 10 == 0) {
          continue;
        }
        std::string raw = test::test_email(static_cast<int>(uid), static_cast<int>(uid % 7));
        batch.push_back({uid, raw.size(), raw});
      }
      chain->add(std::move(batch));
    }
  }
  void run_until(const std::function<bool()>& done) {
    auto until = std::chrono::steady_clock::now() + 30s;
    while (!done() && std::chrono::steady_clock::now() < until) {
      io.run_one_for(50ms);
    }
  }
  std::int64_t count(const std::string& sql) {
    return test::count_rows(dir.file("switchboard.db"), sql);
  }
};

}  // namespace

TEST_CASE("batch chain: batches are stored one at a time, in UID order, each with its cursor") {
  ChainFixture f;
  // Both parser threads wait at a gate until all five batches are queued: otherwise the first
  // batch can be parsed and committed while the test still builds the others.
  std::promise<void> open;
  std::shared_future<void> gate = open.get_future().share();
  for (int i = 0; i < 2; ++i) {
    boost::asio::post(f.parsers, [gate] { gate.wait(); });
  }
  f.add_batches();
  CHECK(f.chain->pending() == 5);
  open.set_value();
  f.run_until([&] { return f.chain->pending() == 0; });
  REQUIRE(f.chain->pending() == 0);
  CHECK_FALSE(f.chain->failed());
  CHECK_FALSE(f.recording.overlap);
  // 40 UIDs per batch out of each 44 (every tenth missing): 1..44, 45..88, ...
  CHECK(f.recording.recorded() ==
        std::vector<std::string>{"7:44", "7:88", "7:133", "7:177", "7:222"});
  CHECK(f.store.cursor("support", "INBOX") == "7:222");
  CHECK(f.count("SELECT count(*) FROM interactions") == 200);
}

TEST_CASE("batch chain: a failed commit stops the chain - the cursor stays with the stored data") {
  ChainFixture f;
  f.recording.fill_at = 2;
  f.add_batches();
  f.run_until([&] { return static_cast<bool>(f.chain->failed()); });
  REQUIRE(f.chain->failed());
  // Later batches finish parsing after the failure; none of them may be submitted.
  auto settle = std::chrono::steady_clock::now() + 500ms;
  while (std::chrono::steady_clock::now() < settle) {
    f.io.run_one_for(20ms);
  }
  CHECK(f.recording.recorded() == std::vector<std::string>{"7:44", "7:88"});
  CHECK(f.store.cursor("support", "INBOX") == "7:44");
  CHECK(f.count("SELECT count(*) FROM interactions") == 40);
  CHECK_FALSE(f.chain->at_writer());
}

TEST_CASE("batch chain: a store that fails a batch inside submit() (writer stopped) ends it") {
  ChainFixture f;
  f.writer.stop();  // jobs submitted from now on fail at once, inside submit()
  f.add_batches();
  f.run_until([&] { return static_cast<bool>(f.chain->failed()); });
  REQUIRE(f.chain->failed());
  CHECK(f.recording.recorded() == std::vector<std::string>{"7:44"});
  CHECK_FALSE(f.chain->at_writer());
  CHECK_FALSE(f.store.cursor("support", "INBOX"));
}

TEST_CASE("batch chain: a message cut at the fetch cap is stored flagged truncated and malformed") {
  ChainFixture f;
  std::string raw = test::test_email(1, 1);
  std::vector<email::imap::FetchedMessage> batch;
  batch.push_back({1, raw.size() + 100000, raw.substr(0, raw.size() - 4), true});
  std::string other = test::test_email(2, 1);
  batch.push_back({2, other.size(), other});
  f.chain->add(std::move(batch));
  f.run_until([&] { return f.chain->pending() == 0; });
  REQUIRE(f.chain->pending() == 0);
  CHECK(f.count("SELECT count(*) FROM interactions") == 2);
  CHECK(f.count("SELECT count(*) FROM interactions WHERE payload LIKE "
                "'%\"flags\":[\"malformed\",\"truncated\"]%'") == 1);
  CHECK(f.store.cursor("support", "INBOX") == "7:2");
}

TEST_CASE(
    "batch chain: a batch that commits after its session ended leaves `after` due in its cursor") {
  // The session drops (fetch error, kick) while a batch is at the writer: the session closes the
  // chain and waits for that commit. Its cursor says `after = seen | move:` is still due for its
  // UIDs, so the next session (of this process or the next one) applies it.
  ChainFixture f;
  f.account.after = "seen";
  std::promise<void> open;
  std::shared_future<void> gate = open.get_future().share();
  f.writer.submit({[gate](storage::Db&) { gate.wait(); }, {}});  // holds the writer
  std::string raw = test::test_email(1, 1);
  std::vector<email::imap::FetchedMessage> batch;
  batch.push_back({1, raw.size(), raw});
  f.chain->add(std::move(batch));
  f.run_until([&] { return f.chain->at_writer(); });
  REQUIRE(f.chain->at_writer());
  f.chain->close();
  open.set_value();
  f.run_until([&] { return !f.chain->at_writer(); });
  REQUIRE_FALSE(f.chain->at_writer());
  CHECK(f.store.cursor("support", "INBOX") == "7:1:0");
  CHECK(f.chain->take_committed().empty());
}

TEST_CASE(
    "batch chain: `after` settled rides on the next batch's cursor - once caught up it is written "
    "on its own, and only then") {
  ChainFixture f;
  f.account.after = "move:Done";
  auto add = [&](std::uint64_t lo, std::uint64_t hi) {
    std::vector<email::imap::FetchedMessage> batch;
    for (std::uint64_t uid = lo; uid <= hi; ++uid) {
      std::string raw = test::test_email(static_cast<int>(uid), 1);
      batch.push_back({uid, raw.size(), raw});
    }
    f.chain->add(std::move(batch));
    f.run_until([&] { return f.chain->pending() == 0; });
    REQUIRE(f.chain->pending() == 0);
  };
  add(1, 3);
  CHECK(f.store.cursor("support", "INBOX") == "7:3:0");  // due for 1..3
  CHECK(f.chain->take_committed() == std::vector<std::vector<std::uint64_t>>{{1, 2, 3}});
  f.chain->after_applied(3);
  add(4, 5);
  CHECK(f.store.cursor("support", "INBOX") == "7:5:3");  // 1..3 done, due for 4..5
  CHECK_FALSE(f.chain->record_after());                  // nothing settled since
  f.chain->after_applied(5);
  REQUIRE(f.chain->record_after());
  f.run_until([&] { return f.chain->pending() == 0; });
  CHECK(f.store.cursor("support", "INBOX") == "7:5");
  CHECK_FALSE(f.chain->record_after());
  CHECK(f.recording.recorded() == std::vector<std::string>{"7:3:0", "7:5:3", "7:5"});
  CHECK(f.count("SELECT count(*) FROM interactions") == 5);
}

TEST_CASE("cursor: `after` still due is a third part, and an old two-part cursor means none") {
  using email::Cursor;
  auto c = email::parse_cursor("7:40");
  REQUIRE(c);
  CHECK((c->uidvalidity == 7 && c->last_uid == 40 && c->after_done == 40 && !c->after_due()));
  c = email::parse_cursor("7:40:25");
  REQUIRE(c);
  CHECK((c->last_uid == 40 && c->after_done == 25 && c->after_due()));
  CHECK(email::format_cursor(*c) == "7:40:25");
  CHECK(email::format_cursor(Cursor{7, 40, 40}) == "7:40");
  CHECK(email::format_cursor(Cursor{7}) == "7:0");
  for (const char* bad : {"7:40:41", "7:40:", "7:40:1:2", "0:40", "7", "x:1", "7:40:y", ""}) {
    CHECK_MESSAGE(!email::parse_cursor(bad), bad);
  }
}

TEST_CASE("batch chain: a placeholder is stored in the transaction that moves the cursor past it") {
  ChainFixture f;
  std::string raw = test::test_email(1, 1);
  std::vector<email::imap::FetchedMessage> batch;
  batch.push_back({1, raw.size(), raw});
  f.chain->add(std::move(batch));
  Inbound placeholder;
  placeholder.channel = "email";
  placeholder.account = "support";
  placeholder.kind = "email";
  placeholder.external_id = "<unfetchable.7.2.INBOX@switchboard.invalid>";
  placeholder.flags = {"malformed", "unfetchable"};
  f.chain->add_built(2, placeholder);
  f.run_until([&] { return f.chain->pending() == 0; });
  REQUIRE(f.chain->pending() == 0);
  CHECK(f.recording.recorded() == std::vector<std::string>{"7:1", "7:2"});
  CHECK(f.count("SELECT count(*) FROM interactions WHERE payload LIKE "
                "'%\"flags\":[\"malformed\",\"unfetchable\"]%'") == 1);
}

// Before: any mail From one of our addresses without a Reply-To naming someone else was set
// aside as a copy of our own, so a contact form mailing From support@ To support@ (the
// customer only in the body) and billing@ handing a case over to support@ were never stored;
// and a form's mail From support@ with Reply-To the customer made support@ a customer,
// "Support Team", for every submitter.
TEST_CASE(
    "batch chain: mail From us addressed to us is stored flagged from_us - a copy To a "
    "customer is set aside") {
  ChainFixture f;
  f.chain = std::make_shared<email::BatchChain>(
      f.io, f.parsers, f.recording, f.metrics, f.account, "INBOX",
      "[email:support] INBOX:", email::Cursor{7},
      std::set<std::string>{"support@example.com", "billing@example.com"});
  // A reply sent by a build before schema 25: no planned_id, its Message-ID the provider_id.
  std::promise<std::string> inserted;
  f.writer.submit({[](storage::Db& db) {
                     db.exec(
                         "INSERT INTO sends(interaction_id, parent_id, channel, account, "
                         "state, next_attempt_at, provider_id, created_at, updated_at) "
                         "VALUES('out-1', 'in-1', 'email', 'outgoing', 'sent', 0, "
                         "'<sb.conv.old1@example.com>', 0, 0)");
                   },
                   [&](const std::string& error) { inserted.set_value(error); }});
  REQUIRE(inserted.get_future().get().empty());
  std::vector<std::string> raws = {
      // Its copy read back, From an address that is not ours (`from` changed since).
      "From: Help <help@example.org>\r\nTo: ann@example.net\r\nSubject: Re: order\r\n"
      "Message-ID: <sb.conv.old1@example.com>\r\n\r\nIt ships today.\r\n",
      // A contact form: From and To our address, no Reply-To.
      "From: Support Team <support@example.com>\r\nTo: support@example.com\r\n"
      "Subject: Contact form\r\nMessage-ID: <form-1@shop.example.com>\r\n\r\n"
      "Name: Dan\r\nEmail: dan@example.org\r\nPlease call me back.\r\n",
      // Another account of the daemon handing over, Cc to us.
      "From: Billing <billing@example.com>\r\nTo: Ann <ann@example.net>\r\n"
      "Cc: support@example.com\r\nSubject: Fwd: refund\r\n"
      "Message-ID: <handoff-1@example.com>\r\n\r\nSupport, please take this one.\r\n",
      // A form with Reply-To the customer.
      "From: Support Team <support@example.com>\r\nReply-To: Carol <carol@example.org>\r\n"
      "To: support@example.com\r\nSubject: Contact form\r\n"
      "Message-ID: <form-2@shop.example.com>\r\n\r\nWhere is my order?\r\n",
      // A colleague's Bcc copy of mail to a customer: ours, set aside.
      "From: Support Team <support@example.com>\r\nTo: bob@example.net\r\n"
      "Subject: Your refund\r\nMessage-ID: <bcc-1@mail.example.com>\r\n\r\nDone today.\r\n",
  };
  std::vector<email::imap::FetchedMessage> batch;
  std::uint64_t uid = 0;
  for (const auto& raw : raws) {
    batch.push_back({++uid, raw.size(), raw});
  }
  f.chain->add(std::move(batch));
  f.run_until([&] { return f.chain->pending() == 0; });
  REQUIRE(f.chain->pending() == 0);
  CHECK(f.store.cursor("support", "INBOX") == "7:5");
  auto stored = [&](const std::string& id) {
    return f.count(
        "SELECT count(*) FROM interactions i JOIN outbox o ON o.interaction_id = i.id "
        "WHERE i.external_id = '" +
        id + "' AND i.payload LIKE '%\"from_us\"%'");
  };
  CHECK(stored("<form-1@shop.example.com>") == 1);
  CHECK(stored("<handoff-1@example.com>") == 1);
  CHECK(stored("<form-2@shop.example.com>") == 1);
  CHECK(
      f.count("SELECT count(*) FROM interactions WHERE external_id = '<bcc-1@mail.example.com>'") ==
      0);
  CHECK(f.count("SELECT count(*) FROM interactions WHERE external_id = "
                "'<sb.conv.old1@example.com>'") == 0);
  CHECK(f.count("SELECT count(*) FROM interactions") == 3);
  // No customer for our addresses: the form without Reply-To and the handoff have none, Carol
  // is the second form's.
  CHECK(f.count("SELECT count(*) FROM identities WHERE value IN ('support@example.com', "
                "'billing@example.com')") == 0);
  CHECK(
      f.count("SELECT count(*) FROM interactions WHERE customer_id IS NULL OR customer_id = ''") ==
      2);
  CHECK(f.count("SELECT count(*) FROM interactions i JOIN identities d ON d.customer_id = "
                "i.customer_id WHERE i.external_id = '<form-2@shop.example.com>' AND d.value = "
                "'carol@example.org'") == 1);
}
