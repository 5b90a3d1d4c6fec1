// The subject fallback of email threading (issue 4): a message that names no known message in
// In-Reply-To or References joins the conversation its subject (without Re:/Fwd:/AW:/回复:
// prefixes) was last seen in, only for the same customer and only when that conversation holds
// a message from within 14 days of this one. Real Writer + Store on a temporary database.
#include <doctest/doctest.h>

#include <future>

#include "channels/email/mime.hpp"
#include "channels/email/threading.hpp"
#include "config/config.hpp"
#include "routing/rules.hpp"
#include "storage/sqlite.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/support/harness.hpp"

using namespace sb;

namespace {

struct Fixture {
  test::TempDir dir;
  storage::Writer writer{dir.file("switchboard.db")};
  storage::Store store{writer, Rules::compile(config::defaults().routing)};

  Fixture() { writer.start(); }
  explicit Fixture(const config::Routing& routing) : store{writer, Rules::compile(routing)} {
    writer.start();
  }
  ~Fixture() { writer.stop(); }

  // Stores one message and returns its conversation id.
  std::string store_mail(const std::string& from, const std::string& subject, const std::string& id,
                         const std::string& date, const std::string& in_reply_to = "",
                         const std::string& reply_to = "", const std::string& headers = "") {
    return store_raw("From: " + from + "\r\nTo: support@example.com\r\nSubject: " + subject +
                     "\r\nMessage-ID: " + id + "\r\nDate: " + date + "\r\n" +
                     (in_reply_to.empty() ? "" : "In-Reply-To: " + in_reply_to + "\r\n") +
                     (reply_to.empty() ? "" : "Reply-To: " + reply_to + "\r\n") + headers +
                     "\r\nhello\r\n");
  }

  // Stores one raw message and returns its conversation id.
  std::string store_raw(const std::string& raw) {
    std::vector<Inbound> items;
    items.push_back(email::to_inbound(email::parse_email(raw), "support", "INBOX"));
    std::promise<std::vector<IngestOutcome>> done;
    store.submit(std::move(items), std::nullopt,
                 [&](std::vector<IngestOutcome> out) { done.set_value(std::move(out)); });
    auto out = done.get_future().get();
    REQUIRE(out.size() == 1);
    REQUIRE(out[0].error.empty());
    storage::Db db(dir.file("switchboard.db"), true);
    auto st = db.prepare("SELECT conversation_id, payload FROM interactions WHERE id = ?1");
    st.bind(1, out[0].id);
    REQUIRE(st.step());
    last_payload = st.text(1);
    last_id = out[0].id;
    return st.text(0);
  }

  // The queue the interaction `id` was routed to.
  std::string queue_of(const std::string& id) {
    storage::Db db(dir.file("switchboard.db"), true);
    auto st = db.prepare("SELECT queue FROM interactions WHERE id = ?1");
    st.bind(1, id);
    REQUIRE(st.step());
    return st.text(0);
  }

  // Runs `sql` on the database (no message in flight: the writer is idle).
  void exec(const std::string& sql) {
    storage::Db db(dir.file("switchboard.db"));
    db.exec(sql);
  }

  std::string last_payload;  // of the last store_mail
  std::string last_id;       // of the last store_mail
};

bool flagged(const std::string& payload, const std::string& flag) {
  return payload.find("\"" + flag + "\"") != std::string::npos;
}

}  // namespace

TEST_CASE("subject fallback: the same customer's Re: within 14 days joins the conversation") {
  Fixture f;
  auto first = f.store_mail("ann@example.com", "Order 7 is late", "<a1@example.com>",
                            "Mon, 02 Nov 2026 10:00:00 +0000");
  // No In-Reply-To (a client that drops it, or a new mail typed with the old subject).
  CHECK(f.store_mail("Ann@Example.com", "RE: AW: Order 7 is late", "<a2@example.com>",
                     "Fri, 13 Nov 2026 09:00:00 +0000") == first);
  CHECK(f.store_mail("ann@example.com", "回复: Order 7 is late", "<a3@example.com>",
                     "Sat, 14 Nov 2026 09:00:00 +0000") == first);
}

TEST_CASE("subject fallback: another customer, or a gap over 14 days, starts a conversation") {
  Fixture f;
  auto ann = f.store_mail("ann@example.com", "Invoice question", "<b1@example.com>",
                          "Mon, 02 Nov 2026 10:00:00 +0000");
  auto bob = f.store_mail("bob@example.com", "Re: Invoice question", "<b2@example.com>",
                          "Tue, 03 Nov 2026 10:00:00 +0000");
  CHECK(bob != ann);
  // 15 days after Ann's last message in that conversation: a new one.
  auto later = f.store_mail("ann@example.com", "Re: Invoice question", "<b3@example.com>",
                            "Tue, 17 Nov 2026 10:00:01 +0000");
  CHECK(later != ann);
  // The subject now leads to the newest conversation; a message from the old one's time
  // still finds its own thread by In-Reply-To.
  CHECK(f.store_mail("ann@example.com", "Re: Invoice question", "<b4@example.com>",
                     "Wed, 18 Nov 2026 10:00:00 +0000") == later);
  CHECK(f.store_mail("ann@example.com", "Re: Invoice question", "<b5@example.com>",
                     "Wed, 18 Nov 2026 11:00:00 +0000", "<b1@example.com>") == ann);
}

TEST_CASE("subject fallback: a message with no subject never joins by subject") {
  Fixture f;
  auto first =
      f.store_mail("ann@example.com", "", "<c1@example.com>", "Mon, 02 Nov 2026 10:00:00 +0000");
  CHECK(f.store_mail("ann@example.com", "Re:", "<c2@example.com>",
                     "Mon, 02 Nov 2026 11:00:00 +0000") != first);
}

TEST_CASE(
    "subject fallback: a forged From with a foreign Reply-To is flagged, in a new "
    "conversation") {
  Fixture f;
  auto first = f.store_mail("ann@example.com", "Order 7 is late", "<d1@example.com>",
                            "Mon, 02 Nov 2026 10:00:00 +0000");
  CHECK_FALSE(flagged(f.last_payload, "reply_to_differs"));
  // Anyone can write Ann's address in From; the agent's answer would go to Reply-To.
  auto forged = f.store_mail("ann@example.com", "Re: Order 7 is late", "<d2@evil.example>",
                             "Tue, 03 Nov 2026 10:00:00 +0000", "", "attacker@evil.example");
  CHECK(forged != first);
  CHECK(flagged(f.last_payload, "reply_to_differs"));
  // It left no subject key behind: Ann's own next mail still finds her conversation.
  CHECK(f.store_mail("ann@example.com", "Re: Order 7 is late", "<d3@example.com>",
                     "Wed, 04 Nov 2026 10:00:00 +0000") == first);
  CHECK_FALSE(flagged(f.last_payload, "reply_to_differs"));
}

// Before: the flag was added to the payload after the rules had run, so a rule on it (README:
// rules match flags) never matched.
TEST_CASE("subject fallback: a rule on the flag reply_to_differs routes such mail") {
  auto loaded = config::load_string(R"([[routing.rules]]
queue = "review"
[routing.rules.when]
flags = ["reply_to_differs"]
)",
                                    "t.toml");
  REQUIRE(loaded.config);
  Fixture f(loaded.config->routing);
  f.store_mail("ann@example.com", "Order 9", "<g1@example.com>", "Mon, 02 Nov 2026 10:00:00 +0000");
  f.store_mail("ann@example.com", "Re: Order 9", "<g2@evil.example>",
               "Tue, 03 Nov 2026 10:00:00 +0000", "", "attacker@evil.example");
  CHECK(flagged(f.last_payload, "reply_to_differs"));
  storage::Db db(f.dir.file("switchboard.db"), true);
  auto st = db.prepare("SELECT queue FROM interactions ORDER BY rowid");
  REQUIRE(st.step());
  CHECK(st.text(0) == "general");
  REQUIRE(st.step());
  CHECK(st.text(0) == "review");
}

TEST_CASE("subject fallback: a Reply-To that is the customer's own other address still joins") {
  Fixture f;
  auto first = f.store_mail("ann@example.com", "Order 8", "<e1@example.com>",
                            "Mon, 02 Nov 2026 10:00:00 +0000");
  f.exec(
      "INSERT INTO identities(type, value, customer_id, handle) SELECT 'email', "
      "'ann@work.example', customer_id, '' FROM identities WHERE value = 'ann@example.com'");
  CHECK(f.store_mail("ann@example.com", "Re: Order 8", "<e2@example.com>",
                     "Tue, 03 Nov 2026 10:00:00 +0000", "", "ann@work.example") == first);
  CHECK_FALSE(flagged(f.last_payload, "reply_to_differs"));
}

TEST_CASE("subject fallback: the 14 days count from when we received it, not the Date header") {
  Fixture f;
  auto first = f.store_mail("ann@example.com", "Refund", "<g1@example.com>",
                            "Mon, 02 Nov 2026 10:00:00 +0000");
  // Received a month ago; the next message's Date (the sender's word) falls within 14 days of
  // the first one's.
  f.exec("UPDATE interactions SET received_at = received_at - 30 * 86400000");
  CHECK(f.store_mail("ann@example.com", "Re: Refund", "<g2@example.com>",
                     "Tue, 03 Nov 2026 10:00:00 +0000") != first);
}

namespace {
// The rule README suggests for machine-sent mail, after one that sends order 42 to "vip".
config::Routing noise_rules() {
  auto loaded = config::load_string(R"([[routing.rules]]
name = "machine-sent"
queue = "noise"
override_sticky = true
[routing.rules.when]
flags = ["auto_reply", "bounce"]

[[routing.rules]]
name = "order 42"
queue = "vip"
[routing.rules.when]
subject_matches = "order 42"
)",
                                    "t.toml");
  REQUIRE(loaded.config);
  return loaded.config->routing;
}

// A delivery status notification (RFC 3464) from one MTA's MAILER-DAEMON about `returned`.
std::string dsn(const std::string& id, const std::string& returned, const std::string& to) {
  return "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
         "To: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
         "Message-ID: " +
         id +
         "\r\nDate: Mon, 02 Nov 2026 10:05:00 +0000\r\nAuto-Submitted: auto-replied\r\n"
         "MIME-Version: 1.0\r\n"
         "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
         "--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
         "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
         "Reporting-MTA: dns; mx.example.net\r\n\r\n"
         "Final-Recipient: rfc822; " +
         to +
         "\r\nAction: failed\r\nStatus: 5.1.1\r\n"
         "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
         "From: support@example.com\r\nTo: " +
         to + "\r\nSubject: Re: your order\r\nMessage-ID: " + returned + "\r\n--b--\r\n";
}
}  // namespace

// Before: every message, an out-of-office answer too, made its queue the conversation's sticky
// one, so the customer's real answer days later went to "noise" as well.
TEST_CASE("auto-reply: routed to noise, it leaves the conversation's sticky queue as it was") {
  Fixture f(noise_rules());
  auto conv = f.store_mail("ann@example.com", "Where is order 42?", "<o1@example.com>",
                           "Mon, 02 Nov 2026 10:00:00 +0000");
  CHECK(f.queue_of(f.last_id) == "vip");
  CHECK(f.store_mail("ann@example.com", "Automatic reply: Where is order 42?", "<ooo@example.com>",
                     "Mon, 02 Nov 2026 10:01:00 +0000", "<o1@example.com>", "",
                     "Auto-Submitted: auto-replied\r\n") == conv);
  CHECK(f.queue_of(f.last_id) == "noise");
  // Her real answer, with a subject no rule matches: the conversation's queue before the
  // auto-reply.
  CHECK(f.store_mail("ann@example.com", "one more thing", "<o2@example.com>",
                     "Thu, 05 Nov 2026 10:00:00 +0000", "<o1@example.com>") == conv);
  CHECK(f.queue_of(f.last_id) == "vip");
  // A bounce and a newsletter in the thread change nothing either.
  f.store_raw(dsn("<dsn-o@mx.example.net>", "<o1@example.com>", "ann@example.com"));
  CHECK(f.queue_of(f.last_id) == "noise");
  f.store_mail("ann@example.com", "News", "<o3@example.com>", "Thu, 05 Nov 2026 11:00:00 +0000",
               "<o1@example.com>", "", "List-Id: <news.example.com>\r\n");
  CHECK(f.store_mail("ann@example.com", "and another", "<o4@example.com>",
                     "Fri, 06 Nov 2026 10:00:00 +0000", "<o2@example.com>") == conv);
  CHECK(f.queue_of(f.last_id) == "vip");
}

// Before: `bulk` kept a message from setting its conversation's sticky queue, and a Google
// Group adds Precedence: list, List-ID and List-Unsubscribe to every mail it hands on: for a
// team whose support address is a Group, a customer's follow-up never stayed in the queue of
// the conversation.
TEST_CASE("bulk: mail through a Google Group still makes its conversation's queue sticky") {
  Fixture f(noise_rules());
  const std::string group =
      "Precedence: list\r\nList-ID: <support.example.com>\r\n"
      "List-Unsubscribe: <mailto:support+unsubscribe@example.com>\r\n";
  auto conv = f.store_mail("ann@example.com", "Where is order 42?", "<g1@example.com>",
                           "Mon, 02 Nov 2026 10:00:00 +0000", "", "", group);
  CHECK(f.last_payload.find("\"bulk\"") != std::string::npos);
  CHECK(f.queue_of(f.last_id) == "vip");
  CHECK(f.store_mail("ann@example.com", "one more thing", "<g2@example.com>",
                     "Tue, 03 Nov 2026 10:00:00 +0000", "<g1@example.com>", "", group) == conv);
  CHECK(f.queue_of(f.last_id) == "vip");
}

// Before: the subject fallback keyed on the "customer" MAILER-DAEMON@mx.example.net and the
// MTA's fixed subject, so bounces about different customers' mail joined one conversation.
TEST_CASE("bounce: two reports from one MTA join the conversations of the mail they return") {
  Fixture f;
  auto ann = f.store_mail("ann@example.com", "Order 1", "<p1@example.com>",
                          "Mon, 02 Nov 2026 10:00:00 +0000");
  auto bob = f.store_mail("bob@example.com", "Order 2", "<p2@example.com>",
                          "Mon, 02 Nov 2026 10:00:00 +0000");
  CHECK(f.store_raw(dsn("<dsn-1@mx.example.net>", "<p1@example.com>", "ann@example.com")) == ann);
  CHECK(flagged(f.last_payload, "bounce"));
  CHECK(f.store_raw(dsn("<dsn-2@mx.example.net>", "<p2@example.com>", "bob@example.com")) == bob);
  // Reports about mail never stored here: each starts a conversation of its own.
  auto x = f.store_raw(dsn("<dsn-3@mx.example.net>", "<gone1@example.com>", "x@example.com"));
  auto y = f.store_raw(dsn("<dsn-4@mx.example.net>", "<gone2@example.com>", "y@example.com"));
  CHECK(x != y);
  CHECK(x != ann);
  CHECK(x != bob);
}

TEST_CASE("auto-reply: never joins a conversation by its subject") {
  Fixture f;
  auto first = f.store_mail("ann@example.com", "Order 5", "<q1@example.com>",
                            "Mon, 02 Nov 2026 10:00:00 +0000");
  CHECK(f.store_mail("ann@example.com", "Re: Order 5", "<q2@example.com>",
                     "Mon, 02 Nov 2026 10:01:00 +0000", "", "",
                     "Auto-Submitted: auto-replied\r\n") != first);
  // Nor does its subject lead her next mail anywhere but her own thread.
  CHECK(f.store_mail("ann@example.com", "Re: Order 5", "<q3@example.com>",
                     "Mon, 02 Nov 2026 11:00:00 +0000") == first);
}
