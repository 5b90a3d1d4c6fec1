// Schema migrations: an older file is upgraded in place, keeping what it holds; a file from a
// newer binary is refused with a message that says what to do.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "routing/rules.hpp"
#include "storage/customers.hpp"
#include "storage/idn_emails.hpp"
#include "storage/padded_identities.hpp"
#include "storage/reply_order.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/support/harness.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;

TEST_CASE("a version-4 file is upgraded: undelivered outbox rows keep their seq, op_id goes") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 4);
    db.exec(
        "INSERT INTO outbox(seq, op_id, interaction_id, queue, priority, created_at) VALUES "
        "(41, 'I1', 'I1', 'general', 'normal', 1), (42, 'I2', 'I2', 'billing', 'high', 2)");
  }
  storage::Writer writer(path);  // migrates
  storage::Db db(path, true);
  auto version = db.prepare("SELECT version FROM schema_version");
  REQUIRE(version.step());
  CHECK(version.int64(0) == storage::current_schema_version());
  version.reset();
  auto rows = db.prepare("SELECT seq, interaction_id, queue, priority FROM outbox ORDER BY seq");
  REQUIRE(rows.step());
  CHECK(rows.int64(0) == 41);
  CHECK(rows.text(1) == "I1");
  REQUIRE(rows.step());
  CHECK(rows.int64(0) == 42);
  CHECK(rows.text(2) == "billing");
  CHECK(rows.text(3) == "high");
  CHECK_FALSE(rows.step());
  rows.reset();
  CHECK_THROWS(db.prepare("SELECT op_id FROM outbox"));
}

TEST_CASE("after the upgrade an emptied outbox never reuses a seq (the relay's watermark)") {
  test::TempDir dir;
  storage::Db db(dir.file("old.db"));
  storage::migrate(db, 4);
  storage::migrate(db);
  auto add = [&](const char* iid) {
    auto ins = db.prepare(
        "INSERT INTO outbox(interaction_id, queue, priority, created_at) VALUES "
        "(?1, 'general', 'normal', 1)");
    ins.bind(1, std::string(iid)).run();
    auto seq = db.prepare("SELECT seq FROM outbox WHERE interaction_id = ?1");
    seq.bind(1, std::string(iid));
    REQUIRE(seq.step());
    return seq.int64(0);
  };
  auto first = add("I8");
  db.exec("DELETE FROM outbox");  // the relay delivered everything
  CHECK(add("I9") > first);
}

TEST_CASE("a file written by a newer switchboard is refused with a clear message") {
  test::TempDir dir;
  std::string path = dir.file("new.db");
  {
    storage::Db db(path);
    storage::migrate(db);
    db.exec("UPDATE schema_version SET version = 999");
  }
  try {
    storage::Writer writer(path);
    FAIL("a newer file was opened");
  } catch (const std::exception& e) {
    std::string msg = e.what();
    CHECK(msg.find("schema version 999") != std::string::npos);
    CHECK(msg.find("newer than this switchboard understands") != std::string::npos);
  }
}

TEST_CASE("a version-5 file is upgraded: customers keep their rows, external ids stay unique") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 5);
    db.exec(
        "INSERT INTO customers(id, external_id, name, tier, tags, created_at, updated_at) VALUES "
        "('C1', 'crm-1', 'Ann Lee', 'vip', '[\"b2b\"]', 1, 2), ('C2', NULL, '', '', '[]', 3, 3)");
  }
  storage::Writer writer(path);  // migrates
  storage::Db db(path);
  auto rows = db.prepare(
      "SELECT id, coalesce(external_id, '-'), name, tier, tags, created_at, updated_at "
      "FROM customers ORDER BY id");
  REQUIRE(rows.step());
  CHECK(rows.text(0) == "C1");
  CHECK(rows.text(1) == "crm-1");
  CHECK(rows.text(2) == "Ann Lee");
  CHECK(rows.text(3) == "vip");
  CHECK(rows.text(4) == "[\"b2b\"]");
  CHECK(rows.int64(5) == 1);
  CHECK(rows.int64(6) == 2);
  REQUIRE(rows.step());
  CHECK(rows.text(0) == "C2");
  CHECK(rows.text(1) == "-");
  CHECK_FALSE(rows.step());
  rows.reset();
  // Any number of customers without an external id; a set one stays unique, and its lookup
  // uses the partial index.
  db.exec(
      "INSERT INTO customers(id, name, created_at, updated_at) VALUES ('C3', '', 4, 4), "
      "('C4', '', 5, 5)");
  CHECK_THROWS(
      db.exec("INSERT INTO customers(id, external_id, created_at, updated_at) VALUES "
              "('C5', 'crm-1', 6, 6)"));
  auto plan = db.prepare("EXPLAIN QUERY PLAN SELECT id FROM customers WHERE external_id = ?1");
  REQUIRE(plan.step());
  CHECK(plan.text(3).find("customers_by_external_id") != std::string::npos);
}

TEST_CASE("the 4-hour call sweep finds pending calls through their partial index, not a scan") {
  test::TempDir dir;
  storage::Writer writer(dir.file("sb.db"));  // migrates
  storage::Db db(dir.file("sb.db"));
  // The sweep's own query (storage/call_sweep.cpp).
  auto plan = db.prepare(
      "EXPLAIN QUERY PLAN SELECT id, channel, account, external_id, order_key FROM interactions "
      "WHERE state = 'pending_call' AND last_event_at < ?1");
  REQUIRE(plan.step());
  CHECK_MESSAGE(plan.text(3).find("interactions_pending_calls") != std::string::npos, plan.text(3));
}

TEST_CASE("the release of held calls finds them through their partial index") {
  test::TempDir dir;
  storage::Writer writer(dir.file("sb.db"));  // migrates
  storage::Db db(dir.file("sb.db"));
  // The release's own query (storage/call_sweep.cpp).
  auto plan = db.prepare(
      "EXPLAIN QUERY PLAN SELECT id, channel, account, external_id, order_key, payload FROM "
      "interactions WHERE state = 'pending_call' AND held = 1 AND received_at <= ?1");
  REQUIRE(plan.step());
  CHECK_MESSAGE(plan.text(3).find("interactions_held_calls") != std::string::npos, plan.text(3));
}

TEST_CASE("a version-8 file is upgraded: an X user stored before it is found by the username") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 8);
    // A customer a message created: the X user id, with the username it wrote under.
    db.exec("INSERT INTO customers(id, name, created_at, updated_at) VALUES ('M1', 'Ann', 1, 1)");
    db.exec(
        "INSERT INTO identities(type, value, customer_id, handle) VALUES "
        "('x', '2244994999', 'M1', 'AnnLee')");
  }
  storage::Db db(path);
  storage::migrate(db);  // as `customers import` does
  // The import's username lookup names the index, so without it this would throw.
  storage::CustomerImporter imp(db);
  imp.begin();
  std::string error;
  storage::CustomerUpsert ann{"c-1", "Ann Lee", "", {}, {{"x_handle", "annlee", "", ""}}};
  CHECK(imp.upsert(ann, error) == storage::CustomerImporter::Result::updated);
  imp.commit();
  auto st = db.prepare("SELECT external_id, name FROM customers WHERE id = 'M1'");
  REQUIRE(st.step());
  CHECK(st.text(0) == "c-1");
  CHECK(st.text(1) == "Ann Lee");
}

TEST_CASE("two processes upgrading one file at once: the second finds the work done") {
  test::TempDir dir;
  std::string path = dir.file("race.db");
  {
    storage::Db db(path);
    storage::migrate(db, 6);
  }
  storage::Db a(path), b(path);
  a.exec("BEGIN IMMEDIATE");  // a third party holds the write lock while both start
  std::promise<std::string> second;
  std::thread t([&] {
    try {
      storage::migrate(b);  // waits for the lock (busy timeout)
      second.set_value("");
    } catch (const std::exception& e) {
      second.set_value(e.what());
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  a.exec("ROLLBACK");
  std::string first;
  try {
    storage::migrate(a);
  } catch (const std::exception& e) {
    first = e.what();
  }
  t.join();
  CHECK(first == "");
  CHECK(second.get_future().get() == "");
  auto st = a.prepare("SELECT version, (SELECT count(*) FROM schema_version) FROM schema_version");
  REQUIRE(st.step());
  CHECK(st.int64(0) == storage::current_schema_version());
  CHECK(st.int64(1) == 1);
}

TEST_CASE("a version-9 file is upgraded: sends keep their rows, a reply's key is unique") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 9);
    db.exec(
        "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
        "next_attempt_at, provider_id, created_at, updated_at) VALUES "
        "('O1', 'P1', 'email', 'support', 'sent', 1, 5, 'm-1', 5, 6)");
  }
  storage::Writer writer(path);  // migrates
  storage::Db db(path);
  auto old = db.prepare(
      "SELECT parent_id, state, provider_id, agent IS NULL, idempotency_key IS NULL FROM sends "
      "WHERE interaction_id = 'O1'");
  REQUIRE(old.step());
  CHECK(old.text(0) == "P1");
  CHECK(old.text(1) == "sent");
  CHECK(old.text(2) == "m-1");
  CHECK(old.int64(3) == 1);
  CHECK(old.int64(4) == 1);
  old.reset();
  auto add = [&](const char* out, const char* parent, const char* agent, const char* key) {
    auto ins = db.prepare(
        "INSERT INTO sends(interaction_id, parent_id, channel, account, next_attempt_at, "
        "created_at, updated_at, agent, idempotency_key) VALUES "
        "(?1, ?2, 'email', 'support', 7, 7, 7, ?3, ?4)");
    ins.bind(1, out).bind(2, parent).bind(3, agent);
    if (key) {
      ins.bind(4, key);
    } else {
      ins.bind_null(4);
    }
    ins.run();
  };
  add("O2", "P1", "alice", "k-1");
  CHECK_THROWS(add("O3", "P1", "alice", "k-1"));  // the same reply made twice
  add("O4", "P1", "bob", "k-1");                  // another agent's key
  add("O5", "P2", "alice", "k-1");                // a reply to another interaction
  add("O6", "P1", "alice", nullptr);              // replies without a key, as before
  add("O7", "P1", "alice", nullptr);
  auto n = db.prepare("SELECT count(*) FROM sends");
  REQUIRE(n.step());
  CHECK(n.int64(0) == 6);
}

TEST_CASE(
    "a version-12 file is upgraded: the projected mark lies below the last unbroken run of "
    "outbox rows, and the re-projection reads by its index") {
  test::TempDir dir;
  auto mark_after = [&](const std::string& name, const char* deleted) {
    std::string path = dir.file(name);
    {
      storage::Db db(path);
      storage::migrate(db, 12);
      for (int i = 1; i <= 8; ++i) {
        db.exec(
            "INSERT INTO outbox(interaction_id, queue, priority, created_at) VALUES "
            "('I" +
            std::to_string(i) + "', 'general', 'normal', 1)");
      }
      db.exec(std::string("DELETE FROM outbox WHERE ") + deleted);
    }
    storage::Db db(path);
    storage::migrate(db);
    auto st = db.prepare("SELECT projected FROM relay_state");
    REQUIRE(st.step());
    return st.int64(0);
  };
  CHECK(mark_after("held.db", "seq BETWEEN 2 AND 5") == 5);  // 1 held; 6, 7, 8 waiting
  CHECK(mark_after("tail.db", "seq BETWEEN 2 AND 8") == 8);  // 1 held; the rest delivered
  CHECK(mark_after("empty.db", "1") == 8);                   // all delivered
  CHECK(mark_after("none.db", "0") == 0);                    // nothing delivered yet
  CHECK(mark_after("gaps.db", "seq IN (2, 3, 5, 6)") == 6);  // 1, 4 held; 7, 8 waiting
  storage::Db db(dir.file("held.db"));
  auto plan = db.prepare(
      "EXPLAIN QUERY PLAN SELECT id FROM interactions WHERE queued_seq > ?1 AND queued_seq <= ?2 "
      "AND state IN ('queued', 'claimed') ORDER BY queued_seq LIMIT 10");
  REQUIRE(plan.step());
  CHECK_MESSAGE(plan.text(3).find("interactions_by_queued_seq") != std::string::npos, plan.text(3));
}

TEST_CASE(
    "a version-15 file is upgraded: a WhatsApp status stored twice keeps one event, other events "
    "stay") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 15);
    db.exec(
        "INSERT INTO events(interaction_id, at, actor, type, detail) VALUES "
        "('O1', 5, 'whatsapp', 'provider_status', '{\"status\":\"delivered\"}'), "
        "('O1', 5, 'whatsapp', 'provider_status', '{\"status\":\"delivered\"}'), "
        "('O1', 6, 'whatsapp', 'provider_status', '{\"status\":\"read\"}'), "
        "('O1', 7, 'alice', 'claim', '{}'), ('O1', 7, 'alice', 'claim', '{}')");
  }
  storage::Writer writer(path);  // migrates
  storage::Db db(path);
  auto count = [&](const char* where) {
    auto st = db.prepare(std::string("SELECT count(*) FROM events WHERE ") + where);
    REQUIRE(st.step());
    return st.int64(0);
  };
  CHECK(count("type = 'provider_status' AND detail LIKE '%delivered%'") == 1);
  CHECK(count("type = 'provider_status' AND detail LIKE '%read%'") == 1);
  CHECK(count("type = 'claim'") == 2);  // not a provider's report: never deduplicated
  CHECK_THROWS(
      db.exec("INSERT INTO events(interaction_id, at, actor, type, detail) VALUES "
              "('O1', 6, 'whatsapp', 'provider_status', '{\"status\":\"read\"}')"));
}

// Every insert evaluates the WHERE of each partial index of its table. An IN list of three or
// more constants there is coded as a temporary B-tree, built and dropped per insert: the username
// index cost each new customer's identity about 9,000 instructions on the writer until schema 17.
TEST_CASE(
    "a version-16 file is upgraded: the username index keeps its rows, inserts build no "
    "temporary B-tree") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 16);
    db.exec(
        "INSERT INTO identities(type, value, customer_id, handle) VALUES "
        "('x', '2244994999', 'M1', 'AnnLee'), ('email', 'ann@example.com', 'M1', '')");
  }
  storage::Db db(path);
  storage::migrate(db);
  auto holders = db.prepare(storage::kUsernameHoldersSql);
  holders.bind_static(1, "x").bind_static(2, "annlee");
  REQUIRE(holders.step());
  CHECK(holders.text(4) == "2244994999");
  CHECK_FALSE(holders.step());
  for (const char* insert :
       {"INSERT OR IGNORE INTO identities(type, value, customer_id, handle) VALUES (?1, ?2, ?3, "
        "?4)",
        "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
        "conversation_id, customer_id, queue, priority, state, occurred_at, received_at, payload, "
        "queued_seq, held) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
        "?15, ?16)",
        "INSERT INTO customers(id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)"}) {
    auto program = db.prepare(std::string("EXPLAIN ") + insert);
    std::string opcodes;
    while (program.step()) {
      opcodes += program.text(1) + " ";
    }
    CAPTURE(insert);
    CHECK(opcodes.find("OpenEphemeral") == std::string::npos);
    CHECK(opcodes.find("IdxInsert") != std::string::npos);  // the program was read
  }
}

TEST_CASE(
    "a version-17 file is upgraded: the re-projection after a total loss reads the open "
    "interactions, not every one ever queued") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 17);
    // 20,000 interactions queued in seq order; all finished but three (one claimed), and one
    // queued before version 13 (no queued_seq), which this query does not read.
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
        "INSERT INTO interactions(id, channel, account, external_id, kind, direction, queue, "
        "priority, state, occurred_at, received_at, payload, queued_seq) "
        "SELECT 'I' || i, 'api', 'web', 'e' || i, 'message', 'inbound', 'general', 'normal', "
        "CASE WHEN i IN (7, 12000) THEN 'queued' WHEN i = 19990 THEN 'claimed' ELSE 'done' END, "
        "1, 1, '{}', i FROM n");
    db.exec(
        "INSERT INTO interactions(id, channel, account, external_id, kind, direction, queue, "
        "priority, state, occurred_at, received_at, payload) VALUES ('OLD', 'api', 'web', 'old', "
        "'message', 'inbound', 'general', 'normal', 'queued', 1, 1, '{}')");
  }
  storage::Writer writer(path);  // migrates
  storage::Db db(path);
  // The relay's own query (relay/relay.cpp, Reader::lost), over the whole range at once: a
  // total loss leaves Redis with mark 0.
  const char* lost =
      "SELECT i.queued_seq, i.id, i.queue, i.priority, i.conversation_id, "
      "coalesce(i.customer_id, ''), i.channel, i.kind, i.payload, i.received_at "
      "FROM interactions i "
      "WHERE i.queued_seq > ?1 AND i.queued_seq <= ?2 "
      "AND i.state IN ('queued', 'claimed') "
      "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.seq = i.queued_seq) "
      "ORDER BY i.queued_seq LIMIT ?3";
  auto plan = db.prepare(std::string("EXPLAIN QUERY PLAN ") + lost);
  REQUIRE(plan.step());
  CHECK_MESSAGE(plan.text(3).find("interactions_by_queued_seq") != std::string::npos, plan.text(3));
  plan.reset();
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db.raw(), lost, -1, &st, nullptr) == SQLITE_OK);
  sqlite3_bind_int64(st, 1, 0);
  sqlite3_bind_int64(st, 2, 20000);
  sqlite3_bind_int64(st, 3, 512);
  std::vector<std::string> ids;
  while (sqlite3_step(st) == SQLITE_ROW) {
    ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
  }
  // Each finished interaction in the range cost six VM steps: 120,000 for these.
  auto steps = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 0);
  sqlite3_finalize(st);
  CHECK(ids == std::vector<std::string>{"I7", "I12000", "I19990"});
  CHECK_MESSAGE(steps < 1000, steps);
}

TEST_CASE(
    "a version-20 file is upgraded: its pending send keeps its state and attempts and carries "
    "no attempt mark and no account pause") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 20);
    db.exec(
        "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
        "next_attempt_at, created_at, updated_at) VALUES "
        "('O1', 'P1', 'telegram', 'tg', 'pending', 0, 5, 5, 5)");
  }
  storage::Writer writer(path);  // migrates
  storage::Db db(path);
  auto st = db.prepare(
      "SELECT state, attempts, attempt_started_at IS NULL, account_paused FROM sends WHERE "
      "interaction_id = 'O1'");
  REQUIRE(st.step());
  CHECK(st.text(0) == "pending");
  CHECK(st.int64(1) == 0);
  CHECK(st.int64(2) == 1);
  CHECK(st.int64(3) == 0);
}

TEST_CASE(
    "a version-23 file is upgraded: its pending send keeps maybe_sent and its attempt mark, and "
    "knows no first uncertain attempt") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 23);
    db.exec(
        "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
        "next_attempt_at, created_at, updated_at, maybe_sent, attempt_started_at) VALUES "
        "('O1', 'P1', 'mastodon', 'social', 'pending', 1, 5, 5, 5, 1, 7)");
  }
  storage::Writer writer(path);  // migrates
  storage::Db db(path);
  auto st = db.prepare(
      "SELECT state, attempts, maybe_sent, attempt_started_at, uncertain_since IS NULL FROM sends "
      "WHERE interaction_id = 'O1'");
  REQUIRE(st.step());
  CHECK(st.text(0) == "pending");
  CHECK(st.int64(1) == 1);
  CHECK(st.int64(2) == 1);
  CHECK(st.int64(3) == 7);
  CHECK(st.int64(4) == 1);
}

TEST_CASE(
    "a version-24 file is upgraded: its sends keep their provider ids and have no planned id, "
    "so an email reply stored before is rebuilt from the account as it was") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 24);
    db.exec(
        "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
        "next_attempt_at, created_at, updated_at, provider_id) VALUES "
        "('O1', 'P1', 'email', 'support', 'sent', 1, 5, 5, 5, '<sb.c.o1@example.com>'), "
        "('O2', 'P1', 'email', 'support', 'pending', 0, 5, 5, 5, '')");
  }
  storage::Writer writer(path);  // migrates
  storage::Db db(path);
  auto st = db.prepare(
      "SELECT interaction_id, state, provider_id, planned_id FROM sends ORDER BY interaction_id");
  REQUIRE(st.step());
  CHECK(st.text(1) == "sent");
  CHECK(st.text(2) == "<sb.c.o1@example.com>");
  CHECK(st.text(3) == "");
  REQUIRE(st.step());
  CHECK(st.text(0) == "O2");
  CHECK(st.text(3) == "");
  db.exec("UPDATE sends SET planned_id = '<sb.c.o2@example.com>' WHERE interaction_id = 'O2'");
}

// The customer timeline is ordered by when things happened (storage/customers.cpp). Its pages
// must come out of interactions_by_customer in that order: a sort of the customer's rows
// ("USE TEMP B-TREE FOR ORDER BY") reads every one of them for each page, and a page after a
// cursor deep in the list must start at the cursor, not read down from the newest.
TEST_CASE(
    "a version-22 file is upgraded: the timeline's pages are read from the customer index in "
    "time order, from the cursor on") {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  {
    storage::Db db(path);
    storage::migrate(db, 22);
    // 20,000 interactions, one in ten another customer's; each arrived later and happened
    // earlier than the one before (an import of old messages, newest first).
    db.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
        "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
        "customer_id, occurred_at, received_at, payload) "
        "SELECT printf('I%05d', i), 'api', 'web', 'e' || i, 'message', 'inbound', "
        "CASE WHEN i % 10 = 0 THEN 'C2' ELSE 'C1' END, 1000000 - i, 1000000 + i, "
        "printf('I%05d', i) FROM n");
  }
  storage::Writer writer(path);  // migrates
  storage::Db db(path);
  for (const char* sql :
       {storage::kTimelineSql, storage::kTimelineAfterSql, storage::kTimelineBelowIdSql,
        // Whether a customer still has an interaction (a lookup by customer_id alone).
        "SELECT 1 FROM interactions WHERE customer_id=?1 LIMIT 1"}) {
    auto plan = db.prepare(std::string("EXPLAIN QUERY PLAN ") + sql);
    std::string text;
    while (plan.step()) {
      text += plan.text(3) + "\n";
    }
    CAPTURE(sql);
    CAPTURE(text);
    CHECK(text.find("INDEX interactions_by_customer (customer_id=?") != std::string::npos);
    CHECK(text.find("TEMP B-TREE") == std::string::npos);
    CHECK(text.find("SCAN") == std::string::npos);
  }

  // The page after I15000: I15001 on, without reading the 13,500 of C1's rows above it.
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db.raw(), storage::kTimelineAfterSql, -1, &st, nullptr) == SQLITE_OK);
  sqlite3_bind_text(st, 1, "C1", -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, 1000000 - 15000);
  sqlite3_bind_text(st, 3, "I15000", -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, 50);
  std::vector<std::string> page;
  while (sqlite3_step(st) == SQLITE_ROW) {
    page.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  }
  auto steps = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 0);
  sqlite3_finalize(st);
  REQUIRE(page.size() == 50);
  CHECK(page.front() == "I15001");
  CHECK(page[8] == "I15009");
  CHECK(page[9] == "I15011");  // I15010 is C2's
  CHECK_MESSAGE(steps < 2000, steps);

  // The first page, from the migrated file: the one that happened last, though it came first.
  auto first = db.prepare(storage::kTimelineSql);
  first.bind(1, "C1").bind(2, 2);
  REQUIRE(first.step());
  CHECK(first.text(0) == "I00001");
  REQUIRE(first.step());
  CHECK(first.text(0) == "I00002");
}

TEST_CASE("a new database and the directory made for it are the daemon user's alone") {
  test::TempDir dir;
  const std::string sub = dir.file("state");
  const std::string path = sub + "/switchboard.db";
  mode_t old = ::umask(022);
  {
    storage::Writer writer(path);  // creates, migrates, WAL
  }
  storage::Db db(path);
  db.exec("CREATE TABLE t(x)");  // the -wal file exists while a connection is open
  ::umask(old);
  namespace fs = std::filesystem;
  auto others = fs::perms::group_all | fs::perms::others_all;
  CHECK((fs::status(sub).permissions() & fs::perms::all) == fs::perms::owner_all);
  CHECK((fs::status(path).permissions() & others) == fs::perms::none);
  REQUIRE(fs::exists(path + "-wal"));
  CHECK((fs::status(path + "-wal").permissions() & others) == fs::perms::none);
  CHECK((fs::status(path + "-shm").permissions() & others) == fs::perms::none);
}

TEST_CASE("an existing database keeps the mode the operator gave it") {
  test::TempDir dir;
  const std::string path = dir.file("shared.db");
  { storage::Writer writer(path); }
  namespace fs = std::filesystem;
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read,
                  fs::perm_options::replace);
  { storage::Writer writer(path); }
  CHECK((fs::status(path).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read));
}

namespace schema_padding_test {

const char* const kNbsp = "\xC2\xA0";
const char* const kZwsp = "\xE2\x80\x8B";
const char* const kBom = "\xEF\xBB\xBF";

// A version-20 file as a daemon from before the trimming left it: e-mail addresses stored with
// the padding a paste brought (the one canonical form that kept non-ASCII characters).
void write_padded_identities(const std::string& path) {
  storage::Db db(path);
  storage::migrate(db, 20);
  db.exec(
      "INSERT INTO customers(id, name, created_at, updated_at) VALUES ('ANN', 'Ann', 1, 1), "
      "('BOB', 'Bob', 1, 1), ('CY', 'Cy', 1, 1), ('DEE', 'Dee', 1, 1), ('DEE2', 'Dee B', 1, 1), "
      "('FAY', 'Fay', 1, 1), ('GUS', 'Gus', 1, 1), ('HAL', 'Hal', 1, 1), ('HAL2', 'Hal B', 1, 1)");
  auto ins = db.prepare(
      "INSERT INTO identities(type, value, customer_id, handle) VALUES (?1, ?2, ?3, ?4)");
  auto add = [&](const std::string& type, const std::string& value, const std::string& customer,
                 const std::string& handle = "") {
    ins.bind(1, type).bind(2, value).bind(3, customer).bind(4, handle).run();
  };
  add("email", std::string("ann@example.com") + kNbsp, "ANN");  // a web form's NBSP after
  add("x", "2244994999", "ANN", "AnnLee");
  add("email", std::string(kZwsp) + "bob@example.com", "BOB");  // a zero-width space before
  add("email", std::string(kBom) + kNbsp + "cy@example.com" + kBom, "CY");  // both ends
  // The trimmed form held by another customer (made since, by a message the trimming matched
  // to nobody): left, reported.
  add("email", "dee@example.com", "DEE");
  add("email", std::string("dee@example.com") + kNbsp, "DEE2");
  // Held by the same customer: the padded row is a duplicate.
  add("email", "fay@example.com", "FAY");
  add("email", std::string(kBom) + "fay@example.com", "FAY");
  // Padding only: nothing to trim it to.
  add("email", kNbsp, "GUS");
  add("phone", "+14155550100", "GUS");
  // Two padded forms of one address, of two customers: the first in (type, value) order is
  // trimmed, the second then meets it.
  add("email", std::string("hal@example.com") + kNbsp, "HAL");
  add("email", std::string(kZwsp) + "hal@example.com", "HAL2");
}

std::vector<std::string> identity_rows(storage::Db& db) {
  std::vector<std::string> rows;
  auto st = db.prepare(
      "SELECT type || ' ' || value || ' ' || customer_id || ' ' || handle FROM identities "
      "ORDER BY customer_id, type, value");
  while (st.step()) {
    rows.push_back(st.text(0));
  }
  return rows;
}

std::vector<std::string> expected_rows() {
  return {"email ann@example.com ANN ",
          "x 2244994999 ANN AnnLee",
          "email bob@example.com BOB ",
          "email cy@example.com CY ",
          "email dee@example.com DEE ",
          std::string("email dee@example.com") + kNbsp + " DEE2 ",
          "email fay@example.com FAY ",
          std::string("email ") + kNbsp + " GUS ",
          "phone +14155550100 GUS ",
          "email hal@example.com HAL ",
          std::string("email ") + kZwsp + "hal@example.com HAL2 "};
}

}  // namespace schema_padding_test

TEST_CASE(
    "a version-20 file is upgraded: identities stored with invisible padding are trimmed, one "
    "that names another customer when trimmed is left and reported") {
  using namespace schema_padding_test;
  test::TempDir dir;
  const std::string path = dir.file("old.db");
  write_padded_identities(path);
  std::string log;
  {
    test::LogCapture capture("storage");
    storage::Writer writer(path);  // migrates
    log = capture.text();
  }
  storage::Db db(path);
  CHECK(identity_rows(db) == expected_rows());
  // One warning per pair left, naming the type, the address, both customers and the padding.
  CHECK(test::count(log, "warning ") == 3);
  CHECK(test::count(log,
                    "email dee@example.com is held by customer DEE, and customer DEE2 holds "
                    "it with invisible padding (U+00A0 after)") == 1);
  CHECK(test::count(log,
                    "email hal@example.com is held by customer HAL, and customer HAL2 holds "
                    "it with invisible padding (U+200B before)") == 1);
  CHECK(test::count(log, "customer GUS's email identity is invisible padding only (U+00A0)") == 1);
  CHECK(test::count(log, "4 trimmed, 1 dropped as duplicates of the same customer's, 3 left") == 1);
  // `customers show ann@example.com` (the query canonicalised, then looked up).
  CHECK(storage::find_customer_id(db, "email", "ann@example.com") == "ANN");
}

TEST_CASE(
    "after the padding upgrade a message from the trimmed address is the old customer's "
    "(is_new false)") {
  using namespace schema_padding_test;
  test::TempDir dir;
  const std::string path = dir.file("old.db");
  write_padded_identities(path);
  storage::Writer writer(path);  // migrates
  storage::Store store(writer, Rules::compile(config::Routing{}));
  writer.start();
  storage::Db db(path);
  int n = 0;
  // The ingest API's from.email, canonicalised as today: no padding.
  auto receive = [&](const std::string& email) {
    Inbound in;
    in.channel = "api";
    in.account = "web-form";
    in.kind = "message";
    in.external_id = "f-" + std::to_string(++n);
    in.from = Identity{"email", email, "", ""};
    in.text = "Any news?";
    std::promise<std::vector<IngestOutcome>> p;
    store.submit({in}, std::nullopt, [&](std::vector<IngestOutcome> out) { p.set_value(out); });
    auto out = p.get_future().get();
    REQUIRE(out.at(0).error == "");
    auto st = db.prepare(
        "SELECT customer_id || ' ' || json_extract(payload, '$.customer.is_new') FROM "
        "interactions WHERE id = ?1");
    st.bind(1, out.at(0).id);
    REQUIRE(st.step());
    return st.text(0);
  };
  CHECK(receive("ann@example.com") == "ANN 0");
  CHECK(receive("bob@example.com") == "BOB 0");
  CHECK(receive("cy@example.com") == "CY 0");
  CHECK(receive("fay@example.com") == "FAY 0");
  CHECK(receive("dee@example.com") == "DEE 0");  // the holder, as before the upgrade
  auto customers = db.prepare("SELECT count(*) FROM customers");
  REQUIRE(customers.step());
  CHECK(customers.int64(0) == 9);
}

TEST_CASE(
    "the padding upgrade runs in the upgrade's transaction, and a second run changes nothing") {
  using namespace schema_padding_test;
  test::TempDir dir;
  const std::string path = dir.file("old.db");
  write_padded_identities(path);
  storage::Db db(path);
  const auto before = identity_rows(db);
  // A failure after the step (the version's update refused): the file stays as it was.
  db.exec(
      "CREATE TRIGGER fail_upgrade BEFORE UPDATE ON schema_version "
      "BEGIN SELECT RAISE(ABORT, 'disk full'); END");
  CHECK_THROWS(storage::migrate(db));
  CHECK(identity_rows(db) == before);
  auto version = db.prepare("SELECT version FROM schema_version");
  REQUIRE(version.step());
  CHECK(version.int64(0) == 20);
  version.reset();
  db.exec("DROP TRIGGER fail_upgrade");
  storage::migrate(db);
  CHECK(identity_rows(db) == expected_rows());
  // Run again (the step itself, on what it left): the rows it left stay as they are.
  storage::trim_padded_identities(db);
  CHECK(identity_rows(db) == expected_rows());
}

// A version-25 file: e-mail addresses stored with the Unicode form of their domain, as a
// customer file or the ingest API gave it, before the domain took its ASCII form.
TEST_CASE(
    "a version-25 file is upgraded: e-mail domains stored in Unicode take their xn-- form, one "
    "that names another customer is left and reported") {
  test::TempDir dir;
  const std::string path = dir.file("old.db");
  const std::string buecher = "b\xC3\xBC\x63her.de";
  {
    storage::Db db(path);
    storage::migrate(db, 25);
    db.exec(
        "INSERT INTO customers(id, name, created_at, updated_at) VALUES ('ANN', 'Ann', 1, 1), "
        "('BOB', 'Bob', 1, 1), ('CY', 'Cy', 1, 1), ('CY2', 'Cy B', 1, 1), ('DEE', 'Dee', 1, 1)");
    auto ins = db.prepare("INSERT INTO identities(type, value, customer_id) VALUES (?1, ?2, ?3)");
    auto add = [&](const std::string& type, const std::string& value, const std::string& c) {
      ins.bind(1, type).bind(2, value).bind(3, c).run();
    };
    add("email", "ann@" + buecher, "ANN");  // nobody holds the new form: rewritten
    add("email", "bob@" + buecher, "BOB");  // the same customer holds it: a duplicate
    add("email", "bob@xn--bcher-kva.de", "BOB");
    add("email", "cy@xn--bcher-kva.de", "CY");  // another customer holds it: left
    add("email", "cy@" + buecher, "CY2");
    add("email", "dee@\xF0\x9F\x98\x80.com", "DEE");  // no IDNA form: left
    add("email", "eve@example.com", "DEE");
  }
  std::string log;
  {
    test::LogCapture capture("storage");
    storage::Writer writer(path);  // migrates
    log = capture.text();
  }
  storage::Db db(path);
  std::vector<std::string> rows;
  auto st =
      db.prepare("SELECT value || ' ' || customer_id FROM identities ORDER BY customer_id, value");
  while (st.step()) {
    rows.push_back(st.text(0));
  }
  CHECK(rows == std::vector<std::string>{"ann@xn--bcher-kva.de ANN", "bob@xn--bcher-kva.de BOB",
                                         "cy@xn--bcher-kva.de CY", "cy@" + buecher + " CY2",
                                         "dee@\xF0\x9F\x98\x80.com DEE", "eve@example.com DEE"});
  CHECK(test::count(log, "warning ") == 2);
  CHECK(test::count(log, "email cy@xn--bcher-kva.de is held by customer CY, and customer CY2") ==
        1);
  CHECK(test::count(log, "1 rewritten to its ASCII form, 1 dropped") == 1);
  CHECK(storage::find_customer_id(db, "email", "ann@xn--bcher-kva.de") == "ANN");
  // Run again: nothing more changes.
  storage::ascii_email_domains(db);
  std::vector<std::string> again;
  st.reset();
  while (st.step()) {
    again.push_back(st.text(0));
  }
  CHECK(again == rows);
}

// Before: the reply-order check read every interaction of the conversation (through
// interactions_by_conversation) for each pending send, on every pass of the send loop: 0.73 s
// in a conversation of 100,000.
TEST_CASE("the reply-order check starts from the pending sends, not the whole conversation") {
  test::TempDir dir;
  storage::Writer writer(dir.file("sb.db"));  // migrates
  storage::Db db(dir.file("sb.db"));
  // One conversation of 20,000 interactions; its last two are our replies, pending, the first
  // of them tried once (it waits for a retry), so the second waits behind it.
  db.exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
      "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
      "conversation_id, occurred_at, received_at, payload) "
      "SELECT 'I' || i, 'api', 'web', 'e' || i, 'message', CASE WHEN i > 19998 THEN 'outbound' "
      "ELSE 'inbound' END, 'CV1', 1, 1, '{}' FROM n");
  db.exec(
      "INSERT INTO sends(interaction_id, parent_id, channel, account, state, attempts, "
      "next_attempt_at, created_at, updated_at) VALUES "
      "('I19999', 'I1', 'api', 'web', 'pending', 1, 0, 1, 1), "
      "('I20000', 'I1', 'api', 'web', 'pending', 0, 0, 1, 1)");
  // The shape of the send loop's queries (agents/records.cpp, due_sends and next_send_at).
  const std::string due =
      "SELECT s.interaction_id FROM sends s JOIN interactions i ON i.id = s.interaction_id "
      "WHERE s.state = 'pending' AND NOT " +
      std::string(storage::kHeldBehindEarlier) + " ORDER BY s.next_attempt_at";
  auto plan = db.prepare("EXPLAIN QUERY PLAN " + due);
  std::string text;
  while (plan.step()) {
    text += plan.text(3) + "\n";
  }
  // The subquery reads the pending sends first, then each one's interaction by its id.
  const auto sends_first = text.find("SEARCH e USING INDEX sends_due");
  const auto then_ci = text.find("SEARCH ci ");
  CHECK_MESSAGE(sends_first != std::string::npos, text);
  CHECK_MESSAGE(then_ci != std::string::npos, text);
  CHECK_MESSAGE(sends_first < then_ci, text);
  CHECK_MESSAGE(text.find("id=?", then_ci) < text.find('\n', then_ci), text);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db.raw(), due.c_str(), -1, &st, nullptr) == SQLITE_OK);
  std::vector<std::string> ids;
  while (sqlite3_step(st) == SQLITE_ROW) {
    ids.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  }
  auto steps = sqlite3_stmt_status(st, SQLITE_STMTSTATUS_VM_STEP, 0);
  sqlite3_finalize(st);
  CHECK(ids == std::vector<std::string>{"I19999"});
  CHECK_MESSAGE(steps < 1000, steps);
}
