#include "channels/voice/telnyx.hpp"

#include <boost/json.hpp>

#include "channels/voice/caller.hpp"
#include "channels/voice/json_fields.hpp"
#include "channels/voice/signatures.hpp"
#include "core/json_problem.hpp"
#include "core/time.hpp"

namespace sb::voice {

namespace {

using json::Field;

WebhookResult bad_field(std::string message) {
  return webhook_error(400, "invalid_payload", std::move(message));
}

// An optional RFC 3339 field: absent is fine, present and unparseable is a 400.
bool read_time(const boost::json::object& o, std::string_view key,
               std::optional<std::int64_t>& out) {
  std::string_view text;
  Field f = json::get_string(o, key, text);
  if (f == Field::absent) {
    return true;
  }
  out = f == Field::ok ? parse_rfc3339(text) : std::nullopt;
  return out.has_value();
}

std::string recording_url(const boost::json::object& payload) {
  for (std::string_view group : {"public_recording_urls", "recording_urls"}) {
    if (const auto* urls = json::get_object(payload, group)) {
      for (std::string_view format : {"mp3", "wav"}) {
        std::string_view url = json::string_or_empty(*urls, format);
        if (!url.empty()) {
          return std::string(url);
        }
      }
    }
  }
  return {};
}

}  // namespace

std::string telnyx_hangup_status(std::string_view cause) {
  if (cause == "normal_clearing" || cause == "time_limit") {
    return "completed";
  }
  if (cause == "user_busy" || cause == "call_rejected") {
    return "busy";
  }
  if (cause == "timeout" || cause == "no_answer") {
    return "no-answer";
  }
  if (cause == "originator_cancel") {
    return "canceled";
  }
  if (cause == "not_found") {
    return "failed";
  }
  return "unknown";
}

WebhookResult handle_telnyx(const config::Telnyx& cfg, const WebhookRequest& req,
                            std::string_view default_region, const PhoneCanonicalizer& canon) {
  if (req.method != "POST") {
    return webhook_error(405, "method_not_allowed", "Telnyx webhooks must be POST requests");
  }
  if (media_type(req.content_type) != "application/json") {
    return webhook_error(415, "unsupported_media_type", "Telnyx webhooks must be application/json");
  }
  auto header = [&](std::string_view name) {
    return req.header ? req.header(name) : std::string_view{};
  };
  SignatureCheck check = verify_telnyx(cfg.public_key, header("telnyx-signature-ed25519"),
                                       header("telnyx-timestamp"), req.body, req.now_unix_s);
  if (!check.ok()) {
    return webhook_error(check.status, check.code, check.message);
  }

  std::string error;
  auto doc = parse_json_object(req.body, error);
  if (!doc) {
    return webhook_error(400, "invalid_json", error);
  }
  const boost::json::object* data = json::get_object(*doc, "data");
  if (!data) {
    return bad_field("data is missing or not an object");
  }
  std::string_view event_type;
  if (json::get_string(*data, "event_type", event_type) != Field::ok) {
    return bad_field("data.event_type is missing or not a string");
  }
  WebhookResult r;
  r.response_content_type = "application/json";
  r.response_body = R"({"status":"ok"})";
  bool hangup = event_type == "call.hangup";
  // Answering machine detection (an outbound call dialled with answering_machine_detection).
  // The greeting.ended events that may follow add nothing: a machine was detected before.
  bool machine = event_type == "call.machine.detection.ended" ||
                 event_type == "call.machine.premium.detection.ended";
  if (event_type != "call.initiated" && event_type != "call.answered" && !hangup &&
      event_type != "call.recording.saved" && !machine) {
    return r;  // verified, nothing a call record needs (playback, dtmf, bridged, ...)
  }
  const boost::json::object* payload = json::get_object(*data, "payload");
  if (!payload) {
    return bad_field("data.payload is missing or not an object");
  }
  std::string_view call_id = json::string_or_empty(*payload, "call_leg_id");
  if (call_id.empty()) {
    call_id = json::string_or_empty(*payload, "call_control_id");
  }
  if (call_id.empty()) {
    return bad_field("data.payload.call_leg_id (or call_control_id) is missing");
  }
  std::optional<std::int64_t> occurred_at, start_time, end_time;
  if (!read_time(*data, "occurred_at", occurred_at)) {
    return bad_field("data.occurred_at is not an RFC 3339 date-time");
  }
  if (!read_time(*payload, "start_time", start_time)) {
    return bad_field("data.payload.start_time is not an RFC 3339 date-time");
  }
  if (!read_time(*payload, "end_time", end_time)) {
    return bad_field("data.payload.end_time is not an RFC 3339 date-time");
  }

  CallEventInput ev;
  Inbound& in = ev.call;
  in.channel = "voice";
  in.kind = "call";
  in.account = cfg.name;
  in.external_id = std::string(call_id);
  in.occurred_at_ms = occurred_at.value_or(0);
  ev.order_key = in.occurred_at_ms;

  CallInfo call;
  std::string_view direction = json::string_or_empty(*payload, "direction");
  call.direction = direction == "incoming" ? "inbound" : direction == "outgoing" ? "outbound" : "";
  if (event_type == "call.initiated") {
    call.status = "initiated";
  } else if (event_type == "call.answered") {
    call.status = "in-progress";
  } else if (hangup) {
    call.status = telnyx_hangup_status(json::string_or_empty(*payload, "hangup_cause"));
    if (call.status == "completed") {
      std::optional<std::int64_t> end = end_time ? end_time : occurred_at;
      if (start_time && end && *end >= *start_time) {
        call.duration_s = (*end - *start_time + 500) / 1000;
      }
    } else if (call.status != "unknown") {
      call.duration_s = 0;
    }
  } else if (machine) {
    call.machine_detection = std::string(json::string_or_empty(*payload, "result"));
    call.machine_detection_at_ms = in.occurred_at_ms;
  } else {
    call.recording_url = recording_url(*payload);
    // recording_urls are presigned S3 links valid 10 minutes (X-Amz-Expires=600): the id lets a
    // client ask Telnyx for fresh ones later (GET /v2/recordings/{recording_id}).
    call.recording_id = std::string(json::string_or_empty(*payload, "recording_id"));
  }
  if (!call.direction.empty()) {
    in.direction = call.direction;
  }
  ev.direction_follows = call.direction.empty();  // call.initiated states it, in any order
  set_parties(in, json::string_or_empty(*payload, "from"), json::string_or_empty(*payload, "to"),
              call.direction, default_region, canon);
  in.call = std::move(call);
  r.event = std::move(ev);
  return r;
}

}  // namespace sb::voice
