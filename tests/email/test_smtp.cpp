// SMTP replies (acceptance 5 without the HTTP route): the Sender registered by the daemon sends
// through a local aiosmtpd server; the customer's answer to it, delivered into Dovecot, lands
// in the same conversation.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "channels/email/mime.hpp"
#include "channels/email/rfc2047.hpp"
#include "channels/email/smtp.hpp"
#include "channels/email/smtp_client.hpp"
#include "channels/email/threading.hpp"
#include "core/time.hpp"
#include "storage/interaction_json.hpp"
#include "tests/email/email_daemon.hpp"
#include "tests/email/smtp_server.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

SendResult send_and_wait(Sender& s, OutboundMessage m) {
  auto p = std::make_shared<std::promise<SendResult>>();
  auto f = p->get_future();
  s.send(std::move(m), [p](SendResult r) { p->set_value(std::move(r)); });
  REQUIRE(f.wait_for(30s) == std::future_status::ready);
  return f.get();
}

config::Smtp smtp_account(std::uint16_t port, const std::string& tls, const std::string& ca) {
  config::Smtp s;
  s.name = "support-out";
  s.for_account = "support";
  s.host = tls == "none" ? "127.0.0.1" : "localhost";
  s.port = port;
  s.tls = tls;
  s.ca_file = ca;
  if (tls != "none") {
    s.username = "agent";
    s.password = "p4ss";
  }
  s.from = "Support Team <support@example.com>";
  return s;
}

}  // namespace

TEST_CASE(
    "a reply goes out over STARTTLS with threading headers - the customer's answer joins the "
    "conversation") {
  SmtpServer smtp(true);
  EmailDaemon d;
  d.cfg.channels.smtp.push_back(smtp_account(smtp.port, "starttls", smtp.dir.file("cert.pem")));
  d.start();
  d.dovecot.deliver(
      "From: Ann Lee <ann@example.com>\r\nTo: support@example.com\r\nSubject: "
      "=?UTF-8?B?V28gaXN0IG1laW5lIEJlc3RlbGx1bmc/IMOcYmVyZsOkbGxpZw==?=\r\n"
      "Message-ID: <first@customer.example>\r\n"
      "References: <root@customer.example> <older@customer.example>\r\n"
      "In-Reply-To: <older@customer.example>\r\nDate: Fri, 02 Jan 2026 03:04:05 +0000\r\n\r\n"
      "Where is my order?\r\n");
  REQUIRE(eventually([&] { return d.queued() >= 1; }, 30s));
  auto parent = d.payloads().at(0);
  std::string conv(parent.at("conversation_id").as_string());
  std::string subject(parent.at("subject").as_string());
  CHECK(subject ==
        "Wo ist meine Bestellung? \xc3\x9c"
        "berf\xc3\xa4llig");

  Sender* sender = d.app->senders().find("email", "support");
  REQUIRE(sender != nullptr);
  OutboundMessage m{"01JTESTREPLY00000000000000",
                    "email",
                    "support",
                    conv,
                    "Hallo Ann,\n.\n.a line starting with a dot\nGr\xc3\xbc\xc3\x9f"
                    "e, Support",
                    json::serialize(parent),
                    ""};
  // What the reply route records with the outbound interaction, before the first attempt
  // (agents/records.hpp Records::reply): the key of the Message-ID the send will carry.
  auto planned = sender->planned_thread_keys(m.id, conv);
  REQUIRE(planned.size() == 1);
  {
    storage::Db db(d.dir.file("switchboard.db"));
    auto k = db.prepare("INSERT INTO conversation_keys(key, conversation_id) VALUES (?1, ?2)");
    k.bind(1, planned[0]).bind(2, conv).run();
  }
  auto r = send_and_wait(*sender, m);
  REQUIRE(r.status == SendResult::Status::sent);
  CHECK(r.provider_id.rfind("<sb." + conv + ".", 0) == 0);
  CHECK(r.thread_keys == planned);  // the id sent is the one recorded
  CHECK(planned[0] == "email:support:" + r.provider_id);
  CHECK(sender->planned_id(m.id, conv) == r.provider_id);  // what the route stores with it
  REQUIRE(smtp.has(1));
  CHECK(smtp.envelope(1) == "support@example.com\nann@example.com\n");

  std::string raw = smtp.message(1);
  std::string head = raw.substr(0, raw.find("\r\n\r\n"));
  CHECK(std::all_of(head.begin(), head.end(), [](char c) { return (c & 0x80) == 0; }));
  CHECK(head.find("MIME-Version: 1.0") != std::string::npos);
  CHECK(head.find("Content-Type: text/plain; charset=utf-8") != std::string::npos);
  CHECK((head.rfind("Date: ", 0) == 0 || head.find("\nDate: ") != std::string::npos));
  auto sent = email::parse_email(raw);
  CHECK_FALSE(sent.malformed);
  CHECK(sent.subject == "Re: " + subject);
  CHECK(sent.from.email == "support@example.com");
  CHECK(sent.from.name == "Support Team");
  REQUIRE(sent.to.size() == 1);
  CHECK(sent.to[0].email == "ann@example.com");
  CHECK(sent.to[0].name == "Ann Lee");
  CHECK(sent.message_id == r.provider_id);
  CHECK(sent.in_reply_to == "<first@customer.example>");
  // The whole chain (RFC 5322 3.6.4), not only the parent's In-Reply-To and Message-ID.
  CHECK(sent.references == std::vector<std::string>{"<root@customer.example>",
                                                    "<older@customer.example>",
                                                    "<first@customer.example>"});
  CHECK(sent.text.find("\n.a line starting with a dot\n") != std::string::npos);
  CHECK(sent.text.find("Gr\xc3\xbc\xc3\x9f"
                       "e, Support") != std::string::npos);
  CHECK(sent.date_ms > 0);

  // The customer answers our reply only (no References, a new subject): our Message-ID, as
  // recorded, is what threads it.
  d.dovecot.deliver(
      "From: ann@example.com\r\nTo: support@example.com\r\nSubject: one more thing\r\n"
      "Message-ID: <second@customer.example>\r\nIn-Reply-To: " +
      r.provider_id + "\r\n\r\nAlso, the colour is wrong.\r\n");
  REQUIRE(eventually([&] { return d.queued() >= 2; }, 30s));
  auto answer = d.payloads().at(1);
  CHECK(answer.at("external_id").as_string() == "<second@customer.example>");
  CHECK(answer.at("conversation_id").as_string() == conv);
  // A stranger's unrelated mail starts a conversation of its own.
  d.dovecot.deliver(test_email(9, 9));
  REQUIRE(eventually([&] { return d.queued() >= 3; }, 30s));
  CHECK(d.payloads().at(2).at("conversation_id").as_string() != conv);
}

TEST_CASE(
    "a reload's new IMAP and SMTP passwords are used from the next login and the next send, and "
    "are never logged") {
  LogCapture log("daemon");  // before the daemon, which logs from its own threads
  LogCapture email("email");
  SmtpServer smtp(true);
  EmailDaemon d;
  d.cfg.channels.imap.at(0).password = "the old password";  // changed at the server since
  auto out = smtp_account(smtp.port, "starttls", smtp.dir.file("cert.pem"));
  out.password = "old-p4ss";
  d.cfg.channels.smtp.push_back(out);
  d.start();
  d.dovecot.deliver(test_email(1, 1));
  // The old password fails every login: nothing comes in, a reply is refused.
  std::this_thread::sleep_for(1s);
  REQUIRE(d.queued() == 0);
  auto fresh = d.cfg;
  fresh.channels.imap.at(0).password = Dovecot::password;
  fresh.channels.smtp.at(0).password = "p4ss";
  REQUIRE(d.app->reload(fresh).empty());
  REQUIRE(eventually([&] { return d.queued() == 1; }, 30s));
  auto parent = d.payloads().at(0);
  Sender* sender = d.app->senders().find("email", "support");
  REQUIRE(sender != nullptr);
  OutboundMessage m{"01JROTATEDPASSWORD00000000",
                    "email",
                    "support",
                    std::string(parent.at("conversation_id").as_string()),
                    "Here.",
                    json::serialize(parent),
                    ""};
  auto r = send_and_wait(*sender, m);
  CHECK(r.status == SendResult::Status::sent);
  CHECK(smtp.has(1));
  d.stop();
  CHECK(
      log.lines_with("reload: channels.imap support: password applied from its next use").size() ==
      1);
  CHECK(log.lines_with("reload: channels.smtp support-out: password applied from its next use")
            .size() == 1);
  // Neither the failed logins nor the reload name a password, the old or the new one.
  for (const std::string& text : {log.text(), email.text()}) {
    CHECK(text.find("the old password") == std::string::npos);
    CHECK(text.find("p4ss") == std::string::npos);  // old-p4ss too
    CHECK(text.find(Dovecot::password) == std::string::npos);
    CHECK(text.find("s3cret") == std::string::npos);
  }
  CHECK(!email.text().empty());  // it did log: the checks mean something
}

TEST_CASE("SMTP 4xx is retried later, 5xx fails with the server's text, no address fails at once") {
  SmtpServer smtp(false);
  boost::asio::io_context io;
  email::SmtpSender sender(io.get_executor(), smtp_account(smtp.port, "none", ""));
  auto work = boost::asio::make_work_guard(io);
  std::thread t([&] { io.run(); });
  auto parent = [](const std::string& addr) {
    return R"({"direction":"inbound","external_id":"<p@x.example>","subject":"Re: hi","from":{"type":"email","value":")" +
           addr + R"("}})";
  };
  auto temp = send_and_wait(
      sender, {"01A", "email", "support", "c1", "hi", parent("tempfail@x.example"), ""});
  CHECK(temp.status == SendResult::Status::retry);
  CHECK(temp.error.find("451") != std::string::npos);
  auto perm = send_and_wait(
      sender, {"01B", "email", "support", "c1", "hi", parent("reject@x.example"), ""});
  CHECK(perm.status == SendResult::Status::failed);
  CHECK(perm.error.find("550 5.1.1 no such user here") != std::string::npos);
  auto none = send_and_wait(
      sender, {"01C", "email", "support", "c1", "hi",
               R"({"direction":"inbound","from":{"type":"phone","value":"+1"}})", ""});
  CHECK(none.status == SendResult::Status::failed);
  auto ok =
      send_and_wait(sender, {"01D", "email", "support", "c1", "hi", parent("bob@x.example"), ""});
  CHECK(ok.status == SendResult::Status::sent);
  REQUIRE(smtp.has(1));
  CHECK(smtp.message(1).find("Subject: Re: hi\r\n") != std::string::npos);  // no "Re: Re:"
  work.reset();
  io.stop();
  t.join();
}

namespace {

// A one-connection SMTP server (blocking sockets, its own thread) that answers the final "."
// after `final_delay`, as servers that scan content do. Counts the messages it received.
struct SlowSmtp {
  int fd = -1;
  std::uint16_t port = 0;
  std::atomic<int> messages{0};
  std::thread t;
  explicit SlowSmtp(std::chrono::milliseconds final_delay) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 4) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    t = std::thread([this, final_delay] {
      int c = ::accept(fd, nullptr, nullptr);
      if (c < 0) {
        return;
      }
      auto say = [&](const std::string& line) { (void)!::write(c, line.data(), line.size()); };
      std::string in;
      bool data = false;
      say("220 slow.example ESMTP\r\n");
      char buf[4096];
      while (true) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) {
          break;
        }
        in.append(buf, static_cast<std::size_t>(n));
        std::size_t eol;
        while (!data && (eol = in.find("\r\n")) != std::string::npos) {
          std::string cmd = in.substr(0, eol);
          in.erase(0, eol + 2);
          if (cmd.rfind("DATA", 0) == 0) {
            data = true;
            say("354 go on\r\n");
          } else if (cmd.rfind("QUIT", 0) == 0) {
            say("221 bye\r\n");
          } else {
            say("250 ok\r\n");
          }
        }
        if (data && (eol = in.find("\r\n.\r\n")) != std::string::npos) {
          in.erase(0, eol + 5);
          data = false;
          ++messages;
          std::this_thread::sleep_for(final_delay);
          say("250 queued as 1\r\n");
        }
      }
      ::close(c);
    });
  }
  ~SlowSmtp() {
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
    t.join();
  }
};

email::smtp::Outcome send_to(std::uint16_t port, std::chrono::milliseconds step,
                             std::chrono::milliseconds final_reply) {
  boost::asio::io_context io;
  boost::asio::ssl::context tls(boost::asio::ssl::context::tls_client);
  email::smtp::Options o;
  o.host = "127.0.0.1";
  o.port = port;
  o.tls = "none";
  o.timeout = step;
  o.final_reply_timeout = final_reply;
  email::smtp::Envelope env{"support@example.com", {"ann@example.com"}, "Subject: hi\r\n\r\nhi"};
  auto f = boost::asio::co_spawn(io, email::smtp::send(io.get_executor(), tls, o, env),
                                 boost::asio::use_future);
  io.run();
  return f.get();
}

}  // namespace

TEST_CASE(
    "SMTP: the reply to the final '.' may take longer than a step (RFC 5321: 10 minutes), so a "
    "message the server accepts late is sent once, not reported failed and sent again") {
  {
    SlowSmtp server(std::chrono::milliseconds(600));
    auto out = send_to(server.port, std::chrono::milliseconds(200), std::chrono::seconds(5));
    CHECK(out.status == email::smtp::Outcome::Status::sent);
    CHECK(server.messages.load() == 1);
  }
  {
    SlowSmtp server(std::chrono::milliseconds(600));
    auto out = send_to(server.port, std::chrono::milliseconds(200), std::chrono::milliseconds(300));
    CHECK(out.status == email::smtp::Outcome::Status::temporary);  // its own deadline still holds
    CHECK(out.error.find("message body") != std::string::npos);
  }
}

TEST_CASE("a reply to a web form's mail goes to its Reply-To, the customer, not to From") {
  std::string raw =
      "From: Shop Forms <noreply@forms.example>\r\nReply-To: Ann Lee <Ann@Example.com>\r\n"
      "To: support@example.com\r\nSubject: New contact form submission\r\n"
      "Message-ID: <form-1@forms.example>\r\n\r\nWhere is order 7?\r\n";
  auto in = email::to_inbound(email::parse_email(raw), "support", "INBOX");
  REQUIRE(in.from);
  CHECK(in.from->value == "noreply@forms.example");  // the customer matched is still the sender
  REQUIRE(in.reply_to);
  CHECK(in.reply_to->value == "ann@example.com");
  storage::StoredMeta meta;
  meta.id = "01JTESTPARENT0000000000001";
  meta.received_at_ms = 1767323045000;
  std::string payload = storage::interaction_json(in, meta);
  CHECK(json::parse(payload).at("reply_to").at("value").as_string() == "ann@example.com");

  config::Smtp account;
  account.name = "support-out";
  account.for_account = "support";
  account.from = "Support <support@example.com>";
  OutboundMessage m{
      "01JTESTREPLY00000000000002", "email", "support", "c1", "It ships today", payload, ""};
  auto built = email::build_reply(account, m, 1767323045000);
  REQUIRE(built.error.empty());
  CHECK(built.rcpt_to == "ann@example.com");
  CHECK(built.data.find("noreply@forms.example") == std::string::npos);

  // Without Reply-To (or with the sender's own address there) nothing changes.
  auto plain = email::to_inbound(
      email::parse_email("From: bob@example.com\r\nReply-To: Bob <BOB@example.com>\r\n"
                         "Subject: hi\r\n\r\nhi\r\n"),
      "support", "INBOX");
  CHECK_FALSE(plain.reply_to);
  CHECK(storage::interaction_json(plain, meta).find("reply_to") == std::string::npos);
}

TEST_CASE(
    "a Reply-To naming our own address is passed over - the reply goes to From, and is not built "
    "when From is ours too") {
  config::Smtp account;
  account.name = "support-out";
  account.for_account = "support";
  account.from = "Support <Support@Example.com>";
  auto parent = [](const std::string& raw) {
    auto in = email::to_inbound(email::parse_email(raw), "support", "INBOX");
    storage::StoredMeta meta;
    meta.id = "01JTESTPARENT0000000000002";
    meta.received_at_ms = 1767323045000;
    return storage::interaction_json(in, meta);
  };
  auto reply = [&](const std::string& parent_json, const std::set<std::string>& own) {
    OutboundMessage m{
        "01JTESTREPLY00000000000004", "email", "support", "c1", "Hello", parent_json, ""};
    return email::build_reply(account, m, 1767323045000, own);
  };
  // A customer whose client sets Reply-To to the address they wrote to (ours).
  std::string to_us = parent(
      "From: Ann Lee <ann@example.com>\r\nReply-To: Support <support@example.com>\r\n"
      "To: support@example.com\r\nSubject: order\r\nMessage-ID: <r1@customer.example>\r\n\r\n"
      "hi\r\n");
  auto built = reply(to_us, {});
  REQUIRE(built.error.empty());
  CHECK(built.rcpt_to == "ann@example.com");
  // Another mailbox we poll (sales@, a second [[channels.imap]] account) is ours as well.
  std::string to_sales = parent(
      "From: ann@example.com\r\nReply-To: sales@example.com\r\nSubject: order\r\n"
      "Message-ID: <r2@customer.example>\r\n\r\nhi\r\n");
  CHECK(reply(to_sales, {}).rcpt_to == "sales@example.com");
  CHECK(reply(to_sales, {"sales@example.com"}).rcpt_to == "ann@example.com");
  // Our own mail (From and Reply-To ours): nothing to build, a clear reason.
  std::string ours = parent(
      "From: Support <support@example.com>\r\nReply-To: sales@example.com\r\n"
      "Subject: order\r\nMessage-ID: <r3@example.com>\r\n\r\nhi\r\n");
  auto refused = reply(ours, {"sales@example.com"});
  CHECK(refused.rcpt_to.empty());
  CHECK(refused.data.empty());
  CHECK(refused.error.find("our own address") != std::string::npos);

  // The addresses the channel owns: IMAP usernames that are addresses, SMTP from and username.
  config::Channels channels;
  channels.imap.push_back(config::Imap{});
  channels.imap.back().username = "Sales@Example.com";
  channels.imap.push_back(config::Imap{});
  channels.imap.back().username = "alice";  // a local login, no address
  channels.smtp.push_back(account);
  channels.smtp.back().username = "relay-user";
  CHECK(email::own_addresses(channels) ==
        std::set<std::string>{"sales@example.com", "support@example.com"});
}

TEST_CASE("dot-stuffing and line ends") {
  CHECK(email::smtp::dot_stuff(".a\n..b\r\nc.\rd") == "..a\r\n...b\r\nc.\r\nd\r\n");
  CHECK(email::smtp::dot_stuff("") == "");
}

TEST_CASE("ids from the customer's mail with CR/LF or blanks never become reply header lines") {
  // A Message-ID is the customer's text: before it was read from the raw header, an encoded
  // word in it decoded to CR LF, and rows stored then still carry such ids.
  config::Smtp account;
  account.name = "support-out";
  account.for_account = "support";
  account.from = "Support <support@example.com>";
  json::object parent{{"direction", "inbound"},
                      {"subject", "Order 7"},
                      {"external_id", "<a\r\nBcc: evil@example.org\r\n\r\nForged body@x.example>"},
                      {"in_reply_to", "<b\r\nReply-To: evil@example.org>"},
                      {"from", {{"type", "email"}, {"value", "ann@example.com"}}}};
  OutboundMessage m{"01JTESTREPLY00000000000001", "email", "support", "c1", "Hello Ann",
                    json::serialize(parent),      ""};
  auto built = email::build_reply(account, m, 1767323045000);
  REQUIRE(built.error.empty());
  std::string head = built.data.substr(0, built.data.find("\r\n\r\n") + 2);
  CHECK(head.find("\r\nBcc:") == std::string::npos);
  CHECK(head.find("\r\nReply-To:") == std::string::npos);
  CHECK(head.find("evil@example.org") == std::string::npos);
  CHECK(built.data.find("Forged body") == std::string::npos);
  auto sent = email::parse_email(built.data);
  CHECK(sent.text == "Hello Ann");
  CHECK(sent.to.size() == 1);
}

namespace {

// The names of the header fields of a message as it goes on the wire (after dot-stuffing,
// which turns a bare CR or LF into CRLF), folded lines joined to the field they continue.
std::vector<std::string> wire_header_names(const std::string& data) {
  std::string wire = email::smtp::dot_stuff(data);
  std::vector<std::string> names;
  for (std::size_t at = 0; at < wire.size();) {
    std::size_t end = wire.find("\r\n", at);
    std::string line = wire.substr(at, end - at);
    at = end + 2;
    if (line.empty()) {
      break;  // the blank line that ends the header block
    }
    if (line[0] == ' ' || line[0] == '\t') {
      continue;  // a folded continuation
    }
    names.push_back(line.substr(0, line.find(':')));
  }
  return names;
}

}  // namespace

TEST_CASE("CR or LF in the customer's Subject never becomes a header line or body of our reply") {
  // Encoded words may carry any byte: "=0D=0A" decodes to CR LF. The subject is stored with
  // controls as spaces, so no header line of the customer's making reaches the reply.
  auto in = email::parse_email(
      "From: ann@example.com\r\nSubject: =?utf-8?Q?Order=0D=0ABcc:_x@evil.example?=\r\n"
      "Message-ID: <s1@customer.example>\r\n\r\nhi\r\n");
  CHECK(in.subject == "Order  Bcc: x@evil.example");
  CHECK(email::parse_email("From: a@example.com\r\nSubject: =?utf-8?Q?a=01b=7Fc=09d?=\r\n\r\nx")
            .subject == "a b c d");

  // Rows stored before, with the controls still in: build_reply replaces them as well.
  config::Smtp account;
  account.name = "support-out";
  account.for_account = "support";
  account.from = "Support <support@example.com>";
  auto reply_to = [&](const std::string& subject) {
    json::object parent{{"direction", "inbound"},
                        {"subject", subject},
                        {"external_id", "<s2@customer.example>"},
                        {"from", {{"type", "email"}, {"value", "ann@example.com"}}}};
    OutboundMessage m{"01JTESTREPLY00000000000006", "email", "support", "c1", "Hello Ann",
                      json::serialize(parent),      ""};
    return email::build_reply(account, m, 1767323045000);
  };
  // The headers we set, as a reply to a plain subject has them.
  const auto ours = wire_header_names(reply_to("Order 7").data);
  CHECK(ours.size() >= 8);
  CHECK(std::find(ours.begin(), ours.end(), "Subject") != ours.end());
  for (const std::string subject :
       {"Order 7\r\nBcc: evil@example.org", "Order 7\nBcc: evil@example.org",
        "Order 7\rBcc: evil@example.org", "Order 7\r\rForged body\r\r.\r\rRCPT TO:<evil>",
        "Order 7\r\n\r\nForged body"}) {
    CAPTURE(subject);
    auto built = reply_to(subject);
    REQUIRE(built.error.empty());
    CHECK(wire_header_names(built.data) == ours);
    auto sent = email::parse_email(email::smtp::dot_stuff(built.data));
    CHECK(sent.text == "Hello Ann");
    CHECK(sent.to.size() == 1);
    CHECK(sent.cc.empty());
    CHECK(sent.subject.rfind("Re: Order 7 ", 0) == 0);
    CHECK(sent.subject.find_first_of("\r\n") == std::string::npos);
  }
}

TEST_CASE("CR or LF in the customer's display name never reaches our reply's To name") {
  // A name decoded from an encoded word may hold CR LF; GMime encodes it on the wire, and the
  // customer's client decodes it back: the reply's To carries it as spaces.
  config::Smtp account;
  account.name = "support-out";
  account.for_account = "support";
  account.from = "Support <support@example.com>";
  json::object parent{{"direction", "inbound"},
                      {"subject", "Order 7"},
                      {"external_id", "<n1@customer.example>"},
                      {"from",
                       {{"type", "email"},
                        {"value", "ann@example.com"},
                        {"name", "Ann\r\nBcc: evil@example.org\r\n\r\nForged"}}}};
  OutboundMessage m{"01JTESTREPLY00000000000009", "email", "support", "c1", "Hello Ann",
                    json::serialize(parent),      ""};
  auto built = email::build_reply(account, m, 1767323045000);
  REQUIRE(built.error.empty());
  // The To field as a client decodes it (RFC 2047 words kept whole, controls too).
  const std::string& data = built.data;
  std::size_t at = data.find("\r\nTo: ");
  REQUIRE(at != std::string::npos);
  std::size_t end = at + 2;
  do {  // unfold
    end = data.find("\r\n", end + 1);
  } while (end != std::string::npos && (data[end + 2] == ' ' || data[end + 2] == '\t'));
  std::string field = data.substr(at + 6, end - at - 6);
  std::erase(field, '\r');
  std::erase(field, '\n');
  std::string decoded = email::decode_rfc2047(field);
  CAPTURE(decoded);
  CHECK(decoded.find_first_of("\r\n") == std::string::npos);
  CHECK(decoded.find("Ann") != std::string::npos);
  auto sent = email::parse_email(email::smtp::dot_stuff(built.data));
  REQUIRE(sent.to.size() == 1);
  CHECK(sent.to[0].email == "ann@example.com");
  CHECK(sent.cc.empty());
  CHECK(sent.text == "Hello Ann");
}

TEST_CASE("a reply's subject has one Re: in front, whatever reply prefixes the parent had") {
  config::Smtp account;
  account.name = "support-out";
  account.for_account = "support";
  account.from = "Support <support@example.com>";
  auto subject_of_reply = [&](const std::string& subject) {
    json::object parent{{"direction", "inbound"},
                        {"subject", subject},
                        {"external_id", "<p1@customer.example>"},
                        {"from", {{"type", "email"}, {"value", "ann@example.com"}}}};
    OutboundMessage m{"01JTESTREPLY00000000000007", "email", "support", "c1", "Hello Ann",
                      json::serialize(parent),      ""};
    auto built = email::build_reply(account, m, 1767323045000);
    REQUIRE(built.error.empty());
    return email::parse_email(built.data).subject;
  };
  CHECK(subject_of_reply("Order 7") == "Re: Order 7");
  CHECK(subject_of_reply("Re: Order 7") == "Re: Order 7");
  CHECK(subject_of_reply("AW: Re: Order 7") == "Re: Order 7");
  CHECK(subject_of_reply("RE: SV: Order 7") == "Re: Order 7");
  CHECK(subject_of_reply("AW: Bestellung \xC3\xBC") == "Re: Bestellung \xC3\xBC");
  // A forward is kept, as Gmail, Outlook and Thunderbird keep it; the next round adds nothing.
  CHECK(subject_of_reply("Fwd: Order 7") == "Re: Fwd: Order 7");
  CHECK(subject_of_reply("Re: Fwd: Order 7") == "Re: Fwd: Order 7");
  CHECK(subject_of_reply("") == "Re:");
}

TEST_CASE("a second reply, to our own reply, names our first reply in In-Reply-To and References") {
  config::Smtp account;
  account.name = "support-out";
  account.for_account = "support";
  account.from = "Support <support@example.com>";
  // What the agents' reply route stores for our first reply: the parent's chain plus the parent.
  json::object ours{
      {"direction", "outbound"},
      {"subject", "Re: Order 7"},
      {"external_id", "01JTESTREPLY00000000000002"},
      {"in_reply_to", "<first@customer.example>"},
      {"references", json::array{"<root@customer.example>", "<first@customer.example>"}},
      {"to", json::array{{{"type", "email"}, {"value", "ann@example.com"}}}}};
  OutboundMessage m{"01JTESTREPLY00000000000003", "email", "support", "c1", "One more thing",
                    json::serialize(ours),        ""};
  auto built = email::build_reply(account, m, 1767323045000);
  REQUIRE(built.error.empty());
  auto sent = email::parse_email(built.data);
  // Our first reply went out as the Message-ID derived from its id (reply_message_id): the
  // second names it as its parent, In-Reply-To and the last of References (RFC 5322 3.6.4),
  // so the customer's client threads it under our first, not under the customer's message.
  const std::string first_reply = "<sb.c1.01jtestreply00000000000002@example.com>";
  CHECK(email::reply_message_id(account, "01JTESTREPLY00000000000002", "c1") == first_reply);
  CHECK(sent.in_reply_to == first_reply);
  CHECK(sent.references == std::vector<std::string>{"<root@customer.example>",
                                                    "<first@customer.example>", first_reply});
  CHECK(sent.to.at(0).email == "ann@example.com");

  // The conversation the first reply was sent in is the one in its Message-ID.
  ours["conversation_id"] = "c0";
  OutboundMessage again{"01JTESTREPLY00000000000003", "email", "support", "c1", "One more thing",
                        json::serialize(ours),        ""};
  CHECK(email::parse_email(email::build_reply(account, again, 1767323045000).data).in_reply_to ==
        "<sb.c0.01jtestreply00000000000002@example.com>");

  // A third, to the second: the route stored the second with our first reply's id in its chain.
  json::object second{
      {"direction", "outbound"},
      {"subject", "Re: Order 7"},
      {"external_id", "01JTESTREPLY00000000000003"},
      {"conversation_id", "c1"},
      {"in_reply_to", "01JTESTREPLY00000000000002"},
      {"references", json::array{"<root@customer.example>", "<first@customer.example>",
                                 "01JTESTREPLY00000000000002"}},
      {"to", json::array{{{"type", "email"}, {"value", "ann@example.com"}}}}};
  OutboundMessage third{"01JTESTREPLY00000000000004", "email", "support", "c1", "And another",
                        json::serialize(second),      ""};
  auto third_sent = email::parse_email(email::build_reply(account, third, 1767323045000).data);
  CHECK(third_sent.in_reply_to == "<sb.c1.01jtestreply00000000000003@example.com>");
  CHECK(third_sent.references ==
        std::vector<std::string>{"<root@customer.example>", "<first@customer.example>", first_reply,
                                 "<sb.c1.01jtestreply00000000000003@example.com>"});
}

TEST_CASE(
    "after `from` changed domain, a reply goes out with the Message-ID stored with it and names "
    "our earlier replies by the Message-IDs they went out with") {
  config::Smtp account;
  account.name = "support-out";
  account.for_account = "support";
  account.from = "Support <support@example.net>";  // was support@example.com
  const std::string first_reply = "<sb.c1.01jtestreply00000000000002@example.com>";
  const std::string second_reply = "<sb.c1.01jtestreply00000000000003@example.com>";
  // Our second reply, to our first: stored (and maybe tried) while `from` was @example.com.
  json::object second{
      {"direction", "outbound"},
      {"subject", "Re: Order 7"},
      {"external_id", "01JTESTREPLY00000000000003"},
      {"conversation_id", "c1"},
      {"in_reply_to", "01JTESTREPLY00000000000002"},
      {"references", json::array{"<first@customer.example>", "01JTESTREPLY00000000000002"}},
      {"to", json::array{{{"type", "email"}, {"value", "ann@example.com"}}}}};
  OutboundMessage third{
      "01JTESTREPLY00000000000004",
      "email",
      "support",
      "c1",
      "And another",
      json::serialize(second),
      "",
      false,
      0,
      "<sb.c1.01jtestreply00000000000004@example.com>",
      {{"01JTESTREPLY00000000000002", first_reply}, {"01JTESTREPLY00000000000003", second_reply}}};
  auto built = email::build_reply(account, third, 1767323045000);
  REQUIRE(built.error.empty());
  CHECK(built.message_id == "<sb.c1.01jtestreply00000000000004@example.com>");
  auto sent = email::parse_email(built.data);
  CHECK(sent.message_id == built.message_id);
  CHECK(sent.from.email == "support@example.net");
  CHECK(sent.in_reply_to == second_reply);
  CHECK(sent.references ==
        std::vector<std::string>{"<first@customer.example>", first_reply, second_reply});

  // A reply stored by an older build kept no Message-ID: rebuilt from `from` as it is now.
  third.planned_id.clear();
  third.earlier_ids.erase("01JTESTREPLY00000000000003");
  auto rebuilt = email::parse_email(email::build_reply(account, third, 1767323045000).data);
  CHECK(rebuilt.message_id == "<sb.c1.01jtestreply00000000000004@example.net>");
  CHECK(rebuilt.in_reply_to == "<sb.c1.01jtestreply00000000000003@example.net>");
  CHECK(rebuilt.references == std::vector<std::string>{"<first@customer.example>", first_reply,
                                                       "<sb.c1.01jtestreply00000000000003@"
                                                       "example.net>"});
}

TEST_CASE("a reply to a message stored under a reused Message-ID names that Message-ID") {
  config::Smtp account;
  account.name = "support-out";
  account.for_account = "support";
  account.from = "Support <support@example.com>";
  // Another message under an id already stored: its external id carries "#<hash>".
  json::object parent{{"direction", "inbound"},
                      {"subject", "Order 7"},
                      {"external_id", "<dup@mailer.example>#0123456789abcdef"},
                      {"references", json::array{"<root@mailer.example>"}},
                      {"from", {{"type", "email"}, {"value", "ann@example.com"}}}};
  OutboundMessage m{"01JTESTREPLY00000000000004", "email", "support", "c1", "Hello Ann",
                    json::serialize(parent),      ""};
  auto built = email::build_reply(account, m, 1767323045000);
  REQUIRE(built.error.empty());
  auto sent = email::parse_email(built.data);
  CHECK(sent.in_reply_to == "<dup@mailer.example>");
  CHECK(sent.references ==
        std::vector<std::string>{"<root@mailer.example>", "<dup@mailer.example>"});
  // Our next reply, to that reply: the route stored the parent's external id in its chain.
  json::object ours{
      {"direction", "outbound"},
      {"subject", "Re: Order 7"},
      {"external_id", "01JTESTREPLY00000000000004"},
      {"in_reply_to", "<dup@mailer.example>#0123456789abcdef"},
      {"references", json::array{"<root@mailer.example>", "<dup@mailer.example>#0123456789abcdef"}},
      {"to", json::array{{{"type", "email"}, {"value", "ann@example.com"}}}}};
  OutboundMessage next{"01JTESTREPLY00000000000005", "email", "support", "c1", "One more thing",
                       json::serialize(ours),        ""};
  auto second = email::build_reply(account, next, 1767323045000);
  REQUIRE(second.error.empty());
  CHECK(email::parse_email(second.data).references ==
        std::vector<std::string>{"<root@mailer.example>", "<dup@mailer.example>",
                                 "<sb.c1.01jtestreply00000000000004@example.com>"});
}

TEST_CASE("a reply keeps every line within 998 bytes - a long paragraph, a customer's huge ids") {
  config::Smtp account;
  account.name = "support-out";
  account.for_account = "support";
  account.from = "Support <support@example.com>";
  const std::string huge_id = "<" + std::string(1500, 'h') + "@customer.example>";
  const std::string long_id = "<" + std::string(850, 'l') + "@customer.example>";
  json::object parent{{"direction", "inbound"},
                      {"subject", "Order 7"},
                      {"external_id", huge_id},
                      {"in_reply_to", long_id},
                      {"references", json::array{long_id, huge_id, "<short@customer.example>"}},
                      {"from", {{"type", "email"}, {"value", "ann@example.com"}}}};
  std::string paragraph;
  while (paragraph.size() < 3000) {
    paragraph += "Your order left our warehouse today. ";
  }
  paragraph.pop_back();
  for (const std::string& text : {paragraph, paragraph + "\n\xC3\xBC " + paragraph}) {
    OutboundMessage m{"01JTESTREPLY00000000000004", "email", "support", "c1", text,
                      json::serialize(parent),      ""};
    auto built = email::build_reply(account, m, 1767323045000);
    REQUIRE(built.error.empty());
    std::size_t longest = 0;
    for (std::size_t at = 0; at < built.data.size();) {
      std::size_t end = built.data.find("\r\n", at);
      end = end == std::string::npos ? built.data.size() : end;
      longest = std::max(longest, end - at);
      at = end + 2;
    }
    CHECK(longest <= 998);
    auto sent = email::parse_email(built.data);
    CHECK(sent.text == text);
    CHECK(sent.in_reply_to.empty());  // the parent's id is too long to name
    CHECK(sent.references == std::vector<std::string>{long_id, "<short@customer.example>"});
  }

  // A short ASCII reply is still plain 7bit.
  OutboundMessage m{"01JTESTREPLY00000000000005", "email", "support", "c1", "Hello Ann",
                    json::serialize(parent),      ""};
  auto built = email::build_reply(account, m, 1767323045000);
  CHECK(built.data.find("Content-Transfer-Encoding: 7bit") != std::string::npos);
}

namespace {

// Greets, then answers EHLO with "250-" lines that never end, until the client hangs up or
// `limit` bytes are written. `written`: how many bytes it got out.
struct EndlessSmtp {
  int fd = -1;
  std::uint16_t port = 0;
  std::atomic<std::size_t> written{0};
  std::thread t;
  explicit EndlessSmtp(std::size_t limit) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 4) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    t = std::thread([this, limit] {
      int c = ::accept(fd, nullptr, nullptr);
      if (c < 0) {
        return;
      }
      std::string greeting = "220 endless.example ESMTP\r\n";
      (void)!::send(c, greeting.data(), greeting.size(), MSG_NOSIGNAL);
      char buf[512];
      if (::read(c, buf, sizeof buf) > 0) {  // EHLO
        std::string chunk;
        while (chunk.size() < 64 * 1024) {
          chunk += "250-x\r\n";
        }
        while (written < limit) {
          ssize_t n = ::send(c, chunk.data(), chunk.size(), MSG_NOSIGNAL);
          if (n <= 0) {
            break;  // the client hung up
          }
          written += static_cast<std::size_t>(n);
        }
      }
      ::close(c);
    });
  }
  ~EndlessSmtp() {
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
    t.join();
  }
};

}  // namespace

TEST_CASE("SMTP: a reply whose lines never end is cut at 64 KiB, not kept growing in memory") {
  const std::size_t limit = 8u << 20;
  EndlessSmtp server(limit);
  auto out = send_to(server.port, 10s, 10s);
  CHECK(out.status == email::smtp::Outcome::Status::temporary);
  // The client hung up after 64 KiB of it, instead of reading all of it line by line into the
  // reply and failing only when the server closed ("EHLO: End of file").
  CHECK(out.error == "EHLO: Message too long");
  CHECK(server.written < limit);
}

namespace {

// One connection at a time (blocking sockets, its own thread): sends `greeting`, answers EHLO
// with `ehlo`, AUTH PLAIN / AUTH LOGIN as accepted, and the rest of a transaction with 250 / 354.
// A greeting that is not "220" ends the connection after it. Keeps every line it read.
struct ScriptedSmtp {
  int fd = -1;
  std::uint16_t port = 0;
  std::string greeting;
  std::string ehlo;
  std::mutex mu;
  std::vector<std::string> lines;
  std::atomic<int> connections{0};
  std::thread t;
  ScriptedSmtp(std::string g, std::string e) : greeting(std::move(g)), ehlo(std::move(e)) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 4) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    t = std::thread([this] {
      while (true) {
        int c = ::accept(fd, nullptr, nullptr);
        if (c < 0) {
          return;
        }
        ++connections;
        serve(c);
        ::close(c);
      }
    });
  }
  void serve(int c) {
    auto say = [&](const std::string& s) { (void)!::send(c, s.data(), s.size(), MSG_NOSIGNAL); };
    say(greeting);
    if (greeting.rfind("220", 0) != 0) {
      return;
    }
    std::string in;
    char buf[4096];
    int login_steps = 0;  // AUTH LOGIN: the user name and password lines still to come
    bool data = false;
    while (true) {
      std::size_t eol;
      while ((eol = in.find("\r\n")) != std::string::npos) {
        std::string line = in.substr(0, eol);
        in.erase(0, eol + 2);
        {
          std::lock_guard lock(mu);
          lines.push_back(line);
        }
        if (data) {
          if (line == ".") {
            data = false;
            say("250 queued\r\n");
          }
        } else if (login_steps > 0) {
          say(--login_steps > 0 ? "334 UGFzc3dvcmQ6\r\n" : "235 2.7.0 ok\r\n");
        } else if (line.rfind("EHLO", 0) == 0) {
          say(ehlo);
        } else if (line.rfind("AUTH LOGIN", 0) == 0) {
          login_steps = 2;
          say("334 VXNlcm5hbWU6\r\n");
        } else if (line.rfind("AUTH PLAIN", 0) == 0) {
          say("235 2.7.0 ok\r\n");
        } else if (line == "DATA") {
          data = true;
          say("354 go on\r\n");
        } else if (line == "QUIT") {
          say("221 bye\r\n");
          return;
        } else {
          say("250 ok\r\n");
        }
      }
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) {
        return;
      }
      in.append(buf, static_cast<std::size_t>(n));
    }
  }
  bool received(const std::string& prefix) {
    std::lock_guard lock(mu);
    return std::any_of(lines.begin(), lines.end(),
                       [&](const std::string& l) { return l.rfind(prefix, 0) == 0; });
  }
  ~ScriptedSmtp() {
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
    t.join();
  }
};

email::smtp::Outcome send_via(const ScriptedSmtp& server, const std::string& tls,
                              const std::string& username) {
  boost::asio::io_context io;
  boost::asio::ssl::context ctx(boost::asio::ssl::context::tls_client);
  email::smtp::Options o;
  o.host = "127.0.0.1";
  o.port = server.port;
  o.tls = tls;
  o.username = username;
  o.password = "p4ss";
  o.timeout = 5s;
  email::smtp::Envelope env{"support@example.com", {"ann@example.com"}, "Subject: hi\r\n\r\nhi"};
  auto f = boost::asio::co_spawn(io, email::smtp::send(io.get_executor(), ctx, o, env),
                                 boost::asio::use_future);
  io.run();
  return f.get();
}

}  // namespace

TEST_CASE(
    "SMTP: an answer that is not SMTP (an IMAP server on the port) fails at once, permanently, "
    "quoting it") {
  ScriptedSmtp imap("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] Dovecot ready.\r\n", "");
  auto out = send_via(imap, "none", "");
  CHECK(out.status == email::smtp::Outcome::Status::permanent);
  MESSAGE(out.error);
  CHECK(out.error ==
        "greeting: the server's answer is not an SMTP reply (another service on this port?): "
        "\"* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] Dovecot ready.\"");
  // Printable and cut: a terminal escape never reaches the log, a long line is shortened.
  ScriptedSmtp junk("\x1b[2J" + std::string(400, 'z') + "\r\n", "");
  auto cut = send_via(junk, "none", "");
  CHECK(cut.status == email::smtp::Outcome::Status::permanent);
  CHECK(cut.error.find('\x1b') == std::string::npos);
  CHECK(cut.error.find("...\"") != std::string::npos);
  CHECK(cut.error.size() < 250);
  // Not only the greeting: an EHLO answered by something else fails the same way.
  ScriptedSmtp odd("220 mx.example ESMTP\r\n", "HTTP/1.1 400 Bad Request\r\n");
  auto ehlo = send_via(odd, "none", "");
  CHECK(ehlo.status == email::smtp::Outcome::Status::permanent);
  CHECK(ehlo.error.find("EHLO: the server's answer is not an SMTP reply") == 0);

  // Through the Sender: failed, not queued for another attempt.
  ScriptedSmtp again("* OK IMAP4rev1 ready\r\n", "");
  boost::asio::io_context io;
  email::SmtpSender sender(io.get_executor(), smtp_account(again.port, "none", ""));
  auto work = boost::asio::make_work_guard(io);
  std::thread t([&] { io.run(); });
  auto r = send_and_wait(
      sender,
      {"01E", "email", "support", "c1", "hi",
       R"({"direction":"inbound","external_id":"<p@x.example>","subject":"hi","from":{"type":"email","value":"bob@x.example"}})",
       ""});
  CHECK(r.status == SendResult::Status::failed);
  CHECK(r.error.find("not an SMTP reply") != std::string::npos);
  work.reset();
  io.stop();
  t.join();
}

TEST_CASE(
    "SMTP: starttls configured but not offered - a permanent error naming what is offered, "
    "nothing sent in the clear") {
  ScriptedSmtp server("220 mx.example ESMTP\r\n",
                      "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 AUTH PLAIN "
                      "LOGIN\r\n");
  auto out = send_via(server, "starttls", "agent");
  CHECK(out.status == email::smtp::Outcome::Status::permanent);
  MESSAGE(out.error);
  CHECK(out.error ==
        "EHLO: the server does not offer STARTTLS (tls = \"starttls\"); it offers: PIPELINING, "
        "SIZE 10240000, AUTH PLAIN LOGIN");
  CHECK_FALSE(server.received("AUTH"));
  CHECK_FALSE(server.received("MAIL FROM"));
}

TEST_CASE("SMTP: no AUTH mechanism the client speaks - a permanent error naming those offered") {
  ScriptedSmtp cram("220 mx.example ESMTP\r\n",
                    "250-mx.example\r\n250-AUTH CRAM-MD5 DIGEST-MD5\r\n250 8BITMIME\r\n");
  auto out = send_via(cram, "none", "agent");
  CHECK(out.status == email::smtp::Outcome::Status::permanent);
  MESSAGE(out.error);
  CHECK(out.error ==
        "AUTH: the server offers neither AUTH PLAIN nor AUTH LOGIN (username is set); it offers "
        "AUTH CRAM-MD5 DIGEST-MD5");
  CHECK_FALSE(cram.received("MAIL FROM"));

  ScriptedSmtp none("220 mx.example ESMTP\r\n", "250-mx.example\r\n250 8BITMIME\r\n");
  auto bare = send_via(none, "none", "agent");
  CHECK(bare.status == email::smtp::Outcome::Status::permanent);
  CHECK(bare.error.find("its EHLO names no AUTH mechanism at all") != std::string::npos);

  // The pre-standard "AUTH=LOGIN" form (RFC 4954 predecessors) still finds LOGIN.
  ScriptedSmtp old("220 mx.example ESMTP\r\n", "250-mx.example\r\n250 AUTH=LOGIN\r\n");
  auto sent = send_via(old, "none", "agent");
  CHECK(sent.status == email::smtp::Outcome::Status::sent);
  CHECK(old.received("AUTH LOGIN"));
}
