// The real-world corpus (fixtures/README.md says where each comes from), field by field.
#include <doctest/doctest.h>

#include <algorithm>

#include "channels/email/mime.hpp"
#include "channels/email/threading.hpp"
#include "fixtures.hpp"

using sb::email::parse_email;
using sb::email::ParsedEmail;

namespace {
ParsedEmail fixture(const char* name) {
  return parse_email(read_fixture(name));
}
bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}
}  // namespace

TEST_CASE("gb2312 Outlook reply: GBK subject, 8-bit body, list headers") {
  auto m = fixture("gb2312_outlook_8bit.eml");
  CHECK(m.subject == "回复: [PATCH] locking: fix kernel/locking/ inline asm error");
  CHECK(m.message_id == "<001d01d8f4eb$f0f37a90$d2da6fb0$@chinatelecom.cn>");
  CHECK(m.from.email == "huyd12@chinatelecom.cn");
  REQUIRE(m.to.size() == 2);
  CHECK(m.to[1].email == "guoj17@chinatelecom.cn");
  CHECK(m.cc.size() == 6);
  CHECK(m.in_reply_to == "<Y2rayPgDfL2NYcjQ@dev-arch.thelio-3990X>");
  REQUIRE(m.references.size() == 2);
  CHECK(m.references[0] == "<20221108060126.2505-1-guoj17@chinatelecom.cn>");
  CHECK(m.date_ms == 1668074713000);
  CHECK(m.text.rfind("Thanks your comments,", 0) == 0);  // the new part is at the top
  CHECK(contains(m.text, "-----邮件原件-----"));
  CHECK(contains(m.text, "发送时间: 2022年11月9日 6:40"));
  CHECK(m.bulk);
  CHECK_FALSE(m.auto_reply);
  CHECK_FALSE(m.bounce);
  CHECK_FALSE(m.malformed);
}

TEST_CASE("Shift_JIS subject, UTF-8 From name, quoted-printable Shift_JIS body") {
  auto m = fixture("shift_jis_qp_list.eml");
  CHECK(m.subject == "取引目的等の確認のお願い");
  CHECK(m.from.name == "JAネットバンク via Linux-erofs");
  CHECK(m.from.email == "linux-erofs@lists.ozlabs.org");
  CHECK(m.text.rfind("平素より、ＪＡネットバンクをご利用いただき", 0) == 0);
  CHECK(contains(m.text, "マネー・ローンダリング対策"));  // CP932 row 1 characters
  CHECK(contains(m.text, "━━━"));                         // CP932 box drawing (0x84AA)
  CHECK(m.bulk);
  CHECK_FALSE(m.malformed);
}

TEST_CASE("KOI8-R Gmail multipart/alternative prefers text/plain") {
  auto m = fixture("koi8r_gmail_alternative.eml");
  CHECK(m.subject == "Используйте Gmail на сотовом телефоне");
  CHECK(m.from.name == "Коллектив Gmail");
  REQUIRE(m.to.size() == 1);
  CHECK(m.to[0].name == "Вадим Яровой");
  CHECK(m.text ==
        "Здравствуйте, Вадим!\n\nТеперь Gmail доступен на вашем сотовом телефоне.\n\n"
        "Коллектив Gmail");
  CHECK(m.attachments.empty());
}

TEST_CASE("Big5 Outlook reply: subject of B and Q words, base64 body") {
  auto m = fixture("big5_outlook_reply.eml");
  CHECK(m.subject ==
        "回覆: 回覆: [phosphor-host-ipmid] Questions about IPMI (OEM) command development");
  CHECK(m.from.name == "Chris Chen (TPI)");
  CHECK(m.text.rfind("謝謝您的回覆，我會再試試看。", 0) == 0);
  CHECK(m.references.size() == 2);
}

TEST_CASE("ks_c_5601-1987 HTML-only mail: CP949 characters, HTML rendered as text") {
  auto m = fixture("ks_c_5601_html_only.eml");
  CHECK(m.subject == "회수: [PATCH] arm64: fpsimd: Added API to manage fpsimd state inside kernel");
  REQUIRE(m.to.size() == 1);
  CHECK(m.to[0].name == "Catalin Marinas");  // Outlook's 'quotes' removed
  // 똠 is outside EUC-KR (KS X 1001) and only in CP949: the label means CP949.
  CHECK(m.text == "안녕하세요, 똠방각하 & 팀원 여러분.\n\n이 메일은 회수되었습니다.");
}

TEST_CASE("ISO-2022-JP subject and 7-bit JIS body") {
  auto m = fixture("iso2022jp_plain.eml");
  CHECK(m.subject == "こんにちは");
  CHECK(m.from.name == "Shugo Maeda");
  CHECK(m.to.size() == 2);
  CHECK(m.text == "こんにちは、前田です。\nよろしくお願いします。");
  CHECK(m.date_ms == 1112171686000);
}

TEST_CASE("Postfix bounce: multipart/report, MAILER-DAEMON, returned message as attachment") {
  auto m = fixture("bounce_postfix_dsn.eml");
  CHECK(m.bounce);
  CHECK(m.auto_reply);  // Auto-Submitted: auto-replied
  CHECK(m.from.email == "MAILER-DAEMON@mx1.zammad.com");
  CHECK(m.from.name == "Mail Delivery System");
  CHECK(m.text.rfind("This is the mail system at host mx1.zammad.com.", 0) == 0);
  CHECK_FALSE(contains(m.text, "is somebody there?"));  // the bounced mail is not the text
  REQUIRE(m.attachments.size() == 2);
  CHECK(m.attachments[0].content_type == "message/delivery-status");
  CHECK(m.attachments[1].content_type == "message/rfc822");
  CHECK(m.attachments[1].filename == "test [Ticket#10010].eml");
  CHECK_FALSE(m.malformed);
}

TEST_CASE("Postfix bounce: the report names the returned message and the failed recipient") {
  auto m = fixture("bounce_postfix_dsn.eml");
  // Read as that message's own Message-ID is (GMime stops at the ':' a msg-id may not hold), so
  // it is the key the message was stored or sent under.
  CHECK(m.report.message_id ==
        "<notification.20150830145600.1.4.5f4fd063-f69b-4e64-a92d-5e7128bd6682@127.0.0.1>");
  CHECK(m.report.action == "failed");
  CHECK(m.report.status == "5.1.1");
  CHECK(m.report.recipient == "rfc822; not_existing@znuny.com");
  // A reference for threading, beside the bounce's own (empty) In-Reply-To.
  auto in = sb::email::to_inbound(m, "support", "INBOX");
  REQUIRE_FALSE(in.thread_lookup.empty());
  CHECK(in.thread_lookup.front() == "email:support:" + m.report.message_id);
  CHECK(in.report.message_id == m.report.message_id);
}

TEST_CASE("RFC 3464 bounce with text/rfc822-headers: the first failed recipient of several") {
  std::string raw =
      "From: Mail Delivery Subsystem <postmaster@mx.example.net>\r\n"
      "To: support@example.com\r\nSubject: Delivery Status Notification (Failure)\r\n"
      "Message-ID: <dsn-1@mx.example.net>\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n"
      "--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
      "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
      "Reporting-MTA: dns; mx.example.net\r\n\r\n"
      "Final-Recipient: rfc822; ok@example.org\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
      "Final-Recipient: rfc822; ann@example.org\r\nAction: Failed\r\nStatus: 5.1.1\r\n"
      "Diagnostic-Code: smtp; 550 5.1.1 <ann@example.org>:\r\n user unknown\r\n"
      "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
      "From: Support <support@example.com>\r\nTo: ann@example.org\r\n"
      "Message-ID:\r\n <sb.conv.1@example.com>\r\nSubject: Re: Order 7\r\n"
      "--b--\r\n";
  auto m = parse_email(raw);
  CHECK(m.bounce);
  CHECK(m.report.message_id == "<sb.conv.1@example.com>");
  CHECK(m.report.action == "failed");
  CHECK(m.report.status == "5.1.1");
  CHECK(m.report.diagnostic == "smtp; 550 5.1.1 <ann@example.org>:  user unknown");
  CHECK(m.report.recipient == "rfc822; ann@example.org");
}

TEST_CASE("a forwarded bounce or a plain mail names no delivery report") {
  auto m = fixture("autoreply_exchange.eml");
  CHECK(m.report.message_id.empty());
  std::string raw =
      "From: ann@example.org\r\nTo: support@example.com\r\nSubject: Fwd: bounce\r\n"
      "Message-ID: <fwd@example.org>\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n"
      "--o\r\nContent-Type: text/plain\r\n\r\nWhat does this mean?\r\n"
      "--o\r\nContent-Type: message/rfc822\r\n\r\n" +
      read_fixture("bounce_postfix_dsn.eml") + "\r\n--o--\r\n";
  auto f = parse_email(raw);
  CHECK(f.report.message_id.empty());
}

TEST_CASE("Exchange auto-reply: X-Autoreply and Auto-Submitted") {
  auto m = fixture("autoreply_exchange.eml");
  CHECK(m.auto_reply);
  CHECK_FALSE(m.bounce);
  CHECK_FALSE(m.bulk);
  CHECK(m.subject == "Selwyn Autoreply");
  CHECK(m.text.rfind("Thank you for your email. This is an automatic acknowledgement that it has "
                     "been received",
                     0) == 0);
}

TEST_CASE("Outlook recall with winmail.dat: TNEF is an attachment with its decoded size") {
  auto m = fixture("outlook_winmail_recall.eml");
  CHECK(m.subject == "Recall: [RFC] down and down_interruptible on x86");
  CHECK(m.text ==
        "Balbir Singh would like to recall the message, \"[RFC] down and "
        "down_interruptible on x86\".");
  REQUIRE(m.attachments.size() == 1);
  CHECK(m.attachments[0].filename == "winmail.dat");
  CHECK(m.attachments[0].content_type == "application/ms-tnef");
  CHECK(m.attachments[0].size == 171);  // 3 base64 lines of 76 characters
}

TEST_CASE("RFC 2231 filenames: UTF-8 percent-encoded and ISO-8859-1 continuations") {
  auto m = fixture("rfc2231_filenames.eml");
  CHECK(m.subject == "Pièces jointes");
  CHECK(m.from.name == "Renée Dupont");
  REQUIRE(m.attachments.size() == 2);
  CHECK(m.attachments[0].filename == "报价单.pdf");
  CHECK(m.attachments[0].content_type == "application/pdf");
  CHECK(m.attachments[0].size == 19);
  CHECK(m.attachments[1].filename == "Présentation finale.ppt");
  CHECK(m.attachments[1].size == 10);
  CHECK(m.text == "Bonjour, voici le devis et la présentation.");
}

TEST_CASE("encoded words that split a multibyte character are joined before decoding") {
  auto m = fixture("split_encoded_words.eml");
  CHECK(m.subject == "中文 test");  // UTF-8 E4 B8 | AD E6 96 87
  CHECK(m.from.name == "中文");     // GB2312 D6 | D0 CE C4
  CHECK(m.from.email == "zhang@example.cn");
}

TEST_CASE("HTML-only: scripts and styles dropped, entities decoded, link text kept") {
  auto m = fixture("html_only_entities.eml");
  CHECK(m.text ==
        "Hello,\n\nis somebody there?\n\n5201 Blue Lagoon Drive - 8th Floor & 9th "
        "Floor – Miami\nEmail: hot@example.com - Web: our site\n- one\n- two\n\n"
        "> On Monday you wrote:\n> old text");  // its <blockquote>, quoted as in plain text
  CHECK_FALSE(m.malformed);
}

TEST_CASE("undeclared 8-bit: raw UTF-8 header, windows-1252 body") {
  auto m = fixture("undeclared_8bit.eml");
  CHECK(m.subject == "Grüße aus München");
  CHECK(m.from.name == "Jörg Müller");  // iso-8859-1 label read as windows-1252
  CHECK(m.text == "Schöne Grüße € 5 “quoted”");
}

TEST_CASE("malformed corpus: flagged, and what could be read is kept") {
  SUBCASE("multipart without boundary keeps the body as text") {
    auto m = fixture("missing_boundary.eml");
    CHECK(m.malformed);
    CHECK(m.subject == "missing boundary");
    CHECK(m.text == "Please help, my order has not arrived.");
  }
  SUBCASE("no headers: whole input is the text, synthetic id") {
    auto raw = read_fixture("no_headers.eml");
    auto m = parse_email(raw);
    CHECK(m.malformed);
    CHECK(m.synthetic_message_id);
    CHECK(m.message_id == sb::email::synthetic_message_id(raw));
    CHECK(m.message_id.size() == 1 + 64 + 21);
    CHECK(m.text.rfind("Just some text that an old script piped", 0) == 0);
  }
  SUBCASE("NUL bytes") {
    auto m = fixture("nul_bytes.eml");
    CHECK(m.malformed);
    CHECK(std::find(m.problems.begin(), m.problems.end(), "nul-bytes") != m.problems.end());
    CHECK(m.subject == "nul bytes");
    CHECK(contains(m.text, "second line"));
  }
  SUBCASE("bogus Content-Transfer-Encoding: bytes passed through") {
    auto m = fixture("bogus_cte.eml");
    CHECK(m.malformed);
    CHECK(m.text == "plain words despite the label");
  }
  SUBCASE("closing boundary missing: first part and the attachment survive") {
    auto m = fixture("truncated_multipart.eml");
    CHECK(m.malformed);
    CHECK(m.text == "first part survives");
    REQUIRE(m.attachments.size() == 1);
    CHECK(m.attachments[0].filename == "data.bin");
    CHECK(m.attachments[0].size == 6);
  }
}

TEST_CASE("well-formed corpus is not flagged malformed") {
  for (const char* name :
       {"gb2312_outlook_8bit.eml", "shift_jis_qp_list.eml", "koi8r_gmail_alternative.eml",
        "big5_outlook_reply.eml", "ks_c_5601_html_only.eml", "iso2022jp_plain.eml",
        "bounce_postfix_dsn.eml", "autoreply_exchange.eml", "outlook_winmail_recall.eml",
        "rfc2231_filenames.eml", "split_encoded_words.eml", "html_only_entities.eml",
        "undeclared_8bit.eml"}) {
    CAPTURE(name);
    auto m = fixture(name);
    CHECK_FALSE(m.malformed);
    CHECK_FALSE(m.synthetic_message_id);
  }
}
