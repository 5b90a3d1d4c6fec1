#include "channels/voice/pbx.hpp"

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

}  // namespace

std::optional<std::string> pbx_status(std::string_view event) {
  if (event == "ringing") {
    return "ringing";
  }
  if (event == "answered") {
    return "in-progress";
  }
  if (event == "completed") {
    return "completed";
  }
  if (event == "missed") {
    return "no-answer";
  }
  if (event == "voicemail") {
    return "voicemail";
  }
  return std::nullopt;
}

WebhookResult handle_pbx(const config::CallWebhook& cfg, const WebhookRequest& req,
                         std::string_view default_region, const PhoneCanonicalizer& canon) {
  if (req.method != "POST") {
    return webhook_error(405, "method_not_allowed", "call webhooks must be POST requests");
  }
  if (media_type(req.content_type) != "application/json") {
    return webhook_error(415, "unsupported_media_type", "call webhooks must be application/json");
  }
  std::string_view header = req.header ? req.header("X-Switchboard-Signature") : std::string_view{};
  SignatureCheck check = verify_pbx(cfg.secret, header, req.body, req.now_unix_s);
  if (!check.ok()) {
    return webhook_error(check.status, check.code, check.message);
  }

  std::string error;
  auto doc = parse_json_object(req.body, error);
  if (!doc) {
    return webhook_error(400, "invalid_json", error);
  }
  const boost::json::object& o = *doc;

  std::string_view event, call_id, from, to, direction, occurred_text, recording;
  if (json::get_string(o, "event", event) != Field::ok) {
    return bad_field("event is missing or not a string");
  }
  auto status = pbx_status(event);
  if (!status) {
    return bad_field("event must be one of ringing, answered, completed, missed, voicemail");
  }
  if (json::get_string(o, "call_id", call_id) != Field::ok || call_id.empty()) {
    return bad_field("call_id is missing or not a non-empty string");
  }
  if (json::get_string(o, "from", from) == Field::wrong_type) {
    return bad_field("from is not a string");
  }
  if (json::get_string(o, "to", to) == Field::wrong_type) {
    return bad_field("to is not a string");
  }
  // Absent: unknown, not inbound. A PBX that states the direction on some events only (the
  // first) may deliver a later one first; the store settles which party is the customer
  // (storage/call_parties.hpp), so our own line never becomes the caller of an outbound call.
  Field has_direction = json::get_string(o, "direction", direction);
  if (has_direction == Field::wrong_type ||
      (has_direction == Field::ok && direction != "inbound" && direction != "outbound")) {
    return bad_field("direction must be inbound or outbound");
  }
  std::optional<std::int64_t> occurred_at;
  if (Field f = json::get_string(o, "occurred_at", occurred_text); f != Field::absent) {
    occurred_at = f == Field::ok ? parse_rfc3339(occurred_text) : std::nullopt;
    if (!occurred_at) {
      return bad_field("occurred_at is not an RFC 3339 date-time");
    }
  }
  std::int64_t duration = -1;
  if (Field f = json::get_int(o, "duration_s", duration);
      f == Field::wrong_type || (f == Field::ok && duration < 0)) {
    return bad_field("duration_s is not a non-negative whole number of seconds");
  }
  if (json::get_string(o, "recording_url", recording) == Field::wrong_type) {
    return bad_field("recording_url is not a string");
  }

  CallEventInput ev;
  Inbound& in = ev.call;
  in.channel = "voice";
  in.kind = "call";
  in.account = cfg.name;
  if (!direction.empty()) {
    in.direction = std::string(direction);  // else the Inbound default, inbound
  }
  in.external_id = std::string(call_id);
  in.occurred_at_ms = occurred_at.value_or(0);
  // Without occurred_at the event's time is unknown. The signature time is not it: a retry is
  // signed again, so a late re-delivery of an earlier event would look newest and replace a
  // final status already queued (voicemail, then a retried missed). Key 0 lets the first final
  // status stay.
  ev.order_key = occurred_at.value_or(0);
  set_parties(in, from, to, direction, default_region, canon);
  CallInfo call;
  call.status = *status;
  call.direction = std::string(direction);
  call.duration_s = duration;
  call.recording_url = std::string(recording);
  in.call = std::move(call);

  WebhookResult r;
  r.event = std::move(ev);
  r.response_content_type = "application/json";
  r.response_body = R"({"status":"ok"})";
  return r;
}

}  // namespace sb::voice
