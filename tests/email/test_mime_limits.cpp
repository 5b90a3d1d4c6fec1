// Generated hostile inputs: size, nesting, missing Message-ID, odd dates.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "channels/email/charset.hpp"
#include "channels/email/mime.hpp"

using sb::email::parse_email;

TEST_CASE("50 MB message: text capped and flagged, attachment size counted, still parses") {
  std::string raw =
      "From: big@example.com\r\nTo: support@example.com\r\nSubject: big\r\n"
      "Message-ID: <big@example.com>\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\n"
      "Content-Type: text/plain; charset=utf-8\r\n\r\n";
  std::string line = "Grüße — 中文 line of customer text that goes on and on.\r\n";
  while (raw.size() < 25u * 1024 * 1024) {
    raw += line;
  }
  raw +=
      "--B\r\nContent-Type: application/octet-stream; name=\"blob.bin\"\r\n"
      "Content-Transfer-Encoding: base64\r\n\r\n";
  std::string b64 = std::string(76, 'A') + "\r\n";  // 57 zero bytes per line
  std::size_t lines = 0;
  while (raw.size() < 50u * 1024 * 1024) {
    raw += b64;
    ++lines;
  }
  raw += "--B--\r\n";
  auto m = parse_email(raw);
  CHECK(m.subject == "big");
  CHECK(m.truncated);
  CHECK(m.text.size() <= (1u << 20));
  CHECK(m.text.size() > 900u * 1024);       // CRLF -> LF shrinks what was read
  CHECK(sb::email::is_valid_utf8(m.text));  // cut on a character boundary
  REQUIRE(m.attachments.size() == 1);
  CHECK(m.attachments[0].size == static_cast<std::int64_t>(lines * 57));
  CHECK_FALSE(m.attachments[0].stored);  // over max_attachment_bytes: listed, bytes not kept
  CHECK(m.attachments[0].data.empty());
  CHECK_FALSE(m.malformed);
}

TEST_CASE("attachment caps: bytes kept up to the per-message total, the rest listed only") {
  std::string raw =
      "From: a@example.com\r\nSubject: two\r\nMessage-ID: <two@example.com>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n";
  for (const char* name : {"one.txt", "two.txt"}) {
    raw += std::string(
               "--B\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
               "filename=\"") +
           name + "\"\r\n\r\n" + std::string(600, 'x') + "\r\n";
  }
  raw += "--B--\r\n";
  sb::email::ParseLimits limits;
  limits.max_attachments_total = 1000;
  auto m = parse_email(raw, limits);
  REQUIRE(m.attachments.size() == 2);
  CHECK(m.attachments[0].stored);
  CHECK(m.attachments[0].data.size() == static_cast<std::size_t>(m.attachments[0].size));
  CHECK(m.attachments[0].data.starts_with("xxxx"));
  CHECK_FALSE(m.attachments[1].stored);
  CHECK(m.attachments[1].size == m.attachments[0].size);
}

TEST_CASE("100-level nesting: flagged malformed, outer text kept, no crash") {
  std::string raw =
      "From: deep@example.com\r\nSubject: deep\r\nMessage-ID: <deep@x>\r\n"
      "MIME-Version: 1.0\r\n";
  std::string tail;
  for (int i = 0; i < 100; ++i) {
    raw += "Content-Type: multipart/mixed; boundary=\"b" + std::to_string(i) + "\"\r\n\r\n--b" +
           std::to_string(i) + "\r\n";
    if (i == 0) {
      // a readable first part at the top
      raw += "Content-Type: text/plain\r\n\r\nouter words\r\n--b0\r\n";
    }
    tail = "\r\n--b" + std::to_string(i) + "--\r\n" + tail;
  }
  raw += "Content-Type: text/plain\r\n\r\ninnermost\r\n" + tail;
  auto m = parse_email(raw);
  CHECK(m.malformed);
  CHECK(m.subject == "deep");
  CHECK(m.text.rfind("outer words", 0) == 0);
  CHECK(m.text.find("innermost") == std::string::npos);  // beyond the depth cap: opaque
}

TEST_CASE("missing Message-ID: stable synthetic id from the raw bytes") {
  std::string a = "From: a@example.com\r\nSubject: x\r\n\r\nbody\r\n";
  std::string b = "From: a@example.com\r\nSubject: x\r\n\r\nbody!\r\n";
  auto ma = parse_email(a);
  CHECK(ma.synthetic_message_id);
  CHECK(ma.message_id == parse_email(a).message_id);
  CHECK(ma.message_id != parse_email(b).message_id);
  CHECK(ma.message_id.rfind('<', 0) == 0);
  CHECK(ma.message_id.find("@switchboard.invalid>") != std::string::npos);
}

TEST_CASE("unparseable Date gives 0, a valid one gives Unix ms") {
  CHECK(parse_email("From: a@b.c\r\nDate: someday soon\r\n\r\nx").date_ms == 0);
  CHECK(parse_email("From: a@b.c\r\nDate: Thu, 01 Jan 1970 00:00:01 +0000\r\n\r\nx").date_ms ==
        1000);
}

TEST_CASE("flags from headers") {
  auto flags = [](const std::string& headers) {
    return parse_email("From: a@example.com\r\n" + headers + "\r\nbody");
  };
  CHECK(flags("Auto-Submitted: auto-generated\r\n").auto_reply);
  CHECK_FALSE(flags("Auto-Submitted: no\r\n").auto_reply);
  CHECK(flags("X-Autorespond: vacation\r\n").auto_reply);
  CHECK(flags("Precedence: junk\r\n").bulk);
  CHECK(flags("Precedence: Bulk\r\n").bulk);
  CHECK(flags("List-Unsubscribe: <mailto:u@example.com>\r\n").bulk);
  CHECK_FALSE(flags("Precedence: normal\r\n").bulk);
  CHECK(parse_email("From: MAILER-DAEMON@example.com\r\n\r\nx").bounce);
  CHECK_FALSE(parse_email("From: a@example.com\r\n\r\nx").bounce);
}

// Before: mail From postmaster@ was a bounce whatever it said, and an agent's answer to the
// person who runs a customer's mail system was refused (422 reply_to_bounce). Postmaster is a
// person (RFC 5321 4.5.1); a report from that address is told by its report part.
TEST_CASE("postmaster is a person - only a delivery report from that address is a bounce") {
  CHECK_FALSE(parse_email("From: Postmaster <postmaster@customer.example>\r\n"
                          "Subject: Your mail server\r\n\r\nPlease check SPF.\r\n")
                  .bounce);
  CHECK(parse_email("From: postmaster@mx.example.net\r\nMIME-Version: 1.0\r\n"
                    "Content-Type: multipart/report; report-type=delivery-status; "
                    "boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n"
                    "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
                    "Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\n"
                    "Status: 5.1.1\r\n--b--\r\n")
            .bounce);
}

TEST_CASE("text/plain with an invalid UTF-8 label still yields valid UTF-8") {
  auto m =
      parse_email("From: a@b.c\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nok \xff\xfe end");
  CHECK(sb::email::is_valid_utf8(m.text));
  CHECK(m.text == "ok \xEF\xBF\xBD\xEF\xBF\xBD end");
}

// parse_email reads the top-level entity as a MIME part and the message headers itself; these
// pin what GMimeMessage did for it.
TEST_CASE("message headers: the last Message-ID and Date win, as in GMimeMessage") {
  auto m = parse_email(
      "Message-ID: <first@x>\r\nDate: Thu, 01 Jan 1970 00:00:01 +0000\r\nFrom: a@b.c\r\n"
      "Message-ID: <second@x>\r\nDate: Thu, 01 Jan 1970 00:00:02 +0000\r\n\r\nbody\r\n");
  CHECK(m.message_id == "<second@x>");
  CHECK(m.date_ms == 2000);
  CHECK(m.malformed);  // two different single-occurrence headers conflict
  auto folded = parse_email("Message-Id:\r\n <folded@x>\r\nFrom: a@b.c\r\n\r\nx");
  CHECK(folded.message_id == "<folded@x>");
  CHECK_FALSE(folded.synthetic_message_id);
  // Content-* headers describe the body; without any other header there is no message header.
  auto body_only = parse_email("Content-Type: text/plain; charset=utf-8\r\n\r\nbody\r\n");
  CHECK(body_only.malformed);
  CHECK(body_only.text == "body");
}

TEST_CASE(
    "repeated trace headers are everyday mail, a repeated Subject or Content-Type conflicts") {
  auto received = parse_email(
      "Received: from a by b; Thu, 01 Jan 1970 00:00:01 +0000\r\n"
      "Received: from c by d; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
      "X-Spam-Flag: NO\r\nX-Spam-Flag: no\r\nFrom: a@b.c\r\n\r\nbody\r\n");
  CHECK_FALSE(received.malformed);
  CHECK(received.text == "body");
  CHECK(parse_email("From: a@b.c\r\nSubject: one\r\nSubject: two\r\n\r\nx").malformed);
  CHECK(parse_email("From: a@b.c\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n\r\nx")
            .malformed);
  // Inside a multipart every repeated header with two values is a conflict, as before.
  CHECK(parse_email("From: a@b.c\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                    "X-Foo: 1\r\nX-Foo: 2\r\n\r\nin\r\n--b--\r\n")
            .malformed);
}

TEST_CASE("an mbox From_ line before the headers is skipped - \"From :\" is a header") {
  auto m = parse_email(
      "From customer@example.com Thu Jan  1 00:00:00 1970\r\n>From again\r\n"
      "From: Customer <customer@example.com>\r\nSubject: hello\r\n\r\nbody\r\n");
  CHECK(m.from.email == "customer@example.com");
  CHECK(m.subject == "hello");
  CHECK(m.text == "body");
  CHECK_FALSE(m.malformed);
  auto spaced = parse_email("From : a@b.c\r\nSubject: s\r\n\r\nx");
  CHECK(spaced.from.email == "a@b.c");
  CHECK_FALSE(spaced.malformed);
}

// RFC 2047 section 5: an encoded word never appears in a msg-id, so none is decoded there; the
// id is the customer's text and ends up in thread keys and in our replies' In-Reply-To.
TEST_CASE("an encoded word inside Message-ID is not decoded into CR/LF") {
  auto m = parse_email(
      "From: a@b.c\r\nMessage-ID: <x=?utf-8?Q?=0D=0ABcc:_evil@example.org?=@y.example>\r\n"
      "Subject: s\r\n\r\nbody\r\n");
  CHECK(m.message_id.find_first_of("\r\n") == std::string::npos);
  CHECK(m.message_id == "<x=?utf-8?Q?=0D=0ABcc:_evil@example.org?=@y.example>");
  auto latin1 = parse_email("From: a@b.c\r\nMessage-ID: <caf\xe9@y.example>\r\n\r\nbody\r\n");
  CHECK(latin1.message_id == "<caf\xc3\xa9@y.example>");  // 8-bit: windows-1252, as before
}

TEST_CASE("the text is what a mail client shows: one alternative each, other text parts in order") {
  // A list manager adds its footer as a text/plain part after an HTML-only body: the text is
  // the HTML and the footer, not the footer alone.
  std::string listed =
      "From: a@example.com\r\nSubject: s\r\nMessage-ID: <l1@example.com>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"M\"\r\n\r\n"
      "--M\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
      "<p>Where is <b>order 7</b>?</p>\r\n"
      "--M\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
      "-- \r\nlist footer: unsubscribe at https://lists.example\r\n--M--\r\n";
  auto m = parse_email(listed);
  CHECK(m.text == "Where is order 7?\n-- \nlist footer: unsubscribe at https://lists.example");
  // The same inside an alternative whose text/plain is the one shown.
  std::string both =
      "From: a@example.com\r\nSubject: s\r\nMessage-ID: <l2@example.com>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"M\"\r\n\r\n"
      "--M\r\nContent-Type: multipart/alternative; boundary=\"A\"\r\n\r\n"
      "--A\r\nContent-Type: text/plain\r\n\r\nWhere is order 7?\r\n"
      "--A\r\nContent-Type: text/html\r\n\r\n<p>Where is <b>order 7</b>?</p>\r\n--A--\r\n"
      "--M\r\nContent-Type: text/plain\r\n\r\nfooter\r\n--M--\r\n";
  CHECK(parse_email(both).text == "Where is order 7?\nfooter");
}

TEST_CASE("a blank text/plain alternative gives the HTML's text, not an empty one") {
  std::string raw =
      "From: a@example.com\r\nSubject: s\r\nMessage-ID: <b1@example.com>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"A\"\r\n\r\n"
      "--A\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n \r\n\r\n\t\r\n"
      "--A\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
      "<div>Please cancel order 7</div>\r\n--A--\r\n";
  auto m = parse_email(raw);
  CHECK(m.text == "Please cancel order 7");
  // A text/plain with words is still preferred to the HTML, as before.
  std::string plain = raw;
  plain.replace(plain.find(" \r\n\r\n\t\r\n"), 7, "Cancel 7, please\r\n");
  CHECK(parse_email(plain).text == "Cancel 7, please");
}

TEST_CASE("a message forwarded as an attachment is kept as .eml bytes, under the same caps") {
  std::string inner =
      "From: Bob <bob@example.com>\r\nTo: shop@example.com\r\nSubject: Invoice 42\r\n"
      "Message-ID: <inv42@example.com>\r\nDate: Fri, 02 Jan 2026 03:04:05 +0000\r\n"
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n";
  while (inner.size() < 50 * 1024) {
    inner += "Line of the invoice Bob sent, which the customer forwards to us.\r\n";
  }
  std::string raw =
      "From: ann@example.com\r\nSubject: Fwd: Invoice 42\r\nMessage-ID: <f1@example.com>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"F\"\r\n\r\n"
      "--F\r\nContent-Type: text/plain\r\n\r\nSee the attached mail.\r\n"
      "--F\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n" +
      inner + "\r\n--F--\r\n";
  auto m = parse_email(raw);
  CHECK(m.text == "See the attached mail.");
  REQUIRE(m.attachments.size() == 1);
  const auto& a = m.attachments[0];
  CHECK(a.content_type == "message/rfc822");
  CHECK(a.filename == "Invoice 42.eml");
  CHECK(a.stored);
  CHECK(a.size == static_cast<std::int64_t>(inner.size()));
  CHECK(a.data == inner);
  CHECK_FALSE(m.malformed);

  // Larger than an attachment may be: listed with its size only.
  sb::email::ParseLimits limits;
  limits.max_attachment_bytes = 40 * 1024;
  auto capped = parse_email(raw, limits);
  REQUIRE(capped.attachments.size() == 1);
  CHECK_FALSE(capped.attachments[0].stored);
  CHECK(capped.attachments[0].data.empty());
  CHECK(capped.attachments[0].size == static_cast<std::int64_t>(inner.size()));
  // What the content hash reads of it did not change when its bytes began to be kept: the
  // same mail fetched again is the same message, not a second one.
  CHECK(capped.content_hash == m.content_hash);
}

TEST_CASE("one message's caps: attachments listed, file names, subject, ids, recipients") {
  std::string long_name(400, 'x');
  long_name += "ü.pdf";  // the cut falls well before it
  std::string raw = "From: many@example.com\r\nTo: ";
  for (int i = 0; i < 150; ++i) {
    raw += (i ? ", " : "") + std::string("r") + std::to_string(i) + "@example.com";
  }
  raw += "\r\nCc: cc@example.com\r\nSubject: " + std::string(5000, 's') + "\r\n" + "Message-ID: <" +
         std::string(1200, 'm') + "@example.com>\r\n" + "In-Reply-To: <" + std::string(1200, 'm') +
         "@example.com>\r\n" +
         "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n"
         "--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n";
  raw += "--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"" +
         long_name + "\"\r\n\r\nx\r\n";
  for (int i = 0; i < 1000; ++i) {
    raw +=
        "--B\r\nContent-Type: application/octet-stream\r\n"
        "Content-Disposition: attachment\r\n\r\n\r\n";
  }
  raw += "--B--\r\n";
  auto m = parse_email(raw);
  CHECK(m.attachments.size() == sb::email::kMaxAttachments);
  REQUIRE(!m.attachments.empty());
  CHECK(m.attachments[0].filename.size() <= sb::email::kMaxFilenameBytes);
  CHECK(m.attachments[0].filename.size() > 200);
  CHECK(sb::email::is_valid_utf8(m.attachments[0].filename));
  CHECK(m.subject.size() == sb::email::kMaxSubjectBytes);
  CHECK(m.message_id.size() == sb::email::kMaxIdBytes);
  CHECK(m.message_id.front() == '<');
  CHECK(m.message_id.back() == '>');
  CHECK(m.in_reply_to == m.message_id);  // cut alike, so a reply still finds it
  CHECK(m.to.size() + m.cc.size() == sb::email::kMaxRecipients);
  for (const char* flag : {"attachments_truncated", "filename_truncated", "subject_truncated",
                           "id_truncated", "recipients_truncated"}) {
    CAPTURE(flag);
    CHECK(std::count(m.cut.begin(), m.cut.end(), std::string(flag)) == 1);
  }
  CHECK_FALSE(m.content_hash.empty());
}

TEST_CASE("ids alike in their first 998 bytes are cut to different ids, the same id alike") {
  auto with_id = [](const std::string& id) {
    return parse_email("From: a@example.com\r\nMessage-ID: " + id + "\r\nReferences: " + id +
                       "\r\n\r\nhi\r\n");
  };
  const std::string common(1100, 'm');
  auto a = with_id("<" + common + "a@example.com>");
  auto b = with_id("<" + common + "b@example.com>");
  CHECK(a.message_id.size() == sb::email::kMaxIdBytes);
  CHECK(b.message_id.size() == sb::email::kMaxIdBytes);
  CHECK(a.message_id != b.message_id);
  CHECK(a.message_id.starts_with("<" + std::string(900, 'm')));
  CHECK(with_id("<" + common + "a@example.com>").message_id == a.message_id);
  REQUIRE(a.references.size() == 1);
  CHECK(a.references[0] == a.message_id);
}

TEST_CASE("a message under every cap is not cut") {
  auto m = parse_email(
      "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n"
      "Message-ID: <ok@example.com>\r\n\r\nhello\r\n");
  CHECK(m.cut.empty());
  CHECK(m.message_id == "<ok@example.com>");
}
