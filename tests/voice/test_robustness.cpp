// Fuzz-style regression: seed payloads with deterministic random byte mutations, correctly
// signed so that they reach the parsers. Every answer must be 200 or 400, never a crash, a
// 5xx or an event without a call id.
#include <doctest/doctest.h>

#include <random>

#include "channels/voice/pbx.hpp"
#include "channels/voice/signatures.hpp"
#include "channels/voice/telnyx.hpp"
#include "channels/voice/twilio.hpp"
#include "helpers.hpp"

using namespace sb;
using namespace sb::voice;
using sb::voice::test::kCanon;
using sb::voice::test::Request;

namespace {

std::string mutate(std::string s, std::mt19937& rng) {
  std::uniform_int_distribution<int> op(0, 3), byte(0, 255);
  int edits = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < edits; ++i) {
    std::size_t pos = s.empty() ? 0 : rng() % s.size();
    switch (op(rng)) {
      case 0:
        if (!s.empty()) {
          s[pos] = static_cast<char>(byte(rng));
        }
        break;
      case 1:
        s.insert(pos, 1, static_cast<char>(byte(rng)));
        break;
      case 2:
        if (!s.empty()) {
          s.erase(pos, 1 + rng() % 8);
        }
        break;
      default:
        s = s.substr(0, pos);
    }
  }
  return s;
}

void check(const WebhookResult& r) {
  CHECK((r.status == 200 || r.status == 400));
  if (r.event) {
    CHECK_FALSE(r.event->call.external_id.empty());
    CHECK(r.event->call.call.has_value());
  }
}

}  // namespace

TEST_CASE("robustness: mutated PBX bodies") {
  sb::config::CallWebhook cfg{"pbx", "s"};
  std::mt19937 rng(1);
  const std::string seed =
      R"({"event":"completed","call_id":"c1","from":"+14155550100","to":"+14155550199",)"
      R"("direction":"inbound","occurred_at":"2026-01-02T03:04:05.250+02:00","duration_s":42,)"
      R"("recording_url":"https://pbx.example/r.wav"})";
  for (int i = 0; i < 3000; ++i) {
    Request r;
    r.content_type = "application/json";
    r.body = mutate(seed, rng);
    r.with("X-Switchboard-Signature", pbx_signature_header("s", r.now, r.body));
    check(handle_pbx(cfg, r.view(), "US", kCanon));
  }
}

TEST_CASE("robustness: mutated Twilio form bodies") {
  sb::config::Twilio cfg{"voice", "t", "https://h.example"};
  std::mt19937 rng(2);
  const std::string seed =
      "CallSid=CA1&CallStatus=completed&Direction=outbound-api&From=%2B14155550100&To=%2B1415555"
      "0199&CallDuration=42&SequenceNumber=3&Timestamp=Tue%2C+11+Feb+2025+21%3A26%3A28+%2B0000"
      "&AnsweredBy=machine_end_beep&RecordingUrl=https%3A%2F%2Fr.example%2F1";
  for (int i = 0; i < 3000; ++i) {
    Request r;
    r.target = "/webhooks/twilio/voice";
    r.content_type = "application/x-www-form-urlencoded";
    r.body = mutate(seed, rng);
    r.with("X-Twilio-Signature",
           twilio_signature("t", "https://h.example" + r.target, parse_form(r.body)));
    check(handle_twilio(cfg, r.view(), "US", kCanon));
  }
}

TEST_CASE("robustness: mutated Telnyx bodies") {
  static const sb::voice::test::KeyPair key;
  sb::config::Telnyx cfg{"voice-eu", key.public_b64};
  std::mt19937 rng(4);
  const std::string seed =
      R"({"data":{"event_type":"call.hangup","occurred_at":"2018-02-02T22:25:27.521992Z",)"
      R"("payload":{"call_leg_id":"leg-1","call_control_id":"v3:x","from":"+35319605860",)"
      R"("to":"+35319605861","start_time":"2018-02-02T22:20:27Z","hangup_cause":"normal_clearing",)"
      R"("recording_urls":{"mp3":"https://r.example/1.mp3"}}}})";
  for (int i = 0; i < 2000; ++i) {
    Request r;
    r.content_type = "application/json";
    r.body = mutate(seed, rng);
    std::string ts = std::to_string(r.now);
    r.with("telnyx-timestamp", ts);
    r.with("telnyx-signature-ed25519", key.sign(ts + "|" + r.body));
    check(handle_telnyx(cfg, r.view(), "IE", kCanon));
  }
}

TEST_CASE("robustness: RFC 2822 parser on mutated dates") {
  std::mt19937 rng(3);
  for (int i = 0; i < 5000; ++i) {
    auto s = mutate("Tue, 11 Feb 2025 21:26:28 +0000", rng);
    (void)parse_rfc2822(s);  // must not crash or read out of bounds
  }
}
