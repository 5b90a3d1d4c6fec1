// Acceptance 1-4 of issue 4 and a dropped connection: Dovecot -> poller -> SQLite -> Redis.
#include <doctest/doctest.h>

#include <map>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "channels/email/base64.hpp"
#include "channels/email/imap_client.hpp"
#include "tests/email/email_daemon.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> numbered(int from, int to, int senders = 50) {
  std::vector<std::string> raws;
  for (int i = from; i < to; ++i) {
    raws.push_back(test_email(i, i % senders));
  }
  return raws;
}

}  // namespace

TEST_CASE(
    "500 messages over implicit TLS: each once in Redis with subject, sender, text and customer - "
    "a restart adds nothing") {
  EmailDaemon d("implicit");
  d.dovecot.deliver_many(numbered(0, 500));
  d.start();
  REQUIRE(eventually([&] { return d.queued() >= 500; }, 60s));
  std::map<std::string, std::string> customer_of_sender;
  std::set<std::string> seen;
  for (const auto& p : d.payloads()) {
    std::string id(p.at("external_id").as_string());
    int i = std::stoi(id.substr(5));  // "<msg-N@example.com>"
    CHECK(seen.insert(id).second);
    CHECK(p.at("channel").as_string() == "email");
    CHECK(p.at("account").as_string() == "support");
    CHECK(p.at("subject").as_string() == "Order " + std::to_string(i) + " is late \xc3\xbc");
    CHECK(p.at("text").as_string().find("where is order " + std::to_string(i) + "?") !=
          std::string::npos);
    std::string sender = "customer" + std::to_string(i % 50) + "@example.com";
    CHECK(p.at("from").at("value").as_string() == sender);
    std::string customer(p.at("customer").at("id").as_string());
    CHECK(!customer.empty());
    auto [it, fresh] = customer_of_sender.emplace(sender, customer);
    CHECK(it->second == customer);  // one customer per sender
  }
  CHECK(seen.size() == 500);
  CHECK(customer_of_sender.size() == 50);
  CHECK(d.rows("SELECT count(*) FROM cursors WHERE account='support' AND scope='INBOX'") == 1);

  d.stop();
  d.start();
  // One more message after the restart proves the poller ran through the mailbox again.
  d.dovecot.deliver(test_email(500, 7));
  REQUIRE(eventually([&] { return d.queued() >= 501; }, 30s));
  std::this_thread::sleep_for(300ms);
  CHECK(d.queued() == 501);
  CHECK(d.distinct_queued() == 501);
  CHECK(d.rows("SELECT count(*) FROM interactions") == 501);
}

TEST_CASE(
    "UIDVALIDITY changed: the mailbox is read again, nothing is stored twice, new mail still "
    "arrives") {
  EmailDaemon d;
  d.dovecot.deliver_many(numbered(0, 20));
  d.start();
  REQUIRE(eventually([&] { return d.queued() >= 20; }, 30s));
  d.dovecot.set_uidvalidity(777);
  d.dovecot.kick();  // the next session selects the mailbox and sees the new UIDVALIDITY
  d.dovecot.deliver(test_email(20, 3));
  REQUIRE(eventually([&] { return d.queued() >= 21; }, 30s));
  REQUIRE(eventually(
      [&] {
        return d.metrics().find(
                   R"(switchboard_duplicates_total{channel="email",account="support"} 20)") !=
               std::string::npos;
      },
      30s));
  CHECK(d.queued() == 21);
  CHECK(d.distinct_queued() == 21);
  CHECK(d.rows("SELECT count(*) FROM cursors WHERE value LIKE '777:%'") == 1);
}

TEST_CASE("Dovecot killed mid-sync and restarted: every message arrives exactly once") {
  EmailDaemon d;
  d.dovecot.deliver_many(numbered(0, 3000));
  d.start();
  REQUIRE(eventually([&] { return d.rows("SELECT count(*) FROM interactions") > 0; }, 30s));
  long long at_restart = d.rows("SELECT count(*) FROM interactions");
  long long at_kill = 0;
  d.dovecot.kill_and_restart([&] { at_kill = d.rows("SELECT count(*) FROM interactions"); });
  MESSAGE("stored when Dovecot was killed: between " << at_restart << " and " << at_kill);
  CHECK(at_kill < 3000);  // the kill really came in the middle of the sync
  REQUIRE(eventually([&] { return d.queued() >= 3000; }, 90s));
  std::this_thread::sleep_for(300ms);
  CHECK(d.queued() == 3000);
  CHECK(d.distinct_queued() == 3000);
  CHECK(
      d.metrics().find(R"(switchboard_channel_errors_total{channel="email",account="support"})") !=
      std::string::npos);
  // A failure that does not repeat is never taken for a message the server cannot deliver.
  CHECK(d.metrics().find("\nswitchboard_email_unfetchable_total{") == std::string::npos);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE payload LIKE '%unfetchable%'") == 0);
}

TEST_CASE(
    "a malformed message between two good ones: all three stored, the bad one flagged, mail keeps "
    "flowing") {
  EmailDaemon d;
  d.start();
  d.dovecot.deliver(test_email(1, 1));
  // No header/body separator, a NUL byte, a multipart without its boundary, bogus encoding.
  std::string bad =
      "From: Broken <broken@example.com>\r\nSubject: broken\r\nMessage-ID: <bad@x>\r\n"
      "Content-Type: multipart/mixed\r\nContent-Transfer-Encoding: x-bogus\r\n";
  bad += std::string("garbage \0 with a NUL\r\n--nowhere\r\n", 33);
  d.dovecot.deliver(bad);
  d.dovecot.deliver(test_email(2, 2));
  REQUIRE(eventually([&] { return d.queued() >= 3; }, 30s));
  auto ps = d.payloads();
  REQUIRE(ps.size() == 3);
  CHECK(ps[0].at("external_id").as_string() == "<msg-1@example.com>");
  CHECK(ps[1].at("from").at("value").as_string() == "broken@example.com");
  auto flags = ps[1].at("flags").as_array();
  CHECK(std::find(flags.begin(), flags.end(), json::value("malformed")) != flags.end());
  CHECK(ps[2].at("external_id").as_string() == "<msg-2@example.com>");
  CHECK(ps[2].at("flags").as_array().empty());
}

TEST_CASE(
    "a dropped connection reconnects and later mail arrives - after = seen flags only what was "
    "stored") {
  EmailDaemon d("starttls", "seen");
  d.dovecot.deliver(test_email(1, 1));
  d.start();
  REQUIRE(eventually([&] { return d.queued() >= 1; }, 30s));
  REQUIRE(eventually(
      [&] {
        return d.dovecot.doveadm("search -u alice mailbox INBOX SEEN").find_first_not_of(" \n") !=
               std::string::npos;
      },
      10s));
  d.dovecot.kick();
  d.dovecot.deliver(test_email(2, 2));
  REQUIRE(eventually([&] { return d.queued() >= 2; }, 30s));
  CHECK(d.queued() == 2);
  CHECK(
      d.metrics().find(R"(switchboard_channel_errors_total{channel="email",account="support"} )") !=
      std::string::npos);
  REQUIRE(eventually(
      [&] {
        auto out = d.dovecot.doveadm("search -u alice mailbox INBOX SEEN");
        return std::count(out.begin(), out.end(), '\n') == 2;
      },
      10s));
}

TEST_CASE("after = move:Processed moves exactly the stored messages") {
  EmailDaemon d("none", "move:Processed");
  d.dovecot.doveadm("mailbox create -u alice Processed");
  d.dovecot.deliver_many(numbered(0, 5));
  d.start();
  REQUIRE(eventually([&] { return d.queued() >= 5; }, 30s));
  REQUIRE(eventually(
      [&] {
        return d.dovecot.doveadm("mailbox status -u alice messages Processed").find("messages=5") !=
               std::string::npos;
      },
      10s));
  CHECK(d.dovecot.doveadm("mailbox status -u alice messages INBOX").find("messages=0") !=
        std::string::npos);
}

TEST_CASE("an account whose server is down never delays the others - its failures are counted") {
  EmailDaemon d;
  config::Imap broken = d.cfg.channels.imap.at(0);
  broken.name = "broken";
  broken.port = free_port();  // nothing listens there
  d.cfg.channels.imap.insert(d.cfg.channels.imap.begin(), broken);
  config::Imap second = d.cfg.channels.imap.back();
  second.name = "sales";
  second.mailboxes = {"Sales"};
  d.cfg.channels.imap.push_back(second);
  d.dovecot.doveadm("mailbox create -u alice Sales");
  d.dovecot.deliver(test_email(1, 1));
  d.dovecot.deliver(test_email(2, 2), "Sales");
  d.start();
  REQUIRE(eventually([&] { return d.queued() >= 2; }, 10s));
  auto ps = d.payloads();
  std::set<std::string> accounts;
  for (const auto& p : ps) {
    accounts.insert(std::string(p.at("account").as_string()));
  }
  CHECK(accounts == std::set<std::string>{"support", "sales"});
  REQUIRE(eventually(
      [&] {
        return d.metrics().find(
                   R"(switchboard_channel_errors_total{channel="email",account="broken"})") !=
               std::string::npos;
      },
      10s));
}

TEST_CASE("a server without IDLE is polled at poll_interval") {
  EmailDaemon d("none", "keep",
                "protocol imap {\n  imap_capability = IMAP4rev1 SASL-IR LITERAL+ UIDPLUS MOVE\n}");
  d.cfg.channels.imap.at(0).poll_interval = std::chrono::milliseconds(300);
  {  // the server really does not offer IDLE after login
    boost::asio::io_context io;
    boost::asio::ssl::context tls(boost::asio::ssl::context::tls_client);
    email::imap::ClientOptions opts;
    opts.host = "127.0.0.1";
    opts.port = d.dovecot.imap_port();
    opts.tls = email::imap::TlsMode::none;
    opts.username = Dovecot::user;
    opts.password = Dovecot::password;
    email::imap::Client c(io.get_executor(), tls, opts);
    bool idle = true;
    boost::asio::co_spawn(
        io,
        [&]() -> boost::asio::awaitable<void> {
          REQUIRE_FALSE(co_await c.connect());
          REQUIRE_FALSE(co_await c.login());
          idle = c.has_capability("IDLE");
          c.close();
        },
        boost::asio::detached);
    io.run_for(10s);
    REQUIRE_FALSE(idle);
  }
  d.dovecot.deliver(test_email(1, 1));
  d.start();
  REQUIRE(eventually([&] { return d.queued() >= 1; }, 10s));
  auto t0 = std::chrono::steady_clock::now();
  d.dovecot.deliver(test_email(2, 2));
  REQUIRE(eventually([&] { return d.queued() >= 2; }, 10s));
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  CHECK(d.queued() == 2);
}

namespace {
std::string lines(const std::string& b64) {  // 76 characters a line (RFC 2045)
  std::string out;
  for (std::size_t i = 0; i < b64.size(); i += 76) {
    out += b64.substr(i, 76) + "\r\n";
  }
  return out;
}
}  // namespace

TEST_CASE(
    "attachments: their bytes are kept and served to agents - the name, type and size are in the "
    "interaction") {
  EmailDaemon d;
  d.start();
  // A PDF-ish binary part (base64) with a UTF-8 file name (RFC 2231), and a text part.
  std::string bytes;
  for (int i = 0; i < 3000; ++i) {
    bytes += static_cast<char>(i * 7 % 256);
  }
  std::string raw =
      "From: Ann <ann@example.com>\r\nTo: support@example.com\r\nSubject: invoice\r\n"
      "Message-ID: <att-1@example.com>\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
      "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlease see the invoice.\r\n"
      "--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
      "Content-Disposition: attachment; filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf\r\n\r\n" +
      lines(email::base64(bytes)) + "--b1--\r\n";
  d.dovecot.deliver(raw);
  REQUIRE(eventually([&] { return d.queued() >= 1; }, 30s));
  auto p = d.payloads().at(0);
  auto atts = p.at("attachments").as_array();
  REQUIRE(atts.size() == 1);
  CHECK(atts[0].at("filename").as_string() == "Rechnung M\xc3\xa4rz.pdf");
  CHECK(atts[0].at("content_type").as_string() == "application/pdf");
  CHECK(atts[0].at("size").as_int64() == 3000);
  CHECK(atts[0].at("stored").as_bool());
  std::string id(p.at("id").as_string());
  HttpClient http(d.app->port());
  auto got = http.request("GET", "/v1/interactions/" + id + "/attachments/0", "",
                          {{"Authorization", "Bearer alice-token"}});
  CHECK(got.status == 200);
  CHECK(got.body == bytes);
  CHECK(got.headers["content-type"] == "application/pdf");
  CHECK(got.headers["content-disposition"].find("filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf") !=
        std::string::npos);
  // The sender declared the type: a browser must not sniff another or run what it shows.
  CHECK(got.headers["x-content-type-options"] == "nosniff");
  CHECK(got.headers["content-security-policy"] == "sandbox");
  CHECK(http.request("GET", "/v1/interactions/" + id + "/attachments/1", "",
                     {{"Authorization", "Bearer alice-token"}})
            .status == 404);
  CHECK(http.request("GET", "/v1/interactions/" + id + "/attachments/0").status == 401);
}

TEST_CASE("sparse UIDs (Gmail's INBOX, after = move): the first sync does not walk empty ranges") {
  EmailDaemon d;
  d.dovecot.deliver(test_email(1, 1));
  d.dovecot.doveadm("mailbox update -u alice --min-next-uid 20000000 INBOX");
  d.dovecot.deliver(test_email(2, 2));
  auto start = std::chrono::steady_clock::now();
  d.start();
  // 200 UIDs a range, one round trip each, were 100,000 empty fetches (15 s on loopback, an
  // hour to a server 40 ms away) before the second message.
  REQUIRE(eventually([&] { return d.queued() >= 2; }, 60s));
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(d.distinct_queued() == 2);
}

TEST_CASE("a session that fails after SELECT every time still backs off") {
  // Dovecot closes the session (BYE) when it cannot read a message file: login and SELECT
  // succeed, every FETCH fails - as with a server that throttles after login. (After three
  // attempts the message is given up as a placeholder, test_unfetchable.cpp; the first attempts
  // are what is measured here.)
  EmailDaemon d;
  d.dovecot.deliver(test_email(1, 1));
  std::string maildir = d.dovecot.ca_file();
  maildir = maildir.substr(0, maildir.rfind('/')) + "/home/alice/Maildir";
  REQUIRE(std::system(("grep -rl 'msg-1@example.com' " + maildir + "/new " + maildir +
                       "/cur | xargs chmod 000")
                          .c_str()) == 0);
  d.start();
  std::this_thread::sleep_for(4s);  // a rate is measured: min back-off 0.5 s, doubling
  auto m = d.metrics();
  const std::string key = R"(switchboard_channel_errors_total{channel="email",account="support"} )";
  auto at = m.find(key);
  REQUIRE(at != std::string::npos);
  long errors = std::stol(m.substr(at + key.size()));
  MESSAGE("failed sessions in 4 s: " << errors);
  CHECK(errors >= 2);
  CHECK(errors <= 5);
}
