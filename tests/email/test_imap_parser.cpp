// Socket-free tests of the IMAP response parser: the same byte stream must give the same
// responses however it is split.
#include <doctest/doctest.h>

#include <time.h>

#include <algorithm>
#include <string>
#include <vector>

#include "channels/email/imap_parser.hpp"

using namespace sb::email::imap;

namespace {

std::vector<Response> parse_all(std::string_view bytes, ParserLimits limits = {}) {
  ResponseParser p(limits);
  p.feed(bytes);
  std::vector<Response> out;
  while (auto r = p.next()) {
    out.push_back(std::move(*r));
  }
  REQUIRE_FALSE(p.error().has_value());
  return out;
}

// Feeds `bytes` in two pieces split at every position, and byte by byte; all must agree with
// the one-piece parse on the count and the serialised shape of each response.
std::string shape(const Value& v) {
  switch (v.kind) {
    case Value::Kind::nil:
      return "NIL";
    case Value::Kind::number:
      return "#" + v.text;
    case Value::Kind::atom:
      return "a:" + v.text;
    case Value::Kind::string:
      return "s" + std::to_string(v.text.size()) + ":" + v.text;
    case Value::Kind::list: {
      std::string s = "(";
      for (const auto& i : v.items) {
        s += shape(i) + " ";
      }
      return s + ")";
    }
  }
  return "?";
}
std::string shape(const Response& r) {
  std::string s = std::to_string(static_cast<int>(r.type)) + "|" + r.tag + "|" +
                  (r.number ? std::to_string(*r.number) : "-") + "|" + r.name + "|" + r.code + "|" +
                  r.text + "|";
  for (const auto& v : r.code_args) {
    s += shape(v) + ",";
  }
  s += "|";
  for (const auto& v : r.data) {
    s += shape(v) + ",";
  }
  return s;
}

void check_every_split(std::string_view bytes) {
  std::vector<std::string> whole;
  for (const auto& r : parse_all(bytes)) {
    whole.push_back(shape(r));
  }
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    ResponseParser p;
    std::vector<std::string> got;
    p.feed(bytes.substr(0, cut));
    while (auto r = p.next()) {
      got.push_back(shape(*r));
    }
    p.feed(bytes.substr(cut));
    while (auto r = p.next()) {
      got.push_back(shape(*r));
    }
    CAPTURE(cut);
    REQUIRE_FALSE(p.error().has_value());
    REQUIRE(got == whole);
  }
  ResponseParser p;
  std::vector<std::string> got;
  for (char c : bytes) {
    p.feed(std::string_view(&c, 1));
    while (auto r = p.next()) {
      got.push_back(shape(*r));
    }
  }
  CHECK(got == whole);
}

const std::string session =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] "
    "Dovecot (Debian) ready.\r\n"
    "a1 OK [CAPABILITY IMAP4rev1 IDLE UIDPLUS MOVE] Logged in\r\n"
    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n"
    "* 3 EXISTS\r\n"
    "* 0 RECENT\r\n"
    "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
    "* OK [UIDNEXT 4] Predicted next UID\r\n"
    "a2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n"
    "* 1 FETCH (UID 1 RFC822.SIZE 12 BODY[] {12}\r\nSubject: a\r\n FLAGS (\\Seen))\r\n"
    "* 4 EXISTS\r\n"
    "* 2 FETCH (UID 2 BODY[] {6+}\r\nA)\r\n\"B RFC822.SIZE 6)\r\n"
    "* 2 EXPUNGE\r\n"
    "* LIST (\\HasNoChildren) \"/\" \"Sent \\\"x\\\"\"\r\n"
    "* SEARCH 2 84 882\r\n"
    "+ idling\r\n"
    "+\r\n"
    "a3 NO [TRYCREATE] Mailbox doesn't exist: Processed\r\n"
    "* BYE Logging out\r\n";

}  // namespace

TEST_CASE("a Dovecot session parses field by field") {
  auto rs = parse_all(session);
  REQUIRE(rs.size() == 19);

  CHECK(rs[0].type == ResponseType::untagged);
  CHECK(rs[0].name == "OK");
  CHECK(rs[0].code == "CAPABILITY");
  auto caps = capabilities(rs[0]);
  CHECK(std::find(caps.begin(), caps.end(), "LITERAL+") != caps.end());
  CHECK(std::find(caps.begin(), caps.end(), "AUTH=PLAIN") != caps.end());
  CHECK(rs[0].text == "Dovecot (Debian) ready.");

  CHECK(rs[1].type == ResponseType::tagged);
  CHECK(rs[1].tag == "a1");
  CHECK(rs[1].name == "OK");
  CHECK(capabilities(rs[1]).size() == 4);

  CHECK(rs[2].name == "FLAGS");
  REQUIRE(rs[2].data.size() == 1);
  CHECK(rs[2].data[0].items.size() == 5);
  CHECK(rs[3].code == "PERMANENTFLAGS");
  CHECK(rs[3].code_args[0].items.back().text == "\\*");

  CHECK(rs[4].name == "EXISTS");
  CHECK(rs[4].number == 3u);
  CHECK(rs[5].name == "RECENT");
  CHECK(rs[6].code == "UIDVALIDITY");
  CHECK(rs[6].code_args[0].number == 3857529045u);
  CHECK(rs[7].code_args[0].number == 4u);
  CHECK(rs[8].code == "READ-WRITE");
  CHECK(rs[8].text == "Select completed (0.001 + 0.000 secs).");

  auto f1 = as_fetch(rs[9]);
  REQUIRE(f1);
  CHECK(f1->seq == 1);
  CHECK(f1->uid == 1u);
  CHECK(f1->rfc822_size == 12u);
  CHECK(f1->body == "Subject: a\r\n");
  REQUIRE(f1->flags);
  CHECK(*f1->flags == std::vector<std::string>{"\\Seen"});

  CHECK(rs[10].name == "EXISTS");  // untagged data between two FETCHes
  CHECK(rs[10].number == 4u);
  auto f2 = as_fetch(rs[11]);
  REQUIRE(f2);
  CHECK(f2->body == "A)\r\n\"B");  // LITERAL+ with parens, CRLF and a quote inside
  CHECK(f2->rfc822_size == 6u);
  CHECK(rs[12].name == "EXPUNGE");
  CHECK(rs[12].number == 2u);

  CHECK(rs[13].name == "LIST");
  CHECK(rs[13].data[2].text == "Sent \"x\"");
  CHECK(rs[14].name == "SEARCH");
  CHECK(rs[14].data.size() == 3);
  CHECK(rs[14].data[2].number == 882u);
  CHECK(rs[15].type == ResponseType::continuation);
  CHECK(rs[15].text == "idling");
  CHECK(rs[16].type == ResponseType::continuation);
  CHECK(rs[16].text.empty());
  CHECK(rs[17].name == "NO");
  CHECK(rs[17].code == "TRYCREATE");
  CHECK(rs[18].name == "BYE");
}

TEST_CASE("every split position gives the same responses") {
  check_every_split(session);
}

TEST_CASE("binary literal: NUL, CR, LF and braces are body bytes") {
  std::string body("a\0b\r\n{3}\r\n)", 11);
  std::string wire =
      "* 7 FETCH (UID 70 BODY[] {" + std::to_string(body.size()) + "}\r\n" + body + ")\r\n";
  auto rs = parse_all(wire);
  REQUIRE(rs.size() == 1);
  auto f = as_fetch(rs[0]);
  REQUIRE(f);
  CHECK(f->body == body);
  CHECK(f->uid == 70u);
  check_every_split(wire);
}

TEST_CASE("section atoms with spaces, partial origin, NIL, empty literal, literal8") {
  static constexpr char wire[] =
      "* 1 FETCH (BODY[HEADER.FIELDS (FROM TO)] {4}\r\nab\r\n BODY[]<0> NIL BODY[1] {0}\r\n)\r\n"
      "* 2 FETCH (BINARY[] ~{3}\r\n\x00\x01\x02 UID 9)\r\n";
  auto rs = parse_all(std::string_view(wire, sizeof wire - 1));
  check_every_split(std::string_view(wire, sizeof wire - 1));
  REQUIRE(rs.size() == 2);
  auto& items = rs[0].data[0].items;
  REQUIRE(items.size() == 6);
  CHECK(items[0].text == "BODY[HEADER.FIELDS (FROM TO)]");
  CHECK(items[1].text == "ab\r\n");
  CHECK(items[2].text == "BODY[]<0>");
  CHECK(items[3].kind == Value::Kind::nil);
  CHECK(items[5].kind == Value::Kind::string);
  CHECK(items[5].text.empty());
  auto f = as_fetch(rs[1]);
  REQUIRE(f);
  CHECK(f->body == std::string("\x00\x01\x02", 3));
  CHECK(f->uid == 9u);
}

TEST_CASE("limits: literal size, nesting depth, line length are errors, not crashes") {
  ParserLimits small;
  small.max_literal = 10;
  small.max_depth = 8;
  small.max_line = 200;
  {
    ResponseParser p(small);
    p.feed("* 1 FETCH (BODY[] {11}\r\n");
    CHECK_FALSE(p.next());
    REQUIRE(p.error());
    CHECK(p.error()->find("literal") != std::string::npos);
    p.feed("more bytes are ignored\r\n");
    CHECK_FALSE(p.next());
  }
  {
    // Literals each under max_literal, but more than one response may hold in all.
    ParserLimits total = small;
    total.max_response = 40;
    ResponseParser p(total);
    p.feed("* 1 FETCH (A {10}\r\n0123456789 B {10}\r\n");
    CHECK_FALSE(p.next());
    REQUIRE(p.error());
    CHECK(*p.error() == "response larger than 40 bytes");
  }
  {
    ResponseParser p(small);
    p.feed("* LIST " + std::string(20, '(') + std::string(20, ')') + "\r\n");
    CHECK_FALSE(p.next());
    REQUIRE(p.error());
    CHECK(*p.error() == "nesting too deep");
  }
  {
    ResponseParser p(small);
    p.feed("* OK " + std::string(300, 'x'));  // no CRLF ever
    CHECK_FALSE(p.next());
    CHECK(p.error());
  }
  {
    ResponseParser p(small);
    p.feed("* OK \"unterminated\r\n");  // quoted, not a framing problem: still an error value
    p.feed("* OK [UIDVALIDITY 1\r\n");
    CHECK(p.next());  // a quote inside resp-text is just text
    CHECK_FALSE(p.next());
    CHECK(p.error());
  }
}

TEST_CASE("reset discards bytes buffered before STARTTLS") {
  ResponseParser p;
  p.feed("a1 OK Begin TLS\r\n* OK injected\r\n");
  auto r = p.next();
  REQUIRE(r);
  CHECK(r->tag == "a1");
  CHECK(p.buffered() > 0);
  p.reset();
  CHECK(p.buffered() == 0);
  CHECK_FALSE(p.next());
}

TEST_CASE("large literal fed in pieces is framed in linear time") {
  std::string body(8u << 20, 'x');
  std::string wire = "* 1 FETCH (UID 5 BODY[] {" + std::to_string(body.size()) + "}\r\n" + body +
                     ")\r\na5 OK done\r\n";
  ResponseParser p;
  std::vector<Response> rs;
  for (std::size_t i = 0; i < wire.size(); i += 4096) {
    p.feed(std::string_view(wire).substr(i, 4096));
    while (auto r = p.next()) {
      rs.push_back(std::move(*r));
    }
  }
  REQUIRE(rs.size() == 2);
  CHECK(as_fetch(rs[0])->body->size() == body.size());
  CHECK(rs[1].tag == "a5");
  // From an rvalue the body is moved out, not copied: same bytes, same other fields.
  auto moved = as_fetch(std::move(rs[0]));
  REQUIRE(moved);
  CHECK(moved->uid == 5u);
  CHECK(*moved->body == body);
}

namespace {

// `lines` lines "* OK a}" (a '}' that announces no literal), then two literals and a line
// ending in "{x3}".
std::string brace_lines(int lines) {
  std::string wire;
  for (int i = 0; i < lines; ++i) {
    wire += "* OK a}\r\n";
  }
  wire += "* 1 FETCH (UID 5 BODY[] {3}\r\nabc)\r\n* 2 FETCH (UID 6 BODY[] {2+}\r\nde)\r\n";
  wire += "* 3 FETCH (UID 7 BODY[] {x3}\r\n";
  return wire;
}

// The CPU time this thread spends in next() giving every response of `wire`, fed at once. The
// responses are dropped as they come: keeping them would time the allocator growing the heap.
double cpu_seconds_to_frame(const std::string& wire) {
  auto now = [] {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
  };
  ResponseParser p;
  p.feed(wire);
  double t0 = now();
  while (p.next()) {
  }
  return now() - t0;
}

}  // namespace

TEST_CASE("lines ending in '}' that announce no literal are framed in linear time") {
  // A line ending in '}' looked for its '{' back to the start of the buffer when it had none:
  // a server streaming such lines (during IDLE, say) kept the io thread busy for seconds.
  // Linear against quadratic, whatever the build and the machine's load: 4 times the lines take
  // 4 times as long framed linearly (3.8 to 4.1 measured), 16 times or more quadratically (20
  // with the old search); the bound of 10 sits between. A bound in seconds failed under ASan at
  // -j2 (1.3 s alone, 0.09 s in release) and let a quadratic parser pass on a fast machine.
  // 25,000 lines take about 6 ms of CPU in release, far above the clock's resolution, and
  // below them the parser's compaction at 64 KiB would hide a quadratic search. The thread's
  // CPU time leaves out waits for a CPU, the runs alternate, and each size's best of three
  // counts, so the noise of a loaded machine is shed. A quadratic parser fails in about 100 s.
  constexpr int n = 25000, k = 4;
  const std::string small = brace_lines(n), wire = brace_lines(k * n);
  double best_small = 1e9, best_large = 1e9;
  for (int run = 0; run < 3; ++run) {
    best_small = std::min(best_small, cpu_seconds_to_frame(small));
    best_large = std::min(best_large, cpu_seconds_to_frame(wire));
  }
  CAPTURE(best_small);
  CAPTURE(best_large);
  CHECK(best_large < 2.5 * k * best_small);

  ResponseParser p;
  p.feed(small);
  std::vector<Response> rs;
  while (auto r = p.next()) {
    rs.push_back(std::move(*r));
  }
  REQUIRE(rs.size() == n + 2);
  CHECK(rs[n - 1].text == "a}");
  CHECK(*as_fetch(rs[n])->body == "abc");
  CHECK(*as_fetch(rs[n + 1])->body == "de");
  CHECK(p.error());  // "{x3}" is no literal: the line is a response, and not a valid one
}

TEST_CASE("INTERNALDATE: RFC 3501 date-time to Unix ms, the zone applied, the day padded or not") {
  // 1996-07-17 09:44:25 UTC
  CHECK(parse_internal_date("17-Jul-1996 02:44:25 -0700") == 837596665000);
  CHECK(parse_internal_date("17-Jul-1996 11:44:25 +0200") == 837596665000);
  CHECK(parse_internal_date(" 2-Dec-2026 00:00:00 +0000") ==
        parse_internal_date("02-Dec-2026 00:00:00 +0000"));
  CHECK(parse_internal_date("2-dec-2026 00:00:00 +0000") == 1796169600000);
  CHECK(parse_internal_date(FetchData{}.internal_date.value_or("")) == std::nullopt);
  for (const char* bad : {"17-Jul-1996", "31-Feb-2026 00:00:00 +0000", "17-Jux-1996 02:44:25 -0700",
                          "17-Jul-1996 24:00:00 +0000", "17-Jul-1996 02:44:25 0700",
                          "117-Jul-1996 02:44:25 -0700", "17-Jul-1996 02:44:25 -0700 "}) {
    CAPTURE(bad);
    CHECK(parse_internal_date(bad) == std::nullopt);
  }
}

TEST_CASE("a SEARCH date is the UTC day of a moment, the day unpadded") {
  CHECK(search_date(837596665000) == "17-Jul-1996");
  CHECK(search_date(1796169600000) == "2-Dec-2026");
  CHECK(search_date(1796169600000 - 1) == "1-Dec-2026");
}
