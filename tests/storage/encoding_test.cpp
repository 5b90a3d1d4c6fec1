// The hand-written encoders on the writer's hot path, checked against the library code they
// replaced: RFC 3339 timestamps against gmtime_r, the interaction JSON against boost::json, ULIDs
// against their own decoder and sort order.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <random>

#include "core/ids.hpp"
#include "core/time.hpp"
#include "storage/call_payload.hpp"
#include "storage/interaction_json.hpp"

using namespace sb;
namespace json = boost::json;

namespace {
std::string rfc3339_by_libc(std::int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}
}  // namespace

TEST_CASE("format_rfc3339 agrees with gmtime_r from 1970 to 9999, leap days included") {
  for (std::int64_t ms : {0LL, 999LL, 1000LL, 951782400000LL /* 2000-02-29 */,
                          4107542399999LL /* 2100-02-28T23:59:59 */, 1700000000123LL,
                          253402300799000LL /* 9999-12-31T23:59:59 */}) {
    CHECK(format_rfc3339(ms) == rfc3339_by_libc(ms));
  }
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<std::int64_t> any(0, 253402300799999LL);
  for (int i = 0; i < 20000; ++i) {
    std::int64_t ms = any(rng);
    REQUIRE(format_rfc3339(ms) == rfc3339_by_libc(ms));
  }
  CHECK(parse_rfc3339(format_rfc3339(1700000000000)) == 1700000000000);
}

TEST_CASE("new ULIDs decode to their time and sort in creation order") {
  std::string prev;
  // From the last time an id was made on: ids are monotonic per process, so a fixed past time
  // failed whenever an earlier test in the same run had made one from the clock.
  const std::int64_t base = ulid_time_ms(new_ulid()) + 1;
  for (int i = 0; i < 5000; ++i) {
    std::int64_t ms = base + i / 7;  // several in the same millisecond
    std::string id = new_ulid(ms);
    REQUIRE(is_ulid(id));
    REQUIRE(ulid_time_ms(id) == ms);
    REQUIRE(id > prev);
    prev = id;
  }
}

namespace {
// The low 40 bits of a ULID's random part (its last 8 characters).
std::uint64_t ulid_low_bits(const std::string& id) {
  static constexpr std::string_view alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  std::uint64_t v = 0;
  for (std::size_t i = 18; i < 26; ++i) {
    v = v << 5 | alphabet.find(id[i]);
  }
  return v;
}
}  // namespace

TEST_CASE("ULIDs of one millisecond grow by a random step, not by one") {
  const std::int64_t ms = ulid_time_ms(new_ulid()) + 1;
  std::string prev = new_ulid(ms);
  int by_one = 0;
  for (int i = 0; i < 1000; ++i) {
    std::string id = new_ulid(ms);
    REQUIRE(ulid_time_ms(id) == ms);
    REQUIRE(id > prev);
    // The step is 1 to 2^32: the low 40 bits differ by it (modulo 2^40, for a carry).
    std::uint64_t step = (ulid_low_bits(id) - ulid_low_bits(prev)) & ((1ULL << 40) - 1);
    CHECK(step >= 1);
    CHECK(step <= (1ULL << 32));
    by_one += step == 1 ? 1 : 0;
    prev = id;
  }
  CHECK(by_one <= 1);  // the next id is not the one before it plus one
}

TEST_CASE("a ULID's random part comes from the kernel, not from a state a fork copies") {
  // A child process starts with a copy of the parent's memory: a generator of our own (the
  // mt19937_64 of before) then gives both the same ids. Fresh bytes from getrandom do not.
  const std::int64_t ms = ulid_time_ms(new_ulid()) + 1;
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::string id = new_ulid(ms);
    ssize_t n = ::write(fds[1], id.data(), id.size());
    ::_exit(n == static_cast<ssize_t>(id.size()) ? 0 : 1);
  }
  ::close(fds[1]);
  std::string mine = new_ulid(ms);
  std::string theirs(26, '\0');
  std::size_t got = 0;
  while (got < theirs.size()) {
    ssize_t n = ::read(fds[0], theirs.data() + got, theirs.size() - got);
    if (n <= 0) {
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  REQUIRE(got == theirs.size());
  CHECK(WIFEXITED(status));
  CHECK(ulid_time_ms(theirs) == ms);
  CHECK(mine != theirs);
}

TEST_CASE("the interaction JSON parses back to every field, with strings escaped") {
  Inbound in;
  in.channel = "email";
  in.account = "support";
  in.kind = "email";
  in.external_id = "<a\"b@example.com>";
  in.from = Identity{"email", "ana@example.com", "Ana \"the\" Lima\\", ""};
  in.to = {Identity{"email", "support@example.com", "", ""}, Identity{"x", "42", "", "@acme"}};
  in.subject = "Tab\there, ünïcödé 日本, control \x01\x1f";
  in.text = "line 1\nline 2\r\n\b\f end";
  in.occurred_at_ms = 1700000000000;
  in.in_reply_to = "<p@example.com>";
  in.call = CallInfo{"completed", "inbound", 42, ""};
  in.attachments = {
      Attachment{"a.pdf", "application/pdf", 1234, true, ""},
      Attachment{"b.png", "image/*", 0, false, "", "https://cdn.example/b.png?x=\"1"}};
  in.flags = {"malformed", "bulk"};
  storage::StoredMeta meta{"01J00000000000000000000000",
                           "01J00000000000000000000001",
                           "cust-1",
                           "Ana",
                           "gold",
                           true,
                           1700000001000,
                           "general",
                           "high"};
  auto v = json::parse(storage::interaction_json(in, meta)).as_object();
  CHECK(v.at("id") == "01J00000000000000000000000");
  CHECK(v.at("external_id") == "<a\"b@example.com>");
  CHECK(v.at("from").at("name") == "Ana \"the\" Lima\\");
  CHECK(v.at("from").as_object().if_contains("handle") == nullptr);
  CHECK(v.at("to").as_array().size() == 2);
  CHECK(v.at("to").at(1).at("handle") == "@acme");
  CHECK(v.at("subject").as_string() == in.subject);
  CHECK(v.at("text").as_string() == in.text);
  CHECK(v.at("customer").at("is_new") == true);
  CHECK(v.at("customer").at("tier") == "gold");
  CHECK(v.at("occurred_at") == "2023-11-14T22:13:20Z");
  CHECK(v.at("received_at") == "2023-11-14T22:13:21Z");
  CHECK(v.at("in_reply_to") == "<p@example.com>");
  CHECK(v.at("call").at("duration_s") == 42);
  CHECK(v.at("attachments").at(0).at("size") == 1234);
  CHECK(v.at("attachments").at(0).at("stored") == true);
  CHECK(v.at("attachments").at(0).as_object().if_contains("url") == nullptr);  // only when set
  CHECK(v.at("attachments").at(1).at("url") == "https://cdn.example/b.png?x=\"1");
  CHECK(v.at("flags") == json::array{"malformed", "bulk"});
  CHECK(v.at("queue") == "general");
  CHECK(v.at("priority") == "high");

  Inbound withheld;
  withheld.channel = "voice";
  storage::StoredMeta none{"id", "conv", "", "", "", false, 0, "", ""};
  auto w = json::parse(storage::interaction_json(withheld, none)).as_object();
  CHECK(w.at("customer").is_null());
  CHECK(w.at("from").is_null());
  CHECK(w.at("to").as_array().empty());
  CHECK(w.if_contains("subject") == nullptr);
}

TEST_CASE("append_json_string matches boost::json's serialiser byte for byte") {
  std::string all;
  for (int c = 1; c < 128; ++c) {
    all += static_cast<char>(c);
  }
  all += "é日本";
  std::string out;
  storage::append_json_string(out, all);
  CHECK(out == json::serialize(json::string(all)));
  // Text is scanned 16 bytes at a time: every byte to escape, at every position of a block and
  // of the shorter tail, next to multibyte UTF-8 and at both ends.
  for (int c : {0x01, 0x08, 0x0a, 0x1f, int{'"'}, int{'\\'}, 0x20, 0x7f}) {
    for (std::size_t len : {1u, 15u, 16u, 17u, 31u, 32u, 33u, 40u}) {
      for (std::size_t at = 0; at < len; ++at) {
        std::string text(len, 'a');
        text[at] = static_cast<char>(c);
        text += "\xc3\xa9";  // é after the block
        std::string got;
        storage::append_json_string(got, text);
        REQUIRE_MESSAGE(got == json::serialize(json::string(text)), "byte ", c, " at ", at, "/",
                        len);
      }
    }
  }
}

TEST_CASE("a stored call's payload is read and rewritten in place, other bytes untouched") {
  Inbound in;
  in.channel = "voice";
  in.account = "pbx";
  in.kind = "call";
  in.external_id = "CA1";
  in.from = Identity{"phone", "+14155550100", "", ""};
  // Text that looks like the keys being replaced must survive as it is.
  in.subject = R"(a "call":{"status":"x"} and ,"queue":"evil" 日本)";
  in.call = CallInfo{"ringing", "inbound", -1, ""};
  storage::StoredMeta meta{"01J00000000000000000000000",
                           "conv-1",
                           "cust-1",
                           "Ann",
                           "gold",
                           false,
                           1700000000000,
                           "",
                           ""};
  std::string stored = storage::interaction_json(in, meta);
  auto where = storage::read_call_payload(stored);
  REQUIRE(where);
  CHECK(where->call.status == "ringing");
  CHECK(where->call.duration_s == -1);
  CHECK(where->queue.empty());
  CHECK(where->conversation_id == "conv-1");
  CHECK(where->customer_id == "cust-1");
  CHECK(where->customer_tier == "gold");

  CallInfo done{"completed", "inbound", 42, "https://example.com/rec.mp3"};
  std::string queue = "callbacks", priority = "high";
  std::string next = storage::rewrite_call_payload(stored, *where, done, &queue, &priority);
  auto v = json::parse(next).as_object();
  CHECK(v.at("call").at("status") == "completed");
  CHECK(v.at("call").at("duration_s") == 42);
  CHECK(v.at("call").at("recording_url") == "https://example.com/rec.mp3");
  CHECK(v.at("queue") == "callbacks");
  CHECK(v.at("priority") == "high");
  CHECK(v.at("subject").as_string() == in.subject);
  // The same as building it from scratch with the new values.
  in.call = done;
  meta.queue = queue;
  meta.priority = priority;
  CHECK(next == storage::interaction_json(in, meta));

  // Without a routing change only "call" moves; a payload without "call" is refused.
  auto again = storage::read_call_payload(next);
  REQUIRE(again);
  CHECK(again->queue == "callbacks");
  std::string only_call = storage::rewrite_call_payload(
      next, *again, CallInfo{"busy", "inbound", 0, ""}, nullptr, nullptr);
  CHECK(json::parse(only_call).at("queue") == "callbacks");
  CHECK(json::parse(only_call).at("call").at("status") == "busy");
  CHECK_FALSE(storage::read_call_payload(R"({"id":"x","queue":"","priority":""})"));

  // A withheld caller: no customer, no from.
  Inbound withheld;
  withheld.channel = "voice";
  withheld.kind = "call";
  withheld.call = CallInfo{"ringing", "inbound", -1, ""};
  storage::StoredMeta none{"01J00000000000000000000002", "conv-2", "", "", "", false, 1, "", ""};
  std::string anon = storage::interaction_json(withheld, none);
  auto w = storage::read_call_payload(anon);
  REQUIRE(w);
  CHECK(w->customer_id.empty());
  CHECK(w->conversation_id == "conv-2");
  CHECK(w->call.status == "ringing");
  CHECK_FALSE(storage::read_call_payload("not json"));
}

TEST_CASE("a call's child legs and who answered are written, read back and kept by a rewrite") {
  Inbound in;
  in.channel = "voice";
  in.account = "voice";
  in.kind = "call";
  in.external_id = "CA-parent";
  CallInfo call;
  call.status = "in-progress";
  call.direction = "inbound";
  call.answered_by = "+14155550166";
  call.answered_at_ms = 1767323055000;
  call.legs.push_back({"CA-leg2", "sip:bob@example.com", "no-answer", 0});
  call.legs.push_back({"CA-leg1", "+14155550166", "completed", 40});
  in.call = call;
  storage::StoredMeta meta{"01J00000000000000000000003", "conv-3", "", "", "", false, 1, "", ""};
  std::string stored = storage::interaction_json(in, meta);
  auto v = json::parse(stored).as_object();
  CHECK(v.at("call").at("answered_by") == "+14155550166");
  CHECK(v.at("call").at("answered_at") == 1767323055000);
  CHECK(v.at("call").at("legs").at(1).at("duration_s") == 40);
  auto where = storage::read_call_payload(stored);
  REQUIRE(where);
  CHECK(where->call.answered_by == "+14155550166");
  CHECK(where->call.answered_at_ms == 1767323055000);
  REQUIRE(where->call.legs.size() == 2);
  CHECK(where->call.legs[0].id == "CA-leg2");
  CHECK(where->call.legs[0].to == "sip:bob@example.com");
  CHECK(where->call.legs[0].status == "no-answer");
  CHECK(where->call.legs[0].duration_s == 0);
  CHECK(where->call.legs[1].duration_s == 40);
  // What is read back writes the same bytes again; a call without legs writes none.
  CHECK(storage::rewrite_call_payload(stored, *where, where->call, nullptr, nullptr) == stored);
  CHECK(storage::call_text(CallInfo{"ringing", "inbound", -1, ""}).find("legs") ==
        std::string::npos);
  // A leg without an id is not a readable payload.
  CHECK_FALSE(storage::read_call_payload(
      R"({"call":{"status":"","legs":[{"to":"+1"}]},"queue":"","priority":""})"));
}

TEST_CASE("an answer goes to Reply-To, else From, and a follow-up to our own reply to its To") {
  auto who = [](const char* parent) -> std::string {
    json::object o = json::parse(parent).as_object();
    const json::object* r = storage::reply_recipient(o);
    return r ? std::string(r->at("value").as_string()) : "(none)";
  };
  CHECK(who(R"({"direction":"inbound","from":{"type":"email","value":"noreply@shop.example"},
                "reply_to":{"type":"email","value":"ann@example.com"}})") == "ann@example.com");
  CHECK(who(R"({"direction":"inbound","from":{"type":"phone","value":"+14155550100"}})") ==
        "+14155550100");
  CHECK(who(R"({"direction":"outbound","to":[{"type":"email","value":"ann@example.com"},
                {"type":"email","value":"cc@example.com"}],"from":null})") == "ann@example.com");
  CHECK(who(R"({"direction":"outbound","to":[]})") == "(none)");
  CHECK(who(R"({"direction":"inbound","from":null,"reply_to":"not an object"})") == "(none)");
}

TEST_CASE("an answer passes over our own addresses - Reply-To ours goes to From, none if both") {
  auto ours = [](std::string_view type, std::string_view value) {
    return type == "email" && value == "support@example.com";
  };
  auto who = [&ours](const char* parent) -> std::string {
    json::object o = json::parse(parent).as_object();
    const json::object* r = storage::reply_recipient(o, ours);
    return r ? std::string(r->at("value").as_string()) : "(none)";
  };
  CHECK(who(R"({"direction":"inbound","from":{"type":"email","value":"ann@example.com"},
                "reply_to":{"type":"email","value":"support@example.com"}})") == "ann@example.com");
  CHECK(who(R"({"direction":"inbound","from":{"type":"email","value":"support@example.com"}})") ==
        "(none)");
  CHECK(who(R"({"direction":"inbound","from":{"type":"email","value":"support@example.com"},
                "reply_to":{"type":"email","value":"support@example.com"}})") == "(none)");
  CHECK(who(R"({"direction":"outbound","to":[{"type":"email","value":"support@example.com"},
                {"type":"email","value":"ann@example.com"}]})") == "ann@example.com");
  // Another type with the same text is not ours.
  CHECK(who(R"({"direction":"inbound","from":{"type":"x","value":"support@example.com"}})") ==
        "support@example.com");
}
