#pragma once
// The socket-free entry points of the three telephony webhook routes of SPEC section 3:
//   POST /webhooks/twilio/{name}  -> handle_twilio
//   POST /webhooks/telnyx/{name}  -> handle_telnyx
//   POST /webhooks/calls/{name}   -> handle_pbx
// The HTTP layer fills a WebhookRequest, calls the handler, submits `event` (if any) through
// Pipeline::submit_call_event and answers with the result only after the commit.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "storage/pipeline.hpp"

namespace sb::voice {

// Raw caller number -> canonical E.164, or nullopt when it is not a usable phone number. The
// daemon plugs in sb::canonicalize("phone", raw, region) (routing/identity.hpp); tests a fake.
using PhoneCanonicalizer =
    std::function<std::optional<std::string>(std::string_view raw, std::string_view region)>;

struct WebhookRequest {
  std::string_view method;        // "POST"
  std::string_view target;        // path + query as received, e.g. "/webhooks/twilio/voice?x=1"
  std::string_view content_type;  // the Content-Type header, parameters included
  std::string_view body;          // raw bytes, exactly as received (signatures cover them)
  std::function<std::string_view(std::string_view)> header;  // case-insensitive, "" if absent
  std::int64_t now_unix_s = 0;
};

struct WebhookResult {
  // 200 ok (also for events that are verified but carry nothing to store);
  // 401 signature missing; 403 signature wrong or stale; 400 bad payload;
  // 405 not POST; 415 wrong content type; 500 misconfigured channel (e.g. bad Telnyx key).
  int status = 200;
  std::string error_code;     // snake_case, for {"error":{"code":..,"message":..}} when >= 400
  std::string error_message;  // human sentence naming the field or the check that failed
  // The call a refused request names, if it could be read before the refusal (Twilio's
  // CallSid): for the log line only, as it is not verified.
  std::string call_id;
  std::optional<sb::CallEventInput> event;  // set when a call event must be stored
  std::string response_content_type;        // what to answer on success
  std::string response_body;
};

WebhookResult handle_twilio(const config::Twilio& cfg, const WebhookRequest& req,
                            std::string_view default_region, const PhoneCanonicalizer& canon);
WebhookResult handle_telnyx(const config::Telnyx& cfg, const WebhookRequest& req,
                            std::string_view default_region, const PhoneCanonicalizer& canon);
WebhookResult handle_pbx(const config::CallWebhook& cfg, const WebhookRequest& req,
                         std::string_view default_region, const PhoneCanonicalizer& canon);

// Helpers shared by the three handlers.
WebhookResult webhook_error(int status, std::string code, std::string message);
// "application/json; charset=utf-8" -> "application/json" (lower-cased, parameters dropped).
std::string media_type(std::string_view content_type);

}  // namespace sb::voice
