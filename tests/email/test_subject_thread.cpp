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
                         const std::string& reply_to = "") {
    std::string raw = "From: " + from + "\r\nTo: support@example.com\r\nSubject: " + subject +
                      "\r\nMessage-ID: " + id + "\r\nDate: " + date + "\r\n" +
                      (in_reply_to.empty() ? "" : "In-Reply-To: " + in_reply_to + "\r\n") +
                      (reply_to.empty() ? "" : "Reply-To: " + reply_to + "\r\n") + "\r\nhello\r\n";
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
    return st.text(0);
  }

  // Runs `sql` on the database (no message in flight: the writer is idle).
  void exec(const std::string& sql) {
    storage::Db db(dir.file("switchboard.db"));
    db.exec(sql);
  }

  std::string last_payload;  // of the last store_mail
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
