#pragma once
// Shared pieces of the social end-to-end tests: a daemon in-process on a real redis-server, the
// queue as a user sees it, and a synchronous call into a Sender.
#include <boost/json.hpp>
#include <future>
#include <memory>

#include "core/sender.hpp"
#include "daemon/app.hpp"
#include "storage/sqlite.hpp"
#include "tests/support/harness.hpp"

namespace sb::test {

struct SocialDaemon {
  TempDir dir;
  RedisServer redis;
  config::Config cfg;
  AppOptions options;
  std::unique_ptr<App> app;
  std::unique_ptr<HttpClient> http;

  SocialDaemon() : cfg(test_config(dir, redis.port())) {}
  void start() {
    app = std::make_unique<App>(cfg, options);
    app->start();
    http = std::make_unique<HttpClient>(app->port());
  }
  void stop() {
    http.reset();
    app.reset();  // stop(): the pollers end, the outbox is flushed
  }
  long long rows(const std::string& sql) {
    storage::Db db(dir.file("switchboard.db"), true);
    auto st = db.prepare(sql);
    st.step();
    return st.int64(0);
  }
  // A poller's committed cursor (cursors.value), "" when it has none.
  std::string cursor(const std::string& account, const std::string& scope) {
    storage::Db db(dir.file("switchboard.db"), true);
    auto st = db.prepare("SELECT value FROM cursors WHERE account='" + account + "' AND scope='" +
                         scope + "'");
    return st.step() ? st.text(0) : std::string();
  }
  // The payloads in the default queue, in stream order.
  std::vector<boost::json::object> queued(const std::string& stream = "sb:q:general:normal") {
    std::vector<boost::json::object> out;
    for (auto& e : redis.xrange(stream)) {
      out.push_back(boost::json::parse(e["payload"]).as_object());
    }
    return out;
  }
  std::string metrics() { return http->request("GET", "/metrics").body; }

  SendResult send(const std::string& channel, const std::string& account, OutboundMessage m) {
    Sender* s = app->senders().find(channel, account);
    REQUIRE(s != nullptr);
    auto p = std::make_shared<std::promise<SendResult>>();
    auto f = p->get_future();
    s->send(std::move(m), [p](SendResult r) { p->set_value(std::move(r)); });
    REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    return f.get();
  }
};

// Another connection's write transaction on the daemon's database, as the sqlite3 CLI or a
// backup tool may hold one: the daemon's commits wait for it, and fail with SQLITE_BUSY once
// the busy timeout (5 s) has passed. Rolled back when it goes.
struct WriteLock {
  storage::Db db;
  explicit WriteLock(const std::string& path) : db(path) { db.exec("BEGIN IMMEDIATE"); }
  ~WriteLock() {
    try {
      db.exec("ROLLBACK");
    } catch (...) {
      // Closing the connection rolls back too.
    }
  }
};

inline OutboundMessage reply_to(const boost::json::object& parent, std::string id,
                                std::string text) {
  OutboundMessage m;
  m.id = std::move(id);
  m.channel = std::string(parent.at("channel").as_string());
  m.account = std::string(parent.at("account").as_string());
  m.conversation_id = std::string(parent.at("conversation_id").as_string());
  m.text = std::move(text);
  m.parent_json = boost::json::serialize(parent);
  return m;
}

inline std::string str(const boost::json::value& v) {
  return std::string(v.as_string());
}

}  // namespace sb::test
