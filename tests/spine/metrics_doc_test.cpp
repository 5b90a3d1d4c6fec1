// Every metric the daemon emits is documented: listed in the README's metrics paragraph and
// described by a one-line `# HELP` in /metrics. Both were found missing for counters added
// without either (the social ones printed an empty `# HELP`).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "daemon/app.hpp"
#include "tests/spine/file_text.hpp"
#include "tests/support/harness.hpp"

using namespace sb;
using namespace sb::test;

namespace {

// The metric names the daemon's sources use, as string literals ("switchboard_..."), with the
// first file that has each. Tests and benchmarks are left out: they only read them.
std::map<std::string, std::string> names_in_source() {
  namespace fs = std::filesystem;
  const fs::path root = SB_SOURCE_DIR;
  const std::regex literal("\"(switchboard_[a-z0-9_]+)\"");
  std::map<std::string, std::string> out;
  for (const char* dir :
       {"agents", "channels", "config", "core", "daemon", "http", "relay", "routing", "storage"}) {
    for (const auto& e : fs::recursive_directory_iterator(root / dir)) {
      const auto ext = e.path().extension();
      if (!e.is_regular_file() || (ext != ".cpp" && ext != ".hpp")) {
        continue;
      }
      const std::string text = file_text(e.path());
      for (std::sregex_iterator m(text.begin(), text.end(), literal), end; m != end; ++m) {
        out.emplace((*m)[1].str(), fs::relative(e.path(), root).string());
      }
    }
  }
  return out;
}

}  // namespace

TEST_CASE("metrics: every switchboard_* name in the source is in the README") {
  const auto names = names_in_source();
  // Found at all: a wrong SB_SOURCE_DIR would pass everything below.
  REQUIRE(names.count("switchboard_http_requests_total") == 1);
  REQUIRE(names.count("switchboard_replies_total") == 1);
  const std::string readme = file_text(std::filesystem::path(SB_SOURCE_DIR) / "README.md");
  REQUIRE(!readme.empty());
  for (const auto& [name, file] : names) {
    CAPTURE(name);
    CAPTURE(file);
    // As the README writes them: `name` or `name{labels}`, not a prefix of a longer name.
    CHECK((readme.find("`" + name + "`") != std::string::npos ||
           readme.find("`" + name + "{") != std::string::npos));
  }
}

TEST_CASE("metrics: every metric has a one-line HELP, in a daemon's /metrics after some traffic") {
  TempDir dir;
  RedisServer redis;
  App app(test_config(dir, redis.port()));
  app.start();
  HttpClient http(app.port());
  auto r = http.post_json("/v1/interactions",
                          R"({"source":"web-form","external_id":"m-1","kind":"message",
                              "from":{"email":"ann@example.com"},"text":"hello"})",
                          "test-token");
  REQUIRE(r.status == 202);
  http.post_json("/v1/interactions", "{", "test-token");  // a 400: its route and code
  auto metrics = http.request("GET", "/metrics");
  REQUIRE(metrics.status == 200);

  std::map<std::string, std::string> help;  // name -> its help text
  std::istringstream lines(metrics.body);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("# HELP ")) {
      const auto rest = line.substr(7);
      const auto space = rest.find(' ');
      help[rest.substr(0, space)] = space == std::string::npos ? "" : rest.substr(space + 1);
    }
  }
  REQUIRE(help.size() > 20);
  for (const auto& [name, text] : help) {
    CAPTURE(name);
    CHECK(text.find_first_not_of(' ') != std::string::npos);
  }
  // A counter first made by counter() has no HELP of its own and is rendered only once counted:
  // each name the source uses must be described up front (Metrics::Metrics), so that it is
  // here, with its help, before any traffic of its kind. The one exception is registered only
  // where it applies, with its help.
  const std::set<std::string> conditional{
      "switchboard_social_paused",  // a gauge, only with an X account (channels/social)
  };
  for (const auto& [name, file] : names_in_source()) {
    CAPTURE(name);
    CAPTURE(file);
    if (!conditional.count(name)) {
      CHECK(help.count(name) == 1);
    }
  }
  app.stop();
}
