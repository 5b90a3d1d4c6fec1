#pragma once
// A whole daemon in-process with a real redis-server and SQLite, configured with one PBX webhook
// ("pbx"), one Twilio account ("voice", auth token 12345, public_url https://hooks.example.com),
// optionally a Telnyx account ("telnyx"), a "missed calls" rule and an agent carol (general,
// callbacks) to claim calls from either queue; plus a poster of Twilio form requests signed as
// Twilio signs them. Shared by the end-to-end voice tests.
#include <boost/json.hpp>
#include <cctype>
#include <cstdio>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "channels/voice/signatures.hpp"
#include "core/time.hpp"
#include "daemon/app.hpp"
#include "storage/sqlite.hpp"
#include "tests/support/harness.hpp"

namespace sb::voice::test {

struct VoiceDaemon {
  ::sb::test::TempDir dir;
  ::sb::test::RedisServer redis;
  config::Config cfg;  // as started: a reload test changes a copy
  std::unique_ptr<App> app;
  std::unique_ptr<::sb::test::HttpClient> http;
  // `telnyx_public_key` (base64 Ed25519) adds a Telnyx account "telnyx".
  explicit VoiceDaemon(const std::string& telnyx_public_key = "") {
    cfg = ::sb::test::test_config(dir, redis.port());
    cfg.channels.call_webhook.push_back({"pbx", "pbx-secret"});
    cfg.channels.twilio.push_back({"voice", "12345", "https://hooks.example.com"});
    if (!telnyx_public_key.empty()) {
      cfg.channels.telnyx.push_back({"telnyx", telnyx_public_key});
    }
    config::Rule missed;
    missed.name = "missed calls";
    missed.queue = "callbacks";
    missed.priority = "high";
    missed.when.call_status = {"no-answer", "busy", "voicemail"};
    cfg.routing.rules.push_back(missed);
    cfg.agents.push_back({"carol", "carol-token", {"general", "callbacks"}});
    app = std::make_unique<App>(cfg);
    app->start();
    http = std::make_unique<::sb::test::HttpClient>(app->port());
  }
  ::sb::test::HttpResponse pbx(const std::string& body, std::int64_t t = now_ms() / 1000,
                               const std::string& secret = "pbx-secret") {
    return http->request(
        "POST", "/webhooks/calls/pbx", body,
        {{"Content-Type", "application/json"},
         {"X-Switchboard-Signature", voice::pbx_signature_header(secret, t, body)}});
  }
  // carol's claim from `queue`: the claimed interaction (asserted to be there).
  boost::json::object claim(const std::string& queue) {
    auto r = http->post_json("/v1/agent/claim", R"({"queue":")" + queue + R"("})", "carol-token");
    INFO(r.body);
    REQUIRE(r.status == 200);
    return boost::json::parse(r.body).at("interaction").as_object();
  }
  // Runs the release of held calls now, for every held call whatever its age: how many it queued.
  int release_held() {
    std::promise<int> p;
    app->store().release_held_calls(
        0, [&](const storage::HeldRelease& r) { p.set_value(r.released); });
    return p.get_future().get();
  }
  long long rows(const std::string& sql) {
    storage::Db db(dir.file("switchboard.db"), true);
    auto st = db.prepare(sql);
    st.step();
    return st.int64(0);
  }
  std::string text(const std::string& sql) {
    storage::Db db(dir.file("switchboard.db"), true);
    auto st = db.prepare(sql);
    return st.step() ? st.text(0) : "<no row>";
  }
};

// Posts Twilio form parameters signed as Twilio would for this daemon's public_url.
inline ::sb::test::HttpResponse post_twilio(
    VoiceDaemon& d, const std::vector<std::pair<std::string, std::string>>& params,
    const std::string& auth_token = "12345") {
  std::string body;
  for (const auto& [k, v] : params) {
    std::string escaped;  // form encoding: '+' and ':' and '/' are sent escaped
    for (char c : v) {
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') {
        escaped.push_back(c);
      } else {
        char hex[4];
        std::snprintf(hex, sizeof hex, "%%%02X", static_cast<unsigned char>(c));
        escaped += hex;
      }
    }
    body += (body.empty() ? "" : "&") + k + "=" + escaped;
  }
  std::string sig = voice::twilio_signature(
      auth_token, "https://hooks.example.com/webhooks/twilio/voice", params);
  return d.http->request(
      "POST", "/webhooks/twilio/voice", body,
      {{"Content-Type", "application/x-www-form-urlencoded"}, {"X-Twilio-Signature", sig}});
}

// Posts a Telnyx event body signed now by `sign` (Ed25519 over "{timestamp}|{body}", base64).
inline ::sb::test::HttpResponse post_telnyx(
    VoiceDaemon& d, const std::string& body,
    const std::function<std::string(const std::string&)>& sign) {
  std::string ts = std::to_string(now_ms() / 1000);
  return d.http->request("POST", "/webhooks/telnyx/telnyx", body,
                         {{"Content-Type", "application/json"},
                          {"telnyx-timestamp", ts},
                          {"telnyx-signature-ed25519", sign(ts + "|" + body)}});
}

}  // namespace sb::voice::test
