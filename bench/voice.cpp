// bench/voice: signed Twilio status callbacks posted by 128 keep-alive clients to a real daemon
// process. (Twilio posts a busy account's callbacks from many connections at once; the issue
// names no client count. With 64, each client waits for its commit and the daemon idles between
// turns: 19.4-25.1k/s at p99 6-8 ms over seven runs, against 20.3-28.1k/s at p99 11-14 ms over
// eleven with 128.) Each call sends ringing, in-progress and completed (a third of the requests
// each), every one signed with X-Twilio-Signature and checked by the daemon before it parses
// anything; the completed event queues the call. Each body is a real status callback's: 33
// parameters, about 1 KB. Prints callback throughput, latency and
// end-to-end time until every call is in its Redis stream.
//
//   build/bench/bench_voice [--calls N] [--clients N]
#include <cctype>
#include <cstring>

#include "bench/bench_util.hpp"
#include "bench/load.hpp"
#include "channels/voice/signatures.hpp"

using namespace sb;

namespace {

// application/x-www-form-urlencoded, as Twilio sends it: unreserved bytes as they are, the rest
// %XX (a space too; '+' in a number must not read as a space).
std::string form_escape(const std::string& v) {
  std::string out;
  for (unsigned char c : v) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      static const char* hex = "0123456789ABCDEF";
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 60000, clients = 128;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--calls")) {
      calls = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--clients")) {
      clients = std::atoi(argv[i + 1]);
    }
  }
  const std::string token = "bench-auth-token";
  const std::string url = "https://hooks.example.com/webhooks/twilio/voice";
  test::TempDir dir;
  test::RedisServer redis;
  bench::Daemon daemon(dir, redis,
                       "[matching]\ndefault_region = \"US\"\n"
                       "[[channels.twilio]]\nname = \"voice\"\nauth_token = \"" +
                           token + "\"\npublic_url = \"https://hooks.example.com\"\n");

  // Requests are built (and signed) before the clock starts: the client's HMAC is not the
  // daemon's cost.
  static const char* statuses[] = {"ringing", "in-progress", "completed"};
  int total = calls * 3;
  std::vector<std::pair<std::string, std::string>> bodies(static_cast<std::size_t>(total));
  for (int i = 0; i < total; ++i) {
    int call = i / 3, step = i % 3;
    // The body of a real status callback: Twilio's request parameters
    // (https://www.twilio.com/docs/voice/twiml#request-parameters: the parties, their
    // geographic data and the legacy Caller/Called synonyms) and the StatusCallback additions
    // (https://www.twilio.com/docs/voice/api/call-resource#statuscallback), 33 parameters in
    // all: the signature covers every one, sorted, and the daemon decodes them all before it
    // can check it.
    std::string from = "+1415555" + std::to_string(1000 + call % 9000);
    std::string duration = step == 2 ? "42" : "0";
    std::string timestamp = "Fri, 02 Jan 2026 03:04:" + std::to_string(10 + step * 20) + " +0000";
    FormParams params = {{"AccountSid", "AC" + std::string(32, '0')},
                         {"ApiVersion", "2010-04-01"},
                         {"CallSid", "CA" + std::to_string(call)},
                         {"CallStatus", statuses[step]},
                         {"CallToken", R"({"parentCallInfoToken":"eyJhbGciOiJFUzI1NiJ9"})"},
                         {"CallbackSource", "call-progress-events"},
                         {"Called", "+14155550199"},
                         {"CalledCity", "SAN FRANCISCO"},
                         {"CalledCountry", "US"},
                         {"CalledState", "CA"},
                         {"CalledZip", "94105"},
                         {"Caller", from},
                         {"CallerCity", "OAKLAND"},
                         {"CallerCountry", "US"},
                         {"CallerName", "WIRELESS CALLER"},
                         {"CallerState", "CA"},
                         {"CallerZip", "94612"},
                         {"CallDuration", duration},
                         {"Direction", "inbound"},
                         {"From", from},
                         {"FromCity", "OAKLAND"},
                         {"FromCountry", "US"},
                         {"FromState", "CA"},
                         {"FromZip", "94612"},
                         {"SequenceNumber", std::to_string(step)},
                         {"SipResponseCode", step == 2 ? "200" : "180"},
                         {"Timestamp", timestamp},
                         {"To", "+14155550199"},
                         {"ToCity", "SAN FRANCISCO"},
                         {"ToCountry", "US"},
                         {"ToState", "CA"},
                         {"ToZip", "94105"},
                         {"StirVerstat", "TN-Validation-Passed-A"}};
    std::string body;
    for (auto& [k, v] : params) {
      body += (body.empty() ? "" : "&") + k + "=" + form_escape(v);
    }
    bodies[static_cast<std::size_t>(i)] = {body, voice::twilio_signature(token, url, params)};
  }

  auto wire = bench::prepare_requests(total, [&](int i) {
    auto& [body, sig] = bodies[static_cast<std::size_t>(i)];
    bench::Request req{bench::bhttp::verb::post, "/webhooks/twilio/voice", 11};
    req.set(bench::bhttp::field::content_type, "application/x-www-form-urlencoded");
    req.set("X-Twilio-Signature", sig);
    req.body() = body;
    return req;
  });
  bench::CpuUse cpu(daemon.pid(), redis);
  auto t0 = std::chrono::steady_clock::now();
  auto load = bench::run_load(daemon.port, wire, clients, 200);
  test::eventually([&] { return redis.xlen("sb:q:general:normal") >= calls; },
                   std::chrono::seconds(120));
  double e2e_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long long queued = redis.xlen("sb:q:general:normal");
  auto [rss, hwm] = bench::rss_mib(daemon.pid());
  auto used = cpu.per(total);
  auto threads = cpu.threads(total);
  daemon.stop();

  auto& lat = load.latency_ms;
  bench::Table t;
  t.add("clients (keep-alive)", std::to_string(clients));
  t.add("calls x events", std::to_string(calls) + " x 3 = " + std::to_string(total) + " callbacks");
  t.add("errors (non-200)", std::to_string(load.errors));
  t.add("calls queued in Redis", std::to_string(queued) + " (each once, when it ended)");
  t.add("callback throughput",
        bench::fmt("%.0f /s (signed, verified, committed)", total / load.seconds));
  t.add("end-to-end", bench::fmt("%.1f s until every call was in Redis", e2e_s));
  t.add("daemon CPU per callback",
        bench::fmt("%.1f us (all threads; the machine's limit is 2 cores)", used.daemon_us));
  t.add("daemon CPU per callback by thread", threads);
  t.add("redis-server CPU per callback", bench::fmt("%.1f us", used.redis_us));
  t.add("load generator CPU per request", bench::fmt("%.1f us (same machine)", used.self_us));
  t.add("latency p50", bench::fmt("%.2f ms", bench::percentile(lat, 0.50)));
  t.add("latency p99", bench::fmt("%.2f ms", bench::percentile(lat, 0.99)));
  t.add("daemon RSS (end / peak)",
        bench::fmt("%.0f MiB", rss) + " / " + bench::fmt("%.0f MiB", hwm));
  t.print("bench_voice: Twilio status callbacks -> SQLite -> Redis");
  return queued == calls && load.errors == 0 ? 0 : 1;
}
