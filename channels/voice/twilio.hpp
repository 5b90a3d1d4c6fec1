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
//  - machine_detection: AnsweredBy as sent, from any request that has it: the answer-time
//    request and status callbacks (synchronous AMD) or the AsyncAmdStatusCallback, which has no
//    CallStatus (asynchronous AMD); machine_detection_at_ms: its Timestamp, 0 without one. The
//    fold (call_state.hpp) makes a completed call with a machine_* result `voicemail`, in either
//    order.
//  - direction: inbound and trunking-originating -> inbound; outbound-api, outbound-dial and
//    trunking-terminating -> outbound.
//  - order_key: SequenceNumber when present (Twilio numbers the status callbacks of a call
//    from 0), else Timestamp (RFC 2822) in ms, else 0 (the incoming-call request has neither).
//  - duration_s: CallDuration; recording_url: RecordingUrl.
//
// <Dial> child legs (one call, one interaction). When TwiML answers a call with <Dial><Number>
// (or <Sip>, <Client>), Twilio places a new call to that party: a child leg with a CallSid of
// its own, ParentCallSid = the CallSid of the call that created it (Twilio's request parameters:
// "a unique identifier for the call that created this leg", not passed on a call's first leg)
// and Direction=outbound-dial. Its status callbacks come only when the noun has a
// statusCallback (<Number statusCallbackEvent> defaults to `completed`; initiated, ringing,
// answered may be asked for) and carry the leg's own CallStatus, CallDuration, Timestamp and
// SequenceNumber (numbering the leg's callbacks, unrelated to the parent's). The leg's To/Called
// is the party dialled (our agent's phone or SIP address); its From is the caller ID <Dial>
// presented: the original caller's number by default, our own number with <Dial callerId>. Up
// to ten <Number>s ring at once; the first to answer is connected, the others end canceled or
// no-answer. So a leg's event is folded into the parent's interaction (external_id =
// ParentCallSid, CallEventInput::child_leg):
//  - the leg is listed in call.legs (id, to, status, duration_s); a leg that reached in-progress
//    or completed gives call.answered_by (its To) and call.answered_at (its in-progress
//    Timestamp, else its completed Timestamp minus its CallDuration);
//  - a leg's non-final status (ringing, in-progress) may move the call forward, never back; its
//    final status (completed, no-answer, busy, canceled, failed) is the leg's alone: only the
//    parent's own final event ends the call and queues it;
//  - a leg never names or replaces the call's customer, direction or lines (its From may be
//    our number, its To is our agent); but click-to-call turns it round: the REST API calls our
//    agent first (outbound-api, To = client:alice, a SIP address or the agent's phone) and its
//    TwiML <Dial>s the customer, so an outbound call whose own callee is not a customer takes
//    the customer from its first leg to a phone number (the store decides: it knows our lines,
//    and a leg's callee of an inbound call, an agent's phone, is one of them);
//  - the caller's own call ends `completed` whether or not a leg answered (TwiML answered it):
//    an inbound call with legs listed, none answered, is `no-answer` (call_state.hpp), so that a
//    "missed calls" rule sees it. A leg's answer may come after the call's own completed, so
//    such a call is held back a short while before it is queued (CallEventInput::legs_follow).
//    A call whose legs all report after it was queued is routed as `completed` (nothing was
//    known to have been dialled), and its stored status becomes `no-answer` then.
// A leg's event that arrives before any of its parent's creates the parent's interaction (keyed
// by ParentCallSid), pending and without a customer, which the parent's own events complete. A
// ParentCallSid with another Direction is not a <Dial> leg and stays a call of its own.
#include <cstdint>
#include <optional>
#include <string_view>

#include "channels/voice/webhook.hpp"
#include "core/form.hpp"

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
