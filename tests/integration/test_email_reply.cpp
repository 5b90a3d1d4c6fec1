// Issue 4 acceptance 5 through the agent API: a customer's mail delivered into Dovecot is
// claimed over HTTP, answered with POST .../reply, sent by the durable send queue through SMTP
// (aiosmtpd) with threading headers, and the customer's answer joins the same conversation. A
// reply never goes to our own address.
#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "channels/email/mime.hpp"
#include "tests/email/email_daemon.hpp"
#include "tests/email/smtp_server.hpp"
#include "tests/integration/agent_api.hpp"

using namespace sb;
using namespace sb::test;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

// The account "support" sends through `smtp`, as "Support Team <support@example.com>".
void send_through(EmailDaemon& d, const SmtpServer& smtp) {
  config::Smtp out;
  out.name = "support-out";
  out.for_account = "support";
  out.host = "127.0.0.1";
  out.port = smtp.port;
  out.tls = "none";
  out.from = "Support Team <support@example.com>";
  d.cfg.channels.smtp.push_back(out);
}

// The customer's first mail, about order 42, from `from`; `headers` (whole lines) stand after its
// Message-ID.
void deliver_first(EmailDaemon& d, const std::string& from, const std::string& headers = "") {
  d.dovecot.deliver("From: " + from +
                    "\r\nTo: support@example.com\r\n"
                    "Subject: Where is order 42?\r\nMessage-ID: <first@customer.example>\r\n" +
                    headers +
                    "Date: Fri, 02 Jan 2026 03:04:05 +0000\r\n\r\nIt was due on Monday.\r\n");
}

// The customer, `from`, answers with a new subject and In-Reply-To `message_id` only: claimed
// from `queue`, the answer is in the conversation `conv`.
boost::json::object answer_joins(EmailDaemon& d, AgentClient& alice, const std::string& from,
                                 const std::string& message_id, const std::string& queue,
                                 const std::string& conv) {
  d.dovecot.deliver("From: " + from +
                    "\r\nTo: support@example.com\r\n"
                    "Subject: and the colour\r\nMessage-ID: <second@customer.example>\r\n"
                    "In-Reply-To: " +
                    message_id + "\r\n\r\nAlso, the colour is wrong.\r\n");
  auto answer = alice.claim(queue);
  CHECK(s(answer.at("external_id")) == "<second@customer.example>");
  CHECK(s(answer.at("conversation_id")) == conv);
  return answer;
}

// How many interactions are stored under `external_id` (0 or 1).
long long stored_as(EmailDaemon& d, const std::string& external_id) {
  return d.rows("SELECT count(*) FROM interactions WHERE external_id = '" + external_id + "'");
}

}  // namespace

TEST_CASE(
    "email: claim and reply over HTTP - SMTP gets a threaded Re: reply, the send state becomes "
    "sent, the answer joins the conversation, the timeline is in order") {
  SmtpServer smtp(false);
  EmailDaemon d;
  send_through(d, smtp);
  d.start();
  deliver_first(d, "Ann Lee <ann@example.com>",
                "References: <root@customer.example> <older@customer.example>\r\n"
                "In-Reply-To: <older@customer.example>\r\n");

  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string id = s(in.at("id"));
  CHECK(s(in.at("channel")) == "email");
  CHECK(s(in.at("external_id")) == "<first@customer.example>");
  std::string conv = s(in.at("conversation_id"));
  std::string customer = s(in.at("customer").at("id"));
  REQUIRE(!conv.empty());
  REQUIRE(!customer.empty());

  std::string out_id = alice.reply(id, "Hello Ann,\nit ships today.\nSupport");
  REQUIRE(eventually([&] { return smtp.has(1); }, 15s));
  CHECK(smtp.envelope(1) == "support@example.com\nann@example.com\n");
  auto sent = email::parse_email(smtp.message(1));
  CHECK_FALSE(sent.malformed);
  CHECK(sent.from.email == "support@example.com");
  CHECK(sent.from.name == "Support Team");
  REQUIRE(sent.to.size() == 1);
  CHECK(sent.to[0].email == "ann@example.com");
  CHECK(sent.subject == "Re: Where is order 42?");
  CHECK(sent.in_reply_to == "<first@customer.example>");
  // The whole chain (RFC 5322 3.6.4): the parent's References, then the parent.
  std::vector<std::string> chain{"<root@customer.example>", "<older@customer.example>",
                                 "<first@customer.example>"};
  CHECK(sent.references == chain);
  CHECK(sent.message_id.rfind("<sb." + conv + ".", 0) == 0);
  CHECK(sent.text.find("it ships today.") != std::string::npos);

  // The send state on the outbound interaction, as an agent sees it.
  auto reply = alice.outbound_when(customer, out_id, "sent");
  CHECK(s(reply.at("direction")) == "outbound");
  CHECK(s(reply.at("conversation_id")) == conv);
  // Kept on our reply too, so a second reply to it still names the thread.
  REQUIRE(reply.contains("references"));
  std::vector<std::string> kept;
  for (const auto& r : reply.at("references").as_array()) {
    kept.push_back(s(r));
  }
  CHECK(kept == chain);
  CHECK(s(reply.at("send").at("provider_id")) == sent.message_id);
  CHECK(reply.at("send").at("attempts").as_int64() == 1);
  CHECK(alice.act(id, "ack").status == 200);
  CHECK_FALSE(smtp.has(2));  // sent once

  // The customer answers our reply (In-Reply-To our Message-ID, a new subject).
  auto answer =
      answer_joins(d, alice, "Ann Lee <ann@example.com>", sent.message_id, "general", conv);
  CHECK(s(answer.at("customer").at("id")) == customer);

  // Timeline, newest first: the answer, our reply, the first mail with claim, reply, finish.
  auto tl = alice.timeline(customer);
  REQUIRE(tl.size() == 3);
  CHECK(s(tl[0].at("id")) == s(answer.at("id")));
  CHECK(s(tl[1].at("id")) == out_id);
  CHECK(s(tl[2].at("id")) == id);
  for (const auto& i : tl) {
    CHECK(s(i.at("conversation_id")) == conv);
  }
  const auto& first = tl[2].as_object();
  CHECK(s(first.at("direction")) == "inbound");
  const auto& ev = first.at("events").as_array();
  REQUIRE(ev.size() == 3);
  CHECK(s(ev[0].at("type")) == "claim");
  CHECK(s(ev[1].at("type")) == "reply");
  CHECK(s(ev[2].at("type")) == "finish");
  CHECK(s(ev[1].at("detail").at("outbound_id")) == out_id);
  std::string received = s(first.at("received_at"));
  CHECK(received.substr(0, 19) <= s(ev[0].at("at")).substr(0, 19));
  CHECK(s(ev[0].at("at")) <= s(ev[1].at("at")));
  CHECK(s(ev[1].at("at")) <= s(ev[2].at("at")));
  CHECK(s(ev[1].at("at")) <= s(tl[1].at("send").at("updated_at")));
}

TEST_CASE(
    "email: a Reply-To naming our own address is passed over - the reply goes to From, and a "
    "mail only from ourselves is refused with a 422, nothing stored or sent") {
  SmtpServer smtp(false);
  EmailDaemon d;
  send_through(d, smtp);
  d.start();
  // The customer's client put the address written to into Reply-To.
  d.dovecot.deliver(
      "From: Ann Lee <ann@example.com>\r\nReply-To: <Support@example.com>\r\n"
      "To: support@example.com\r\nSubject: Order 42\r\nMessage-ID: <rt@customer.example>\r\n"
      "\r\nWhere is it?\r\n");
  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string id = s(in.at("id"));
  CHECK(s(in.at("reply_to").at("value")) == "support@example.com");
  std::string customer = s(in.at("customer").at("id"));
  std::string out_id = alice.reply(id, "It ships today.");
  REQUIRE(eventually([&] { return smtp.has(1); }, 15s));
  CHECK(smtp.envelope(1) == "support@example.com\nann@example.com\n");
  auto reply = alice.outbound_when(customer, out_id, "sent");
  REQUIRE(reply.at("to").as_array().size() == 1);
  CHECK(s(reply.at("to").at(0).at("value")) == "ann@example.com");
  CHECK(alice.act(id, "ack").status == 200);

  // Mail from our own address (a copy of ours, a colleague writing as support@): no one else
  // to answer. The poller sets such mail aside now (the last test of this file); one stored by
  // an older version is still in a queue. That version: a daemon that knew no address of ours.
  d.stop();
  auto out = d.cfg.channels.smtp;
  d.cfg.channels.smtp.clear();
  d.start();
  d.dovecot.deliver(
      "From: Support Team <support@example.com>\r\nTo: support@example.com\r\n"
      "Subject: note to self\r\nMessage-ID: <self@example.com>\r\n\r\nremember\r\n");
  REQUIRE(eventually([&] { return stored_as(d, "<self@example.com>") == 1; }, 30s));
  d.stop();
  d.cfg.channels.smtp = out;
  d.start();
  AgentClient again(d.app->port(), "alice-token");
  auto self = again.claim("general");
  std::string self_id = s(self.at("id"));
  auto refused = again.act(self_id, "reply", R"({"text":"Hello me."})");
  CHECK(refused.status == 422);
  auto body = parse_object(refused.body);
  CHECK(s(body.at("error").at("code")) == "reply_to_self");
  CHECK(s(body.at("error").at("message")).find("support@example.com") != std::string::npos);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE direction = 'outbound'") == 1);
  CHECK(d.rows("SELECT count(*) FROM sends") == 1);
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(smtp.has(2));
}

namespace {
// Ann's mail about order 42 goes to the "vip" queue; her conversation stays there (sticky).
void vip_setup(EmailDaemon& d, const SmtpServer& smtp) {
  send_through(d, smtp);
  d.cfg.routing.rules.push_back(subject_rule("vip", "vip", "normal", "order 42"));
}

// The first mail, claimed from "vip" and answered.
struct Replied {
  std::string id, conv, customer, out_id;
};
Replied claim_and_reply(AgentClient& alice) {
  auto in = alice.claim("vip");
  Replied r{s(in.at("id")), s(in.at("conversation_id")), s(in.at("customer").at("id")), ""};
  r.out_id = alice.reply(r.id, "Hello Ann,\nit ships today.");
  return r;
}

// Our Message-IDs carry ids in lower case.
std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}
}  // namespace

TEST_CASE(
    "email: a reference forged from a conversation id threads nothing - a stranger's mail "
    "starts its own conversation outside the VIP queue, the customer's answer still joins") {
  SmtpServer smtp(false);
  EmailDaemon d;
  vip_setup(d, smtp);
  d.start();
  deliver_first(d, "Ann Lee <ann@example.com>");
  AgentClient alice(d.app->port(), "alice-token");
  // Our reply tells Ann (and anyone she forwards it to) the conversation id.
  auto [id, conv, customer, out_id] = claim_and_reply(alice);
  REQUIRE(!conv.empty());
  REQUIRE(eventually([&] { return smtp.has(1); }, 15s));
  auto sent = email::parse_email(smtp.message(1));
  REQUIRE(sent.message_id.rfind("<sb." + conv + ".", 0) == 0);
  alice.outbound_when(customer, out_id, "sent");
  CHECK(alice.act(id, "ack").status == 200);

  // A stranger names the conversation in our Message-ID format: in the form the review found,
  // and with our domain and a made-up token.
  std::string lower = lowercase(conv);
  d.dovecot.deliver(
      "From: Mallory <mallory@attacker.example>\r\nTo: support@example.com\r\n"
      "Subject: please update my address\r\nMessage-ID: <evil@attacker.example>\r\n"
      "In-Reply-To: <sb." +
      conv + ".forged@x>\r\nReferences: <sb." + lower +
      ".01jzzzzzzzzzzzzzzzzzzzzzzz@example.com> <sb." + conv +
      ".forged@x>\r\n\r\nShip it to 1 Evil Road instead.\r\n");
  auto forged = alice.claim("general");
  CHECK(s(forged.at("external_id")) == "<evil@attacker.example>");
  CHECK(s(forged.at("conversation_id")) != conv);
  CHECK(s(forged.at("queue")) == "general");
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE conversation_id = '" + conv + "'") == 2);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE queue = 'vip' AND direction = "
               "'inbound'") == 1);  // Ann's mail only
  CHECK(alice.act(s(forged.at("id")), "ack").status == 200);

  // Ann answers our reply (In-Reply-To our Message-ID only, a new subject): it joins her
  // conversation, and its queue.
  answer_joins(d, alice, "Ann Lee <ann@example.com>", sent.message_id, "vip", conv);
}

TEST_CASE(
    "email: a reply's Message-ID is recorded with the reply - an answer to it joins the "
    "conversation while its send is still being retried") {
  SmtpServer smtp(false);
  EmailDaemon d;
  vip_setup(d, smtp);
  d.start();
  // The SMTP server answers 451 to this recipient: the send stays pending, retried.
  deliver_first(d, "Ann Lee <tempfail@customer.example>");
  AgentClient alice(d.app->port(), "alice-token");
  auto [id, conv, customer, out_id] = claim_and_reply(alice);
  // The Message-ID every attempt carries (smtp.hpp): its key is committed with the reply.
  std::string lower = lowercase(out_id);
  std::string message_id = "<sb." + conv + "." + lower + "@example.com>";
  CHECK(d.rows("SELECT count(*) FROM conversation_keys WHERE key = 'email:support:" + message_id +
               "' AND conversation_id = '" + conv + "'") == 1);
  // At least one attempt refused, and the send still pending (retried at 1 s, 2 s, ...).
  bool tried = eventually(
      [&] {
        for (const auto& i : alice.timeline(customer)) {
          const auto& o = i.as_object();
          if (s(o.at("id")) == out_id && o.contains("send") &&
              o.at("send").at("attempts").as_int64() >= 1) {
            return s(o.at("send").at("state")) == "pending" &&
                   s(o.at("send").at("error")).find("451") != std::string::npos;
          }
        }
        return false;
      },
      15s);
  REQUIRE(tried);
  CHECK_FALSE(smtp.has(1));
  CHECK(alice.act(id, "ack").status == 200);

  // An attempt may have reached her although we never learned it (a connection lost after the
  // message's final dot): her answer names that Message-ID only.
  answer_joins(d, alice, "Ann Lee <tempfail@customer.example>", message_id, "vip", conv);
}

TEST_CASE(
    "email: a reply goes out with the Message-ID stored with it after `from` changes domain - "
    "the customer's answer joins, our next reply names it in References") {
  SmtpServer smtp(false);
  EmailDaemon d;
  send_through(d, smtp);
  // No server on the port at first: every attempt is refused (temporary), the send stays pending.
  d.cfg.channels.smtp[0].port = free_port();
  d.start();
  deliver_first(d, "Ann Lee <ann@example.com>");
  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string id = s(in.at("id"));
  std::string conv = s(in.at("conversation_id"));
  std::string customer = s(in.at("customer").at("id"));
  REQUIRE(!conv.empty());
  std::string out_id = alice.reply(id, "Hello Ann,\nit ships today.");
  // The Message-ID the reply was stored with, under the domain of `from` at that time.
  std::string first_id = "<sb." + conv + "." + lowercase(out_id) + "@example.com>";
  bool tried = eventually(
      [&] {
        return d.rows("SELECT count(*) FROM sends WHERE interaction_id = '" + out_id +
                      "' AND state = 'pending' AND attempts >= 1") == 1;
      },
      15s);
  REQUIRE(tried);
  CHECK(alice.act(id, "ack").status == 200);

  // The operator moves the account to another domain (and the server comes up); a restart.
  d.stop();
  d.cfg.channels.smtp[0].from = "Support Team <support@example.net>";
  d.cfg.channels.smtp[0].port = smtp.port;
  d.start();
  AgentClient bob(d.app->port(), "alice-token");
  REQUIRE(eventually([&] { return smtp.has(1); }, 20s));
  auto sent = email::parse_email(smtp.message(1));
  // The resend carries the stored Message-ID, as any earlier attempt that reached Ann did (a
  // Message-ID rebuilt from the new `from` would be a second message to her client).
  CHECK(sent.message_id == first_id);
  CHECK(sent.from.email == "support@example.net");
  auto reply = bob.outbound_when(customer, out_id, "sent");
  CHECK(s(reply.at("send").at("provider_id")) == first_id);

  // Ann's client answers it: In-Reply-To and References name the Message-ID it received.
  d.dovecot.deliver(
      "From: Ann Lee <ann@example.com>\r\nTo: support@example.com\r\n"
      "Subject: Re: Where is order 42?\r\nMessage-ID: <second@customer.example>\r\n"
      "In-Reply-To: " +
      first_id + "\r\nReferences: <first@customer.example> " + first_id +
      "\r\n\r\nAnd the colour?\r\n");
  auto answer = bob.claim("general");
  CHECK(s(answer.at("external_id")) == "<second@customer.example>");
  CHECK(s(answer.at("conversation_id")) == conv);
  std::string next_id = bob.reply(s(answer.at("id")), "Blue, as ordered.");
  REQUIRE(eventually([&] { return smtp.has(2); }, 15s));
  auto next = email::parse_email(smtp.message(2));
  CHECK(next.in_reply_to == "<second@customer.example>");
  CHECK(next.references == std::vector<std::string>{"<first@customer.example>", first_id,
                                                    "<second@customer.example>"});
  // A new reply takes the domain `from` has now.
  CHECK(next.message_id == "<sb." + conv + "." + lowercase(next_id) + "@example.net>");
}

TEST_CASE(
    "email: our own reply read back from a polled mailbox - the Sent folder's copy, a Bcc - is "
    "not stored, queued or made a customer, and the mailbox reads on past it") {
  SmtpServer smtp(false);
  EmailDaemon d;
  send_through(d, smtp);
  d.start();
  deliver_first(d, "Ann Lee <ann@example.com>");
  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  std::string id = s(in.at("id"));
  alice.reply(id, "Hello Ann,\nit ships today.\nSupport");
  REQUIRE(eventually([&] { return smtp.has(1); }, 15s));
  CHECK(alice.act(id, "ack").status == 200);
  const std::string copy = smtp.message(1);
  const std::string message_id = email::parse_email(copy).message_id;
  REQUIRE(message_id.rfind("<sb.", 0) == 0);

  // The same message with another From (our `from` changed since it was sent, a server that
  // rewrites it): told by its Message-ID, the one the reply was stored with.
  std::string rewritten = copy;
  auto from = rewritten.find("support@example.com");
  REQUIRE(from != std::string::npos);
  REQUIRE(rewritten.find("From:") < from);
  rewritten.replace(from, 19, "help@example.org");
  d.dovecot.deliver(rewritten);
  // The message as sent, filed back into the polled mailbox (Gmail's All Mail, Sent Items).
  d.dovecot.deliver(copy);
  // A colleague writing to a customer from a mail client as the support address, with a Bcc
  // to it: From one of our addresses, no Reply-To.
  d.dovecot.deliver(
      "From: Support Team <Support@Example.com>\r\nTo: bob@example.net\r\n"
      "Subject: Your refund\r\nMessage-ID: <bcc-1@mail.example.com>\r\n\r\nDone today.\r\n");
  d.dovecot.deliver(test_email(9, 9));  // a customer's mail after them
  REQUIRE(eventually([&] { return stored_as(d, "<msg-9@example.com>") == 1; }, 30s));
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE direction = 'inbound'") == 2);
  // Read past, in UID order: the cursor names the customer's mail, the fifth in the mailbox.
  CHECK(d.rows("SELECT count(*) FROM cursors WHERE scope = 'INBOX' AND value LIKE '%:5'") == 1);
  CHECK(stored_as(d, message_id) == 0);
  CHECK(stored_as(d, "<bcc-1@mail.example.com>") == 0);
  // Queued: the customer's mail, none of ours.
  auto queued_ids = [&] {
    std::set<std::string> ids;
    for (const auto& p : d.payloads()) {
      ids.insert(s(p.at("external_id")));
    }
    return ids;
  };
  CHECK(eventually([&] { return queued_ids().contains("<msg-9@example.com>"); }, 10s));
  CHECK_FALSE(queued_ids().contains(message_id));
  CHECK_FALSE(queued_ids().contains("<bcc-1@mail.example.com>"));
  CHECK(d.rows("SELECT count(*) FROM identities WHERE value IN ('support@example.com', "
               "'help@example.org')") == 0);
  CHECK(d.rows("SELECT count(*) FROM customers WHERE name = 'Support Team'") == 0);

  // A web form sends From our own address with Reply-To the customer: the customer's work.
  d.dovecot.deliver(
      "From: Support Team <support@example.com>\r\nReply-To: Carol <carol@example.org>\r\n"
      "To: support@example.com\r\nSubject: Contact form\r\n"
      "Message-ID: <form-1@shop.example.com>\r\n\r\nPlease call me back.\r\n");
  CHECK(eventually([&] { return stored_as(d, "<form-1@shop.example.com>") == 1; }, 30s));
}

namespace {
// A Postfix-style delivery status notification (RFC 3464) to support@ about `sent` (one of our
// replies as the SMTP server got it), returned whole (message/rfc822) or, with `headers_only`,
// its header alone (text/rfc822-headers). Every report from this MTA has the same sender and
// subject.
void deliver_dsn(EmailDaemon& d, const std::string& id, const std::string& sent,
                 const std::string& recipient, bool headers_only) {
  std::string returned = headers_only ? sent.substr(0, sent.find("\r\n\r\n") + 2) : sent;
  d.dovecot.deliver(
      "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
      "To: support@example.com\r\nSubject: Undelivered Mail Returned to Sender\r\n"
      "Message-ID: " +
      id +
      "\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n"
      "--r\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
      "--r\r\nContent-Type: message/delivery-status\r\n\r\n"
      "Reporting-MTA: dns; mx.example.net\r\n\r\n"
      "Final-Recipient: rfc822; " +
      recipient +
      "\r\nAction: failed\r\nStatus: 5.1.1\r\n"
      "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
      "--r\r\nContent-Type: " +
      (headers_only ? "text/rfc822-headers" : "message/rfc822") + "\r\n\r\n" + returned +
      "\r\n--r--\r\n");
}

// Who one customer is and what we answered them.
struct Answered {
  std::string id, conv, customer, out_id, sent;
};
Answered answer_customer(EmailDaemon& d, AgentClient& alice, SmtpServer& smtp,
                         const std::string& from, const std::string& message_id, int n) {
  d.dovecot.deliver("From: " + from +
                    "\r\nTo: support@example.com\r\nSubject: Where is my order?\r\n"
                    "Message-ID: " +
                    message_id + "\r\n\r\nIt was due on Monday.\r\n");
  auto in = alice.claim("general");
  Answered a{s(in.at("id")), s(in.at("conversation_id")), s(in.at("customer").at("id")), "", ""};
  a.out_id = alice.reply(a.id, "It ships today.");
  REQUIRE(eventually([&] { return smtp.has(n); }, 15s));
  a.sent = smtp.message(n);
  alice.outbound_when(a.customer, a.out_id, "sent");
  CHECK(alice.act(a.id, "ack").status == 200);
  return a;
}

// The reply's provider_status events.
std::vector<json::object> provider_events(const json::object& reply) {
  std::vector<json::object> out;
  for (const auto& e : reply.at("events").as_array()) {
    if (s(e.at("type")) == "provider_status") {
      out.push_back(e.as_object());
    }
  }
  return out;
}
}  // namespace

// Before: both reports joined one conversation (the subject fallback took MAILER-DAEMON for a
// customer), neither reached the conversation of the reply it returned, the replies read
// "sent" for good, and an agent could answer the report, to MAILER-DAEMON.
TEST_CASE(
    "email: two bounces of two replies - each joins its customer's conversation, the reply's "
    "send becomes failed with a provider_status event, its acked item goes back to work once, "
    "and a reply to a bounce is refused") {
  SmtpServer smtp(false);
  EmailDaemon d;
  send_through(d, smtp);
  d.start();
  AgentClient alice(d.app->port(), "alice-token");
  auto ann =
      answer_customer(d, alice, smtp, "Ann Lee <ann@example.com>", "<a1@customer.example>", 1);
  auto bob =
      answer_customer(d, alice, smtp, "Bob Roe <bob@example.org>", "<b1@customer.example>", 2);
  REQUIRE(ann.conv != bob.conv);

  // Each report is queued, and behind it (enqueued in the report's transaction) the item its
  // reply answered, acked before: back to work, telling why.
  deliver_dsn(d, "<dsn-1@mx.example.net>", ann.sent, "ann@example.com", false);
  auto first = alice.claim("general");
  CHECK(s(first.at("external_id")) == "<dsn-1@mx.example.net>");
  CHECK(s(first.at("conversation_id")) == ann.conv);
  auto ann_back = alice.claim("general");
  CHECK(s(ann_back.at("id")) == ann.id);
  CHECK(s(ann_back.at("send_failed").at("outbound_id")) == ann.out_id);
  CHECK(s(ann_back.at("send_failed").at("error")).rfind("bounced: 5.1.1", 0) == 0);
  deliver_dsn(d, "<dsn-2@mx.example.net>", bob.sent, "bob@example.org", true);
  auto second = alice.claim("general");
  CHECK(s(second.at("external_id")) == "<dsn-2@mx.example.net>");
  CHECK(s(second.at("conversation_id")) == bob.conv);
  auto bob_back = alice.claim("general");
  CHECK(s(bob_back.at("id")) == bob.id);
  CHECK(s(bob_back.at("send_failed").at("outbound_id")) == bob.out_id);

  for (auto [who, report] : {std::pair{&ann, &first}, std::pair{&bob, &second}}) {
    auto reply = alice.outbound_when(who->customer, who->out_id, "failed");
    std::string error = s(reply.at("send").at("error"));
    CHECK(error.rfind("bounced: 5.1.1 smtp; 550 5.1.1 user unknown", 0) == 0);
    auto events = provider_events(reply);
    REQUIRE(events.size() == 1);
    CHECK(s(events[0].at("actor")) == "email");
    CHECK(s(events[0].at("detail").at("status")) == "failed");
    CHECK(s(events[0].at("detail").at("report_id")) == s(report->at("id")));
  }

  // The report's sender takes no answers.
  auto refused = alice.act(s(first.at("id")), "reply", R"({"text":"Please deliver it."})");
  CHECK(refused.status == 422);
  auto body = parse_object(refused.body);
  CHECK(s(body.at("error").at("code")) == "reply_to_bounce");
  CHECK(s(body.at("error").at("message")).find("nothing was stored or sent") != std::string::npos);
  CHECK(d.rows("SELECT count(*) FROM interactions WHERE direction = 'outbound'") == 2);
  CHECK(d.rows("SELECT count(*) FROM sends") == 2);
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(smtp.has(3));

  // A second report about Ann's reply (another MTA on the way) is stored and queued, and puts
  // nothing back to work again: the send failed already.
  CHECK(alice.act(ann.id, "ack").status == 200);
  deliver_dsn(d, "<dsn-3@mx.example.net>", ann.sent, "ann@example.com", false);
  CHECK(s(alice.claim("general").at("external_id")) == "<dsn-3@mx.example.net>");
  CHECK(d.rows("SELECT count(*) FROM events WHERE interaction_id='" + ann.id +
               "' AND type='send_failed'") == 1);
  CHECK(eventually([&] {
    return d.rows("SELECT count(*) FROM interactions WHERE id='" + ann.id +
                  "' AND state='done' AND queue_round=1") == 1;
  }));
}

// Before: mail From postmaster@ was flagged `bounce` and an answer to it refused (422
// reply_to_bounce), though postmaster is the mail system's administrator, a person (RFC 5321
// 4.5.1). A report is told by its multipart/report part, or a From of MAILER-DAEMON.
TEST_CASE("email: mail from a customer's postmaster is no bounce, and a reply to it is sent") {
  SmtpServer smtp(false);
  EmailDaemon d;
  send_through(d, smtp);
  d.start();
  // Not a delivery report (no multipart/report): a person at the mail system's address.
  d.dovecot.deliver(
      "From: Postmaster <postmaster@example.org>\r\nTo: support@example.com\r\n"
      "Subject: Your mail server\r\nMessage-ID: <pm@example.org>\r\n\r\nPlease check SPF.\r\n");
  AgentClient alice(d.app->port(), "alice-token");
  auto in = alice.claim("general");
  CHECK(json::serialize(in.at("flags")).find("bounce") == std::string::npos);
  alice.reply(s(in.at("id")), "Thanks, fixed.");
  REQUIRE(eventually([&] { return smtp.has(1); }, 15s));
  CHECK(smtp.message(1).find("postmaster@example.org") != std::string::npos);

  // MAILER-DAEMON is a mail system's: its mail is a bounce, and an answer to it is refused.
  d.dovecot.deliver(
      "From: MAILER-DAEMON@mx.example.net\r\nTo: support@example.com\r\n"
      "Subject: Undeliverable\r\nMessage-ID: <md@mx.example.net>\r\n\r\nNo such user.\r\n");
  auto daemon = alice.claim("general");
  auto refused = alice.act(s(daemon.at("id")), "reply", R"({"text":"Thanks."})");
  CHECK(refused.status == 422);
  CHECK(s(parse_object(refused.body).at("error").at("code")) == "reply_to_bounce");
  std::this_thread::sleep_for(300ms);
  CHECK_FALSE(smtp.has(2));
}
