// One Message-ID, one message or two: an email's external id is its Message-ID, but broken
// mailers and some ticketing and marketing tools reuse ids, and anyone can forge one. The same
// message fetched again (a crash's replay, a changed UIDVALIDITY, a second mailbox or support
// address: only the trace headers differ) is one interaction; another message under an id
// already stored is stored too, as "<id>#<hash>", instead of being dropped as a duplicate while
// the mailbox's cursor moves past it. Real Writer + Store on a temporary database, and the
// poller against Dovecot.
#include <doctest/doctest.h>

#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "channels/email/mime.hpp"
#include "channels/email/threading.hpp"
#include "config/config.hpp"
#include "routing/rules.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/email/email_daemon.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using namespace std::chrono_literals;

namespace {

constexpr const char* kId = "<dup@mailer.example>";

// A message from Ann under kId; `headers` go first (where servers add trace headers).
std::string mail(const std::string& body, const std::string& headers = "",
                 const std::string& id = kId, const std::string& from = "Ann <ann@example.com>",
                 const std::string& subject = "Order 7 is late") {
  return headers + "From: " + from + "\r\nTo: support@example.com\r\nSubject: " + subject +
         "\r\nMessage-ID: " + id + "\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n\r\n" + body +
         "\r\n";
}

const std::string kTraceA =
    "Return-Path: <ann@example.com>\r\nDelivered-To: support@example.com\r\n"
    "Received: from mx1.example.net (mx1.example.net [192.0.2.1]) by mail.example.com; "
    "Mon, 02 Nov 2026 10:00:02 +0000\r\nX-Spam-Score: 0.3\r\n";
const std::string kTraceB =
    "Return-Path: <bounces+ann@example.com>\r\nDelivered-To: sales@example.com\r\n"
    "Received: from mx2.example.net (mx2.example.net [192.0.2.2]) by imap.example.com; "
    "Mon, 02 Nov 2026 10:00:09 +0000\r\nReceived: from relay.example.net by mx2.example.net; "
    "Mon, 02 Nov 2026 10:00:05 +0000\r\nX-Original-To: sales@example.com\r\n"
    "X-Spam-Score: 2.9\r\n";

struct Fixture {
  test::TempDir dir;
  std::string path = dir.file("switchboard.db");
  std::unique_ptr<storage::Writer> writer;
  std::unique_ptr<storage::Store> store;

  Fixture() { open(); }
  ~Fixture() { writer->stop(); }
  void open() {
    writer = std::make_unique<storage::Writer>(path);
    store = std::make_unique<storage::Store>(*writer, Rules::compile(config::defaults().routing));
    writer->start();
  }

  // Parses each raw message as the poller does and stores them in one batch.
  std::vector<IngestOutcome> fetch(const std::vector<std::string>& raws) {
    std::vector<Inbound> items;
    for (const auto& raw : raws) {
      items.push_back(email::to_inbound(email::parse_email(raw), "support", "INBOX"));
    }
    std::promise<std::vector<IngestOutcome>> done;
    store->submit(std::move(items), std::nullopt,
                  [&](std::vector<IngestOutcome> out) { done.set_value(std::move(out)); });
    auto out = done.get_future().get();
    REQUIRE(out.size() == raws.size());
    for (const auto& o : out) {
      REQUIRE(o.error.empty());
    }
    return out;
  }
  IngestOutcome fetch(const std::string& raw) { return fetch(std::vector<std::string>{raw}).at(0); }

  long long interactions() { return test::count_rows(path, "SELECT count(*) FROM interactions"); }
  std::string column(const std::string& id, const std::string& name) {
    storage::Db db(path, true);
    auto st = db.prepare("SELECT coalesce(" + name + ", '') FROM interactions WHERE id = ?1");
    st.bind(1, id);
    REQUIRE(st.step());
    return st.text(0);
  }
};

std::string hash_of(const std::string& raw) {
  return email::parse_email(raw).content_hash;
}

}  // namespace

TEST_CASE("the same raw message fetched twice is one interaction") {
  Fixture f;
  auto first = f.fetch(mail("Where is my order?", kTraceA));
  CHECK(first.created);
  auto again = f.fetch(mail("Where is my order?", kTraceA));
  CHECK(again.duplicate);
  CHECK(again.id == first.id);
  // Twice in one batch (a replayed batch holds what the crashed one held) adds nothing either.
  auto batch = f.fetch({mail("Where is my order?", kTraceA), mail("Where is my order?", kTraceA)});
  CHECK(batch[0].duplicate);
  CHECK(batch[1].duplicate);
  CHECK(f.interactions() == 1);
  CHECK(f.column(first.id, "external_id") == kId);
  CHECK(f.column(first.id, "content_hash") == hash_of(mail("Where is my order?")));
}

TEST_CASE("the same message with other Received, Delivered-To, Return-Path and X- headers is one") {
  Fixture f;
  // Delivered to two of our addresses, or in two polled mailboxes: the servers' trace differs.
  auto first = f.fetch(mail("Where is my order?", kTraceA));
  auto other = f.fetch(mail("Where is my order?", kTraceB));
  CHECK(other.duplicate);
  CHECK(other.id == first.id);
  // Trace headers after the message's own ones, and none at all.
  CHECK(f.fetch(mail("Where is my order?")).duplicate);
  std::string raw = mail("Where is my order?");
  raw.insert(raw.find("\r\n\r\n") + 2, "X-Forwarded-For: sales@example.com\r\n");
  CHECK(f.fetch(raw).duplicate);
  CHECK(f.interactions() == 1);
}

TEST_CASE("the same message as a server re-encoded it (boundary, transfer encoding) is one") {
  Fixture f;
  auto multipart = [](const std::string& boundary, const std::string& plain_part) {
    std::string head =
        "From: Ann <ann@example.com>\r\nTo: support@example.com\r\nSubject: =?utf-8?Q?Gr=C3=BC"
        "\xc3\x9f"
        "e?=\r\nMessage-ID: <dup@mailer.example>\r\nDate: Mon, 02 Nov 2026 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"" +
        boundary + "\"\r\n\r\n";
    return head + "--" + boundary + "\r\n" + plain_part + "\r\n--" + boundary +
           "\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Gr\xc3\xbc\xc3\x9f"
           "e</p>\r\n--" +
           boundary + "--\r\n";
  };
  std::string qp =
      multipart("b1",
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
                "quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe aus K=C3=B6ln\r\n");
  std::string b64 =
      multipart("=_other_boundary_42",
                "Content-Type: text/plain; charset=\"UTF-8\"\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\nR3LDvMOfZSBhdXMgS8O2bG4=\r\n");
  REQUIRE(email::parse_email(qp).text == email::parse_email(b64).text);
  CHECK(hash_of(qp) == hash_of(b64));
  auto first = f.fetch(qp);
  auto again = f.fetch(b64);
  CHECK(again.duplicate);
  CHECK(again.id == first.id);
  CHECK(f.interactions() == 1);
}

TEST_CASE(
    "a different body under the same Message-ID is its own interaction - fetched again, "
    "still two") {
  Fixture f;
  auto a = f.fetch(mail("Where is my order?", kTraceA));
  auto b = f.fetch(mail("Please cancel order 8 instead.", kTraceA));
  CHECK(b.created);
  CHECK_FALSE(b.duplicate);
  CHECK(b.id != a.id);
  CHECK(f.interactions() == 2);
  std::string hash_b = hash_of(mail("Please cancel order 8 instead."));
  CHECK(f.column(a.id, "external_id") == kId);
  CHECK(f.column(b.id, "external_id") == std::string(kId) + "#" + hash_b.substr(0, 16));
  CHECK(f.column(b.id, "content_hash") == hash_b);
  // Threaded as any message: the same customer's same subject within 14 days.
  CHECK(f.column(b.id, "conversation_id") == f.column(a.id, "conversation_id"));
  CHECK(f.column(b.id, "customer_id") == f.column(a.id, "customer_id"));
  // Queued, with the external id it was stored under.
  CHECK(f.column(b.id, "state") == "queued");
  CHECK(f.column(b.id, "payload").find(R"("external_id":"<dup@mailer.example>#)") !=
        std::string::npos);

  // Fetched again, each of them, with another trace, alone or in one batch: still two.
  auto b_again = f.fetch(mail("Please cancel order 8 instead.", kTraceB));
  CHECK(b_again.duplicate);
  CHECK(b_again.id == b.id);
  auto both = f.fetch({mail("Please cancel order 8 instead."), mail("Where is my order?")});
  CHECK(both[0].id == b.id);
  CHECK(both[1].id == a.id);
  CHECK(both[0].duplicate);
  CHECK(both[1].duplicate);
  // A third content is a third interaction.
  auto c = f.fetch(mail("Never mind."));
  CHECK(c.created);
  CHECK(f.interactions() == 3);
}

TEST_CASE(
    "two different messages under one Message-ID in one batch: both stored, threaded by "
    "their own headers") {
  Fixture f;
  // Bob's earlier message, which the second one answers.
  auto root = f.fetch(
      mail("My invoice is wrong.", "", "<root@bob.example>", "Bob <bob@example.com>", "Invoice"));
  std::string reply = mail("Still wrong.", "In-Reply-To: <root@bob.example>\r\n", kId,
                           "Bob <bob@example.com>", "Re: Invoice");
  auto batch = f.fetch({mail("Where is my order?"), reply});
  CHECK(batch[0].created);
  CHECK(batch[1].created);
  CHECK(f.interactions() == 3);
  // Each in its own thread: the second by its In-Reply-To, not by the id it shares.
  CHECK(f.column(batch[1].id, "conversation_id") == f.column(root.id, "conversation_id"));
  CHECK(f.column(batch[0].id, "conversation_id") != f.column(root.id, "conversation_id"));
  // An answer naming the shared id goes where the id was first recorded: the first message.
  auto answer = f.fetch(mail("Any news?", "In-Reply-To: <dup@mailer.example>\r\n",
                             "<answer@example.com>", "Ann <ann@example.com>", "Other subject"));
  CHECK(f.column(answer.id, "conversation_id") == f.column(batch[0].id, "conversation_id"));
  // The same batch again (a crash before its commit was known): nothing new.
  auto replay = f.fetch({mail("Where is my order?"), reply});
  CHECK(replay[0].duplicate);
  CHECK(replay[1].duplicate);
  CHECK(replay[1].id == batch[1].id);
  CHECK(f.interactions() == 4);
}

TEST_CASE("a message without Message-ID is keyed by a hash of its raw bytes, as before") {
  Fixture f;
  std::string raw =
      "From: Ann <ann@example.com>\r\nTo: support@example.com\r\nSubject: no id\r\n\r\nhello\r\n";
  auto first = f.fetch(raw);
  CHECK(f.column(first.id, "external_id") == email::synthetic_message_id(raw));
  CHECK(f.column(first.id, "content_hash").empty());  // the id is a hash of the content already
  CHECK(f.fetch(raw).duplicate);
  auto other = f.fetch(
      "From: Ann <ann@example.com>\r\nTo: support@example.com\r\nSubject: no id\r\n\r\nbye\r\n");
  CHECK(other.created);
  CHECK(f.interactions() == 2);
}

TEST_CASE(
    "a row stored before schema 19 has no content hash: whatever comes under its id is "
    "taken for it") {
  test::TempDir dir;
  std::string path = dir.file("switchboard.db");
  {
    storage::Db db(path);
    storage::migrate(db, 18);
    db.exec(
        "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
        "occurred_at, received_at, payload) VALUES ('OLD1', 'email', 'support', "
        "'<dup@mailer.example>', 'email', 'inbound', 1, 1, '{}')");
  }
  storage::Writer writer(path);  // upgrades the file
  storage::Store store(writer, Rules::compile(config::defaults().routing));
  writer.start();
  auto fetch = [&](const std::string& raw) {
    std::vector<Inbound> items;
    items.push_back(email::to_inbound(email::parse_email(raw), "support", "INBOX"));
    std::promise<std::vector<IngestOutcome>> done;
    store.submit(std::move(items), std::nullopt,
                 [&](std::vector<IngestOutcome> out) { done.set_value(std::move(out)); });
    return done.get_future().get().at(0);
  };
  // Its message fetched again (after a changed UIDVALIDITY) still dedupes to it.
  auto again = fetch(mail("Where is my order?", kTraceA));
  CHECK(again.duplicate);
  CHECK(again.id == "OLD1");
  // Nothing tells what the old row's message said: another one under its id is taken for it
  // too, as before the upgrade, rather than guessed different (a second copy of the old one).
  auto other = fetch(mail("Please cancel order 8 instead."));
  CHECK(other.duplicate);
  CHECK(other.id == "OLD1");
  writer.stop();
  CHECK(test::count_rows(path, "SELECT count(*) FROM interactions") == 1);
  CHECK(test::count_rows(path, "SELECT count(*) FROM interactions WHERE content_hash IS NULL") ==
        1);
}

TEST_CASE(
    "Dovecot: two messages under one Message-ID both reach the queue, once each, also "
    "after the mailbox is read again") {
  test::EmailDaemon d;
  d.dovecot.deliver(mail("Where is my order?", kTraceA));
  d.dovecot.deliver(mail("Please cancel order 8 instead.", kTraceA));
  d.dovecot.deliver(mail("Where is my order?", kTraceB));  // the first one again
  d.start();
  REQUIRE(test::eventually([&] { return d.queued() >= 2; }, 30s));
  d.dovecot.set_uidvalidity(777);
  d.dovecot.kick();
  d.dovecot.deliver(test::test_email(1, 1));
  REQUIRE(test::eventually([&] { return d.queued() >= 3; }, 30s));
  REQUIRE(test::eventually(
      [&] {
        return d.metrics().find(
                   R"(switchboard_duplicates_total{channel="email",account="support"} 4)") !=
               std::string::npos;
      },
      30s));
  std::this_thread::sleep_for(300ms);
  CHECK(d.queued() == 3);
  CHECK(d.distinct_queued() == 3);
  auto ps = d.payloads();
  REQUIRE(ps.size() == 3);
  CHECK(ps[0].at("external_id").as_string() == kId);
  CHECK(ps[0].at("text").as_string() == "Where is my order?");
  CHECK(ps[1].at("external_id").as_string().starts_with(std::string(kId) + "#"));
  CHECK(ps[1].at("text").as_string() == "Please cancel order 8 instead.");
}

// Message-IDs are cut to 998 bytes (one header line, mime.hpp kMaxIdBytes), and the cut id is
// the external id and the threading key. Two messages whose ids share their first 998 bytes are
// still two, even with the same content (one mailer's same notice sent twice), a reply to
// either joins its own conversation, and a message read again after a UIDVALIDITY change is a
// duplicate: the cut ends in a hash of the whole id.
TEST_CASE(
    "Dovecot: Message-IDs alike in their first 998 bytes are two messages, each read again "
    "is a duplicate") {
  const std::string common(1100, 'l');
  const std::string ann_id = "<" + common + "-ann@mailer.example>";
  const std::string ann_id2 = "<" + common + "-ann2@mailer.example>";
  const std::string bob_id = "<" + common + "-bob@mailer.example>";
  test::EmailDaemon d;
  d.dovecot.deliver(mail("Please call me back.", kTraceA, ann_id));
  d.dovecot.deliver(mail("Please call me back.", kTraceA, ann_id2));
  d.dovecot.deliver(
      mail("My invoice is wrong.", kTraceA, bob_id, "Bob <bob@example.com>", "Invoice"));
  d.dovecot.deliver(mail("Please call me back.", kTraceB, ann_id));  // the first one again
  d.start();
  REQUIRE(test::eventually([&] { return d.queued() >= 3; }, 30s));
  // The mailbox read again from the start, and Bob's answer to his own mail.
  d.dovecot.set_uidvalidity(778);
  d.dovecot.kick();
  d.dovecot.deliver(mail("Any news?", "In-Reply-To: " + bob_id + "\r\n", "<news@bob.example>",
                         "Bob <bob@example.com>", "Something else"));
  REQUIRE(test::eventually([&] { return d.queued() >= 4; }, 30s));
  REQUIRE(test::eventually(
      [&] {
        return d.metrics().find(
                   R"(switchboard_duplicates_total{channel="email",account="support"} 5)") !=
               std::string::npos;
      },
      30s));
  std::this_thread::sleep_for(300ms);
  CHECK(d.queued() == 4);
  CHECK(d.distinct_queued() == 4);
  std::map<std::string, boost::json::object> by_text;
  std::set<std::string> external_ids;
  for (auto& p : d.payloads()) {
    std::string id(p.at("external_id").as_string());
    CHECK(id.size() <= email::kMaxIdBytes);
    CHECK(id.find('#') == std::string::npos);  // none taken for another message under its id
    external_ids.insert(id);
    by_text[std::string(p.at("text").as_string())] = p;
  }
  CHECK(external_ids.size() == 4);
  REQUIRE(by_text.count("My invoice is wrong.") == 1);
  REQUIRE(by_text.count("Any news?") == 1);
  CHECK(by_text["Any news?"].at("conversation_id") ==
        by_text["My invoice is wrong."].at("conversation_id"));
  CHECK(d.rows("SELECT count(*) FROM interactions") == 4);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE payload LIKE '%id_truncated%'") == 4);
}
