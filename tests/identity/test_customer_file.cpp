#include <cstdio>
#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>

#include "core/printable.hpp"
#include "routing/customer_file.hpp"

namespace {

using Format = sb::CustomerFileReader::Format;

// Every ParsedLine of `content`, formatted as a user reads the import report:
// "3: c-1 | Ann Lee | vip | b2b,retail | email:ann@example.com phone:+14155550100" or
// "17: error".
std::vector<std::string> parse_all(const std::string& content, Format format,
                                   std::string region = "US") {
  std::string error;
  auto reader = sb::CustomerFileReader::from_string(content, format, region, error);
  REQUIRE_MESSAGE(reader, error);
  std::vector<std::string> out;
  while (auto line = reader->next()) {
    std::string s = std::to_string(line->line_no) + ": ";
    if (!line->record) {
      out.push_back(s + line->error);
      continue;
    }
    const sb::CustomerRecord& r = *line->record;
    s += r.external_id + " | " + r.name.value_or("") + " | " + r.tier.value_or("") + " |";
    const std::vector<std::string> tags = r.tags.value_or(std::vector<std::string>{});
    for (std::size_t i = 0; i < tags.size(); ++i) {
      s += (i ? "," : " ") + tags[i];
    }
    s += " |";
    for (const auto& id : r.identities) {
      s += " " + id.type + ":" + id.value;
    }
    out.push_back(s);
  }
  return out;
}

std::string header_error(const std::string& content) {
  std::string error;
  auto reader = sb::CustomerFileReader::from_string(content, Format::csv, "US", error);
  CHECK_FALSE(reader);
  return error;
}

}  // namespace

TEST_CASE("csv: every SPEC column, several values per cell") {
  const auto lines = parse_all(
      "external_id,name,email,phone,tier,tags,mastodon,x,telegram\n"
      "c-1,Ann Lee,Ann@Example.com;ann.lee@work.example,(415) 555-0100,vip,b2b; retail ,"
      "@ann@social.example,@AnnLee;2244994945,123456\n"
      "c-2,Bob,,,,,,,\n",
      Format::csv);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] ==
        "2: c-1 | Ann Lee | vip | b2b,retail | email:ann@example.com email:ann.lee@work.example "
        "phone:+14155550100 mastodon:ann@social.example x_handle:annlee x:2244994945 "
        "telegram:123456");
  CHECK(lines[1] == "3: c-2 | Bob |  | |");
}

// Which of name, tier and tags a record gives: "name=Ann tier=- tags=-" ('-' for not given).
std::string given_fields(const std::string& content, Format format) {
  std::string error;
  auto reader = sb::CustomerFileReader::from_string(content, format, "US", error);
  REQUIRE_MESSAGE(reader, error);
  auto line = reader->next();
  REQUIRE(line);
  REQUIRE_MESSAGE(line->record, line->error);
  const sb::CustomerRecord& r = *line->record;
  std::string tags = "-";
  if (r.tags) {
    tags = "[";
    for (const auto& t : *r.tags) {
      tags += (tags.size() > 1 ? "," : "") + t;
    }
    tags += "]";
  }
  return "name=" + r.name.value_or("-") + " tier=" + r.tier.value_or("-") + " tags=" + tags;
}

TEST_CASE("a field the file does not give is not given, an empty one is given empty") {
  // CSV: a column missing from the header is not given; an empty cell of a column is.
  CHECK(given_fields("external_id,email\nc-1,ann@example.com\n", Format::csv) ==
        "name=- tier=- tags=-");
  CHECK(given_fields("external_id,name,tier,tags\nc-1,Ann,,\n", Format::csv) ==
        "name=Ann tier= tags=[]");
  CHECK(given_fields("tags,external_id\nb2b; retail,c-1\n", Format::csv) ==
        "name=- tier=- tags=[b2b,retail]");
  // JSON Lines: an absent key is not given; "", null and [] are.
  CHECK(given_fields(R"({"external_id":"c-1","emails":["ann@example.com"]})", Format::jsonl) ==
        "name=- tier=- tags=-");
  CHECK(given_fields(R"({"external_id":"c-1","name":null,"tier":"","tags":[]})", Format::jsonl) ==
        "name= tier= tags=[]");
  CHECK(given_fields(R"({"external_id":"c-1","tier":"vip","tags":null})", Format::jsonl) ==
        "name=- tier=vip tags=[]");
}

TEST_CASE("csv: RFC 4180 quoting, CRLF, embedded newlines keep line numbers right") {
  const auto lines = parse_all(
      "external_id,name,tags\r\n"
      "c-1,\"Lee, Ann\",\"a;b\"\r\n"
      "c-2,\"Say \"\"hi\"\"\",x\r\n"
      "c-3,\"two\r\nlines\",y\r\n"
      "\r\n"
      "c-4,\"three\nline\nname\",z\r\n"
      "c-5,last,\r\n",
      Format::csv);
  REQUIRE(lines.size() == 5);
  CHECK(lines[0] == "2: c-1 | Lee, Ann |  | a,b |");
  CHECK(lines[1] == "3: c-2 | Say \"hi\" |  | x |");
  CHECK(lines[2] == "4: c-3 | two\r\nlines |  | y |");
  CHECK(lines[3] == "7: c-4 | three\nline\nname |  | z |");  // line 6 is blank
  CHECK(lines[4] == "10: c-5 | last |  | |");
}

TEST_CASE("csv: columns in any order, a BOM, a missing final newline") {
  const auto lines = parse_all(
      "\xEF\xBB\xBFPhone, External_ID ,email\n"
      "+44 20 7946 0958,c-9,z@example.com",
      Format::csv);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] == "2: c-9 |  |  | | phone:+442079460958 email:z@example.com");
}

TEST_CASE("csv: header problems stop the import with a message") {
  CHECK(header_error("external_id,name,fax,pager\n") ==
        "line 1: unknown columns \"fax\", \"pager\"; expected some of: "
        "external_id,name,email,phone,tier,tags,mastodon,x,telegram");
  CHECK(header_error("name,email\n") == "line 1: the header has no external_id column");
  CHECK(header_error("external_id,email,email\n") == "line 1: column \"email\" appears twice");
  CHECK(header_error("").rfind("line 1: empty file", 0) == 0);
}

TEST_CASE("csv: bad lines are rejected with their number and reason, the rest goes on") {
  const auto lines = parse_all(
      "external_id,name,phone,email,mastodon\n"
      "c-1,Ann,+14155550100,,\n"
      "c-2,Bob,12ab,,\n"
      "c-3,Cy,,not-an-email,\n"
      "c-4,Di,anonymous,,\n"
      ",Eve,,,\n"
      "c-6,Fay,,,\n"
      "c-7,Gus\n"
      "c-8,\"Hal\"x,,,\n"
      "c-9,\"Ivy,,,\n"
      "c-10,Jo,,,\n",
      Format::csv);
  REQUIRE(lines.size() == 9);
  CHECK(lines[0] == "2: c-1 | Ann |  | | phone:+14155550100");
  CHECK(lines[1] == "3: phone \"12ab\": not a valid phone number (not a number)");
  CHECK(lines[2] == "4: email \"not-an-email\": not a valid email address");
  CHECK(lines[3] == "5: phone \"anonymous\": a withheld caller id, not a phone number");
  CHECK(lines[4] == "6: external_id is missing or empty");
  CHECK(lines[5] == "7: c-6 | Fay |  | |");
  CHECK(lines[6] == "8: 2 fields, but the header has 5");
  CHECK(lines[7] == "9: unexpected character after a closing quote");
  // An unclosed quote swallows the rest of the file; the error names where it started.
  CHECK(lines[8] == "10: unterminated quoted field");
}

TEST_CASE("csv: invalid UTF-8 in a cell is rejected") {
  const auto lines = parse_all("external_id,name\nc-1,Ann\xC3\nc-2,J\xC3\xBCrgen\n", Format::csv);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "2: name: invalid UTF-8");
  CHECK(lines[1] == "3: c-2 | J\xC3\xBCrgen |  | |");
}

TEST_CASE("jsonl: the SPEC shape") {
  const auto lines =
      parse_all(R"({"external_id":"c-1","name":"Ann Lee","emails":["ann@example.com"],)"
                R"("phones":["+14155550100"],"handles":{"mastodon":["@ann@social.example"],)"
                R"("x":["annlee"],"telegram":["42"]},"tier":"vip","tags":["b2b"]})"
                "\n\n   \r\n"
                R"({"external_id":"c-2","name":null,"phones":["020 7946 0958"]})"
                "\r\n",
                Format::jsonl, "GB");
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] ==
        "1: c-1 | Ann Lee | vip | b2b | email:ann@example.com phone:+14155550100 "
        "mastodon:ann@social.example x_handle:annlee telegram:42");
  CHECK(lines[1] == "4: c-2 |  |  | | phone:+442079460958");
}

TEST_CASE("jsonl: bad lines name the problem, good lines around them survive") {
  const auto lines = parse_all(
      "{\"external_id\":\"c-1\"}\n"
      "{\"external_id\":\"c-2\",\n"
      "[1,2]\n"
      "{\"external_id\":7}\n"
      "{\"external_id\":\"c-5\",\"emails\":\"ann@example.com\"}\n"
      "{\"external_id\":\"c-6\",\"phones\":[\"+14155550100\",5]}\n"
      "{\"external_id\":\"c-7\",\"fax\":\"1\"}\n"
      "{\"external_id\":\"c-8\",\"handles\":{\"myspace\":[\"tom\"]}}\n"
      "{\"external_id\":\"c-9\",\"name\":\"Ann\xC3\"}\n"
      "{\"external_id\":\"c-10\",\"phones\":[\"12ab\"]}\n"
      "{\"name\":\"no id\"}\n"
      "{\"external_id\":\"c-12\",\"handles\":{\"x\":[\"@ann lee\"]}}\n"
      "{\"external_id\":\"c-13\"}\n",
      Format::jsonl);
  REQUIRE(lines.size() == 13);
  CHECK(lines[0] == "1: c-1 |  |  | |");
  CHECK(lines[1].rfind("2: invalid JSON", 0) == 0);
  CHECK(lines[2] == "3: expected a JSON object");
  CHECK(lines[3] == "4: external_id: expected a string");
  CHECK(lines[4] == "5: emails: expected an array of strings");
  CHECK(lines[5] == "6: phones: expected an array of strings");
  CHECK(lines[6] == "7: unknown field \"fax\"");
  CHECK(lines[7] == "8: unknown field \"handles.myspace\"");
  CHECK(lines[8].rfind("9: invalid JSON", 0) == 0);  // invalid UTF-8
  CHECK(lines[9] == "10: phones \"12ab\": not a valid phone number (not a number)");
  CHECK(lines[10] == "11: external_id is missing or empty");
  CHECK(lines[11] == "12: handles.x \"@ann lee\": not a valid username");
  CHECK(lines[12] == "13: c-13 |  |  | |");
}

TEST_CASE("open: reads a file, picks the format by extension, reports progress") {
  const auto dir = std::filesystem::temp_directory_path();
  const auto csv_path = dir / ("sb_test_identity_" + std::to_string(::getpid()) + ".csv");
  const auto jsonl_path = dir / ("sb_test_identity_" + std::to_string(::getpid()) + ".jsonl");
  {
    std::ofstream(csv_path) << "external_id,email\n"
                            << "c-1,a@example.com\n"
                            << "c-2,bad\n";
    std::ofstream(jsonl_path) << "{\"external_id\":\"j-1\",\"emails\":[\"B@example.com\"]}\n";
  }
  std::string error;
  auto csv = sb::CustomerFileReader::open(csv_path.string(), "US", error);
  REQUIRE_MESSAGE(csv, error);
  CHECK(csv->total_bytes() == std::filesystem::file_size(csv_path));
  auto a = csv->next();
  REQUIRE(a);
  REQUIRE(a->record);
  CHECK(a->record->external_id == "c-1");
  auto b = csv->next();
  REQUIRE(b);
  CHECK(b->line_no == 3);
  CHECK(b->error == "email \"bad\": not a valid email address");
  CHECK_FALSE(csv->next());
  CHECK(csv->bytes_consumed() == csv->total_bytes());

  auto jsonl = sb::CustomerFileReader::open(jsonl_path.string(), "US", error);
  REQUIRE_MESSAGE(jsonl, error);
  auto j = jsonl->next();
  REQUIRE(j);
  REQUIRE(j->record);
  REQUIRE(j->record->identities.size() == 1);
  CHECK(j->record->identities[0].value == "b@example.com");
  CHECK_FALSE(jsonl->next());

  CHECK_FALSE(sb::CustomerFileReader::open((dir / "sb-no-such-file.csv").string(), "US", error));
  CHECK(error.find("No such file") != std::string::npos);
  std::filesystem::remove(csv_path);
  std::filesystem::remove(jsonl_path);
}

TEST_CASE("oversized records are rejected without losing the lines after them") {
  const std::string huge(1100 * 1024, 'a');
  const auto jsonl =
      parse_all("{\"external_id\":\"" + huge + "\"}\n{\"external_id\":\"c-2\"}\n", Format::jsonl);
  REQUIRE(jsonl.size() == 2);
  CHECK(jsonl[0] == "1: line longer than 1 MiB");
  CHECK(jsonl[1] == "2: c-2 |  |  | |");

  const auto csv = parse_all("external_id,name\nc-1," + huge + "\nc-2,Bo\n", Format::csv);
  REQUIRE(csv.size() == 2);
  CHECK(csv[0] == "2: record longer than 1 MiB (an unclosed quote?)");
  CHECK(csv[1] == "3: c-2 | Bo |  | |");
}

TEST_CASE("rejected values are quoted without terminal controls, cut between characters") {
  std::string e_acute;  // 70 characters of two bytes each
  for (int i = 0; i < 70; ++i) {
    e_acute += "\xc3\xa9";
  }
  // ESC ] 2 ... BEL would retitle the terminal; C2 9B is U+009B, CSI to a UTF-8 terminal.
  // (';' separates the emails of a cell, so the sequence here has none.)
  const auto lines = parse_all(
      "external_id,email\n"
      "c-1,\"a\x1b]2 pwned\x07\xc2\x9b"
      "2J\x7f\"\n"
      "c-2,a" +
          e_acute + "\n",
      Format::csv);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "2: email \"a?]2 pwned??2J?\": not a valid email address");
  // 60 characters and "...": a cut at byte 60 would have split the 30th character.
  CHECK(lines[1] ==
        "3: email \"a" + e_acute.substr(0, 59 * 2) + "...\": not a valid email address");
}

TEST_CASE("printable: C0, C1 and DEL replaced, whitespace a space, cut on a code point") {
  CHECK(sb::printable("Ann Lee") == "Ann Lee");
  CHECK(sb::printable("a\x1b[31mb\x07"
                      "c\x7f") == "a?[31mb?c?");
  CHECK(sb::printable("line 1\nline 2\tx\r") == "line 1 line 2 x ");
  CHECK(sb::printable("\xc2\x9b"
                      "2J \xc2\x85 \xc2\xa0") == "?2J ? \xc2\xa0");  // C1; NBSP kept
  CHECK(sb::printable("bad \xff\xc3 end") == "bad ?? end");
  CHECK(sb::printable("J\xc3\xbcrgen \xe4\xb8\xad\xf0\x9f\x98\x80") ==
        "J\xc3\xbcrgen \xe4\xb8\xad\xf0\x9f\x98\x80");
  // 60 characters of two bytes each: a cut at byte 60 would keep half of the 30th.
  std::string e_acute;
  for (int i = 0; i < 70; ++i) {
    e_acute += "\xc3\xa9";
  }
  const std::string cut = sb::printable("a" + e_acute, 60);
  CHECK(cut.size() == 1 + 59 * 2 + 3);
  CHECK(cut.substr(cut.size() - 3) == "...");
  CHECK(sb::is_valid_utf8(cut));
  CHECK(sb::printable("abc", 3) == "abc");
  CHECK(sb::printable("abcd", 3) == "abc...");
}

TEST_CASE("an email with a display name or a list of addresses says what to give instead") {
  const auto csv = parse_all(
      "external_id,email\n"
      "c-1,\"Ann Lee <Ann@Example.com>\"\n"
      "c-2,\"ann@example.com, bob@example.com\"\n"
      "c-3,ann@example.com; bob@example.com\n",
      Format::csv);
  REQUIRE(csv.size() == 3);
  CHECK(csv[0] ==
        "2: email \"Ann Lee <Ann@Example.com>\": not a valid email address (give the address "
        "alone: ann@example.com)");
  CHECK(csv[1] ==
        "3: email \"ann@example.com, bob@example.com\": not a valid email address (one address "
        "only: separate several with ';')");
  CHECK(csv[2] == "4: c-3 |  |  | | email:ann@example.com email:bob@example.com");
  const auto jsonl =
      parse_all(R"({"external_id":"c-1","emails":["ann@example.com, bob@example.com"]})"
                "\n",
                Format::jsonl);
  REQUIRE(jsonl.size() == 1);
  CHECK(jsonl[0] ==
        "1: emails \"ann@example.com, bob@example.com\": not a valid email address (one address "
        "only: give each as its own string in the list)");
}

TEST_CASE("a phone number's extension is dropped, and the record says so beside the identity") {
  std::string error;
  auto reader = sb::CustomerFileReader::from_string(
      "external_id,phone\nc-1,+1 415 555 0100 ext. 12\nc-2,(415) 555-0101\n", Format::csv, "US",
      error);
  REQUIRE(reader);
  auto first = reader->next();
  REQUIRE(first);
  REQUIRE(first->record);
  REQUIRE(first->record->identities.size() == 1);
  CHECK(first->record->identities[0].value == "+14155550100");
  CHECK(first->record->notes ==
        std::vector<std::string>{"\"+1 415 555 0100 ext. 12\": extension 12 dropped"});
  auto second = reader->next();
  REQUIRE(second);
  REQUIRE(second->record);
  CHECK(second->record->notes == std::vector<std::string>{""});
}
