#pragma once
// The email channel end to end: a real Dovecot, a real redis-server and the whole daemon
// in-process (daemon/app.cpp), configured with one [[channels.imap]] account "support".
#include <boost/json.hpp>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/log.hpp"
#include "daemon/app.hpp"
#include "storage/sqlite.hpp"
#include "tests/email/dovecot.hpp"
#include "tests/support/harness.hpp"

namespace sb::test {

inline std::string test_email(int i, int sender, const std::string& extra_headers = "") {
  return "From: Customer " + std::to_string(sender) + " <Customer" + std::to_string(sender) +
         "@Example.COM>\r\nTo: Support <support@example.com>\r\nSubject: Order " +
         std::to_string(i) + " is late \xc3\xbc\r\nMessage-ID: <msg-" + std::to_string(i) +
         "@example.com>\r\nDate: Fri, 02 Jan 2026 03:04:05 +0000\r\n" + extra_headers +
         "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, where is "
         "order " +
         std::to_string(i) + "?\r\n";
}

// The first column of the first row of `sql` on the database at `path` (read-only).
inline long long count_rows(const std::string& path, const std::string& sql) {
  storage::Db db(path, true);
  auto st = db.prepare(sql);
  st.step();
  return st.int64(0);
}

struct EmailDaemon {
  TempDir dir;
  RedisServer redis;
  Dovecot dovecot;
  config::Config cfg;
  std::unique_ptr<App> app;

  // tls: "none" (plain), "implicit" (993-style) or "starttls".
  explicit EmailDaemon(const std::string& tls = "none", const std::string& after = "keep",
                       const std::string& dovecot_conf = "")
      : dovecot(dovecot_conf) {
    if (const char* lvl = std::getenv("SB_TEST_LOG")) {  // e.g. SB_TEST_LOG=debug
      set_log_level(lvl);
    }
    cfg = test_config(dir, redis.port());
    config::Imap imap;
    imap.name = "support";
    imap.tls = tls;
    imap.host = tls == "none" ? "127.0.0.1" : "localhost";
    imap.port = tls == "implicit" ? dovecot.imaps_port() : dovecot.imap_port();
    imap.ca_file = dovecot.ca_file();
    imap.username = Dovecot::user;
    imap.password = Dovecot::password;
    imap.after = after;
    imap.unfetchable_after = std::chrono::milliseconds(0);  // tests of the placeholder: at once
    cfg.channels.imap.push_back(imap);
  }
  ~EmailDaemon() { stop(); }
  void start() {
    app = std::make_unique<App>(cfg);
    app->start();
  }
  void stop() {
    if (app) {
      app->stop();
      app.reset();
    }
  }
  long long rows(const std::string& sql) { return count_rows(dir.file("switchboard.db"), sql); }
  long long queued() { return redis.xlen("sb:q:general:normal"); }
  std::vector<boost::json::object> payloads() {
    std::vector<boost::json::object> out;
    for (auto& e : redis.xrange("sb:q:general:normal")) {
      out.push_back(boost::json::parse(e["payload"]).as_object());
    }
    return out;
  }
  // Every queued external_id exactly once, and how many there are.
  std::size_t distinct_queued() {
    std::set<std::string> ids;
    for (const auto& p : payloads()) {
      ids.insert(std::string(p.at("external_id").as_string()));
    }
    return ids.size();
  }
  std::string metrics() {
    HttpClient http(app->port());
    return http.request("GET", "/metrics").body;
  }
};

}  // namespace sb::test
