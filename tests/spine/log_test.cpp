// core/log: every line is escaped on its way to any sink, so a value from outside cannot forge
// a line of its own or reach the terminal as a control sequence.
#include <doctest/doctest.h>

#include "core/log.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using sb::test::LogCapture;

TEST_CASE("log: a newline in a logged value is escaped, the line cannot forge another") {
  LogCapture log("logtest");
  // What a caller could send as its number, a subject or a provider's error body.
  std::string value = "+4930\n2026-12-01T00:00:00.000Z info     voice    [twilio:main] all good";
  logger("logtest")->warn("[twilio:main] rejected webhook for call {}", value);
  auto text = log.text();
  CHECK(text ==
        "warning [twilio:main] rejected webhook for call +4930\\n2026-12-01T00:00:00.000Z info     "
        "voice    [twilio:main] all good\n");
}

TEST_CASE("log: controls and bytes that are not UTF-8 become \\xNN, text and backslashes stay") {
  CHECK(log_escape("plain \\Seen caf\xC3\xA9 \xE2\x82\xAC") ==
        "plain \\Seen caf\xC3\xA9 \xE2\x82\xAC");
  CHECK(log_escape("a\r\nb\tc") == "a\\r\\nb\\tc");
  CHECK(log_escape("\x1b]0;owned\x07") == "\\x1b]0;owned\\x07");
  CHECK(log_escape("del\x7f") == "del\\x7f");
  CHECK(log_escape("csi\xC2\x9B"
                   "2J") == "csi\\xc2\\x9b2J");  // C1 CSI
  CHECK(log_escape("bad\xFF\xC3") == "bad\\xff\\xc3");
  CHECK(log_escape(std::string("nul\0x", 5)) == "nul\\x00x");
}
