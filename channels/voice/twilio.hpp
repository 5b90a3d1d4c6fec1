#pragma once
// Twilio Voice webhooks: incoming-call requests and StatusCallback / RecordingStatusCallback
// requests, form encoded (https://www.twilio.com/docs/voice/twiml#request-parameters and
// https://www.twilio.com/docs/voice/api/call-resource#statuscallback).
//
// Mapping onto the call event:
//  - external_id: CallSid (the same on every request about one call leg).
//  - status: CallStatus as is (queued, initiated, ringing, in-progress, completed, busy,
//    no-answer, failed, canceled); a request without CallStatus (RecordingStatusCallback)
//    carries no status change; an unknown CallStatus word is treated the same way rather than
//    refused, so a new Twilio status never loses the rest of the event.
//    Voicemail: a `completed` call with AnsweredBy = machine_start / machine_end_* (Answering
//    Machine Detection on an outbound call) was answered by a machine, i.e. went to the
//    customer's voicemail: `voicemail`.
//  - direction: inbound and trunking-originating -> inbound; outbound-api, outbound-dial and
//    trunking-terminating -> outbound.
//  - order_key: SequenceNumber when present (Twilio numbers the status callbacks of a call
//    from 0), else Timestamp (RFC 2822) in ms, else 0 (the incoming-call request has neither).
//  - duration_s: CallDuration; recording_url: RecordingUrl.
#include <cstdint>
#include <optional>
#include <string_view>

#include "channels/voice/form.hpp"
#include "channels/voice/webhook.hpp"

namespace sb::voice {

inline constexpr std::string_view kTwimlEmptyResponse =
    R"(<?xml version="1.0" encoding="UTF-8"?><Response/>)";

// "Tue, 11 Feb 2025 21:26:28 +0000" -> Unix ms. Day name and seconds optional; zones
// +hhmm/-hhmm, UT, GMT, Z and the US names of RFC 2822 section 4.3.
std::optional<std::int64_t> parse_rfc2822(std::string_view s);

// The call event of verified Twilio parameters (exposed for tests and the benchmark).
WebhookResult twilio_event(const config::Twilio& cfg, const FormParams& params,
                           std::string_view default_region, const PhoneCanonicalizer& canon);

}  // namespace sb::voice
