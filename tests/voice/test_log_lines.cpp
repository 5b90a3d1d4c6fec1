// What the voice routes log about a refused request: the account, the call, the consequence;
// never the signature; the caller's bytes escaped; and not a line per request.
#include <doctest/doctest.h>

#include "tests/support/log_capture.hpp"
#include "tests/voice/voice_daemon.hpp"

using namespace sb;
using namespace sb::voice::test;

TEST_CASE(
    "voice: a forged Twilio signature is logged with the account, the call and the consequence, "
    "escaped, without the signature, once however often it comes") {
  sb::test::LogCapture log("voice");  // before the daemon, which logs from its own threads
  VoiceDaemon d;
  // The CallSid of an unsigned request is anyone's text: a newline in it must not start a line
  // that looks like the daemon's own.
  const std::string body =
      "CallSid=CA42%0A2026-12-01T00%3A00%3A00.000Z+info+voice+%5Btwilio%3Avoice%5D+all+good"
      "&CallStatus=ringing";
  for (int i = 0; i < 5; ++i) {
    auto res = d.http->request("POST", "/webhooks/twilio/voice", body,
                               {{"Content-Type", "application/x-www-form-urlencoded"},
                                {"X-Twilio-Signature", "bm90IGEgc2lnbmF0dXJl"}});
    CHECK(res.status == 403);
  }
  d.app.reset();
  auto lines = log.lines_with("rejected webhook");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] ==
        "warning [twilio:voice] rejected webhook for call "
        "CA42\\n2026-12-01T00:00:00.000Z info voice [twilio:voice] all good: X-Twilio-Signature "
        "does not match this request and the configured auth token (bad_signature); answered "
        "403, nothing stored");
  CHECK(log.text().find("bm90IGEgc2lnbmF0dXJl") == std::string::npos);
  CHECK(log.lines_with("all good").size() == 1);  // no forged line of its own
}
