// The TOML-free value checks behind the config reader.
#include <doctest/doctest.h>

#include "config/validate.hpp"

using namespace sb::config::detail;

TEST_CASE("split_host_port") {
  auto hp = split_host_port("0.0.0.0:80");
  REQUIRE(hp);
  CHECK(hp->host == "0.0.0.0");
  CHECK(hp->port == 80);
  CHECK(split_host_port("127.0.0.1:0")->port == 0);  // any free port, for tests
  CHECK(split_host_port("[::]:443")->host == "::");
  CHECK_FALSE(split_host_port(":80"));
  CHECK_FALSE(split_host_port("host:"));
  CHECK_FALSE(split_host_port("host:-1"));
  CHECK_FALSE(split_host_port("host:80x"));
  CHECK_FALSE(split_host_port("fe80::1"));
}

TEST_CASE("is_loopback") {
  CHECK(is_loopback("127.0.0.1"));
  CHECK(is_loopback("127.255.255.254"));
  CHECK(is_loopback("::1"));
  CHECK(is_loopback("[::1]"));
  CHECK(is_loopback("Localhost"));
  CHECK_FALSE(is_loopback("128.0.0.1"));
  CHECK_FALSE(is_loopback("10.0.0.1"));
  CHECK_FALSE(is_loopback("::2"));
  CHECK_FALSE(is_loopback("localhost.example.com"));
  CHECK_FALSE(is_loopback("127.0.0.1.nip.io"));
}

TEST_CASE("decode_base64") {
  CHECK(decode_base64("aGVsbG8=") == std::vector<std::uint8_t>{'h', 'e', 'l', 'l', 'o'});
  CHECK(decode_base64("aGVsbG8") == std::vector<std::uint8_t>{'h', 'e', 'l', 'l', 'o'});
  CHECK(decode_base64("")->empty());
  CHECK_FALSE(decode_base64("a"));
  CHECK_FALSE(decode_base64("aGV$bG8="));
}

TEST_CASE("names, after, vocabularies") {
  CHECK(is_simple_name("support-out_2.eu"));
  CHECK_FALSE(is_simple_name(""));
  CHECK_FALSE(is_simple_name("a b"));
  CHECK(is_valid_after("keep"));
  CHECK(is_valid_after("move:Archive/2026"));
  CHECK_FALSE(is_valid_after("move"));
  CHECK(is_call_status("no-answer"));
  CHECK_FALSE(is_call_status("missed"));
  CHECK(is_interaction_channel("whatsapp"));
  CHECK(is_interaction_kind("direct_message"));
  CHECK_FALSE(is_interaction_kind("dm"));
}

TEST_CASE("parse_redis_url") {
  sb::config::Redis r;
  CHECK_FALSE(parse_redis_url("redis://[::1]:6390/2", r));
  CHECK(r.host == "::1");
  CHECK(r.port == 6390);
  CHECK(r.db == 2);
  CHECK(r.url == "redis://[::1]:6390/2");
  // Userinfo is percent-decoded: a password may hold '@' or ':'.
  CHECK_FALSE(parse_redis_url("redis://:p%40ss%3Aw@h/", r));
  CHECK(r.password == "p@ss:w");
  CHECK(r.db == 0);
  CHECK(parse_redis_url("redis://h:0", r) == std::optional<std::string>("has an invalid port"));
  CHECK(parse_redis_url("redis://h?db=1", r) ==
        std::optional<std::string>("must not have a query or a fragment"));
  CHECK(parse_redis_url("redis:///0", r) == std::optional<std::string>("has no host"));
  CHECK(parse_redis_url("not a url", r) == std::optional<std::string>("is not a valid URL"));
}

TEST_CASE("is_ip_literal") {
  CHECK(is_ip_literal("127.0.0.1"));
  CHECK(is_ip_literal("0.0.0.0"));
  CHECK(is_ip_literal("::1"));
  CHECK(is_ip_literal("::"));
  CHECK_FALSE(is_ip_literal("localhost"));
  CHECK_FALSE(is_ip_literal("[::1]"));
  CHECK_FALSE(is_ip_literal("256.0.0.1"));
}
