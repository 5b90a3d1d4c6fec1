#include "channels/voice/twilio.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

#include <boost/json.hpp>

#include "channels/voice/call_state.hpp"
#include "channels/voice/caller.hpp"
#include "channels/voice/signatures.hpp"
#include "core/json_problem.hpp"
#include "core/time.hpp"
#include "core/utf8.hpp"

namespace sb::voice {

namespace {

std::optional<std::int64_t> parse_uint(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v < 0) {
    return std::nullopt;
  }
  return v;
}

std::int64_t days_from_civil(int y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return static_cast<std::int64_t>(era) * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// Splits on spaces (runs of them count as one).
std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    std::size_t start = s.find_first_not_of(' ');
    if (start == std::string_view::npos) {
      break;
    }
    s.remove_prefix(start);
    std::size_t end = s.find(' ');
    out.push_back(s.substr(0, end));
    s = end == std::string_view::npos ? std::string_view{} : s.substr(end);
  }
  return out;
}

std::string_view direction_of(std::string_view twilio) {
  if (twilio == "inbound" || twilio == "trunking-originating") {
    return "inbound";
  }
  if (twilio.substr(0, 8) == "outbound" || twilio == "trunking-terminating") {
    return "outbound";
  }
  return "";
}

std::string status_of(std::string_view call_status, std::string_view answered_by) {
  static constexpr std::array<std::string_view, 9> kKnown = {
      "queued", "initiated", "ringing", "in-progress", "completed",
      "busy",   "no-answer", "failed",  "canceled"};
  bool known = false;
  for (auto k : kKnown) {
    known |= k == call_status;
  }
  if (!known) {
    return "";
  }
  if (call_status == "completed" && answered_by.substr(0, 8) == "machine_") {
    return "voicemail";
  }
  return std::string(call_status);
}

WebhookResult bad_field(std::string message) {
  return webhook_error(400, "invalid_payload", std::move(message));
}

// Turns the event of a <Dial> child leg (ev.call: external_id = the leg's CallSid, `leg` its
// status, duration and time) into an event of the parent call, as twilio.hpp describes.
void as_child_leg(CallEventInput& ev, CallInfo leg, std::string_view parent_sid,
                  std::string_view to, std::string_view region, const PhoneCanonicalizer& canon) {
  Inbound& in = ev.call;
  CallLeg entry;
  entry.id = std::move(in.external_id);
  if (auto phone = phone_identity(to, region, canon)) {
    entry.to = std::move(phone->value);
  } else {
    entry.to = std::string(to);  // sip:agent@example.com, client:alice: as sent
  }
  entry.status = leg.status;
  entry.duration_s = leg.duration_s;

  CallInfo contribution;
  if (!is_final(leg.status)) {
    contribution.status = leg.status;  // ringing / in-progress may move the call forward
  }
  // `completed` is only reached by a leg that was answered (an unanswered one ends busy,
  // no-answer, canceled or failed); a machine that answered ends as voicemail, not here.
  bool answered = leg.status == "in-progress" || leg.status == "completed";
  if (answered && !entry.to.empty()) {
    contribution.answered_by = entry.to;
    if (in.occurred_at_ms > 0 && leg.status == "in-progress") {
      contribution.answered_at_ms = in.occurred_at_ms;
    } else if (in.occurred_at_ms > 0 && leg.duration_s >= 0) {
      contribution.answered_at_ms = in.occurred_at_ms - leg.duration_s * 1000;
    }
  }
  contribution.legs.push_back(std::move(entry));

  in.external_id = std::string(parent_sid);
  in.from.reset();
  in.to.clear();
  in.call = std::move(contribution);
  ev.order_key = 0;  // the leg's SequenceNumber counts the leg's callbacks, not the parent's
  ev.child_leg = true;
}

// The <Dial> verb's action callback (https://www.twilio.com/docs/voice/twiml/dial#action): a
// request about the parent call (CallSid, CallStatus, From, To are the parent's) that also tells
// how the leg it <Dial>led ended: DialCallSid (that leg's CallSid), DialCallStatus (completed:
// the called party answered and was connected; answered: the same, for a conference; busy,
// no-answer, failed, canceled) and DialCallDuration. Conferences carry no DialCallSid: nothing to
// list then. The leg's number is not in the request (To is the parent's), so the leg is listed
// without `to`; a status callback of the same leg (ParentCallSid) fills it in, and call_state
// names the answering party once an answered leg has one. An error names the bad field.
std::optional<std::string> add_dial_leg(CallInfo& call, const FormParams& params) {
  auto sid = form_get(params, "DialCallSid");
  if (!sid || sid->empty()) {
    return std::nullopt;
  }
  CallLeg leg;
  leg.id = std::string(*sid);
  std::string_view status = form_get(params, "DialCallStatus").value_or("");
  leg.status = status == "answered" ? "in-progress" : status_of(status, "");
  if (auto d = form_get(params, "DialCallDuration"); d && !d->empty()) {
    auto secs = parse_uint(*d);
    if (!secs) {
      return "DialCallDuration is not a whole number of seconds";
    }
    leg.duration_s = *secs;
  }
  call.legs.push_back(std::move(leg));
  return std::nullopt;
}

// The parameters twilio_event reads.
constexpr std::array<std::string_view, 16> kUsedParams = {
    "CallSid",         "CallStatus",   "AnsweredBy",
    "Direction",       "CallDuration", "RecordingUrl",
    "SequenceNumber",  "Timestamp",    "From",
    "Caller",          "To",           "Called",
    "ParentCallSid",   "DialCallSid",  "DialCallStatus",
    "DialCallDuration"};

// A form's values are bytes: form_decode turns %FF into the byte 0xFF. Stored as sent (CallSid,
// RecordingUrl, ParentCallSid, DialCallSid, a leg's SIP address), such a value makes the call's
// JSON payload unparseable, and every later event of that call fails (storage/call_payload.cpp
// parses it again). Twilio sends UTF-8, so a signed form that does not is refused before anything
// is stored, naming the field. (A JSON body is UTF-8 already: the parser checks it.)
std::optional<std::string> not_utf8(const FormParams& params) {
  for (std::string_view name : kUsedParams) {
    auto v = form_get(params, name);
    if (v && !is_valid_utf8(*v)) {
      return std::string(name) + " is not valid UTF-8 (byte offset " +
             std::to_string(first_invalid_utf8(*v)) + " of its decoded value)";
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::int64_t> parse_rfc2822(std::string_view s) {
  std::string text(s);
  for (char& c : text) {
    if (c == ',' || c == '\t') {
      c = ' ';
    }
  }
  auto w = words(text);
  std::size_t i = 0;
  if (!w.empty() && !w[0].empty() && std::isalpha(static_cast<unsigned char>(w[0][0]))) {
    ++i;  // day name
  }
  if (w.size() < i + 5) {
    return std::nullopt;
  }
  static constexpr std::array<std::string_view, 12> kMonths = {
      "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
  auto day = parse_uint(w[i]);
  std::string mon(w[i + 1].substr(0, 3));
  for (char& c : mon) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  unsigned month = 0;
  for (unsigned m = 0; m < 12; ++m) {
    if (kMonths[m] == mon) {
      month = m + 1;
    }
  }
  auto year = parse_uint(w[i + 2]);
  std::string_view clock = w[i + 3];
  std::string_view zone = w[i + 4];
  if (!day || !year || month == 0 || *day < 1 || *day > 31) {
    return std::nullopt;
  }
  std::int64_t y = *year < 50 ? *year + 2000 : (*year < 1000 ? *year + 1900 : *year);
  std::optional<std::int64_t> hh, mm, ss = 0;
  std::size_t c1 = clock.find(':');
  std::size_t c2 = c1 == std::string_view::npos ? c1 : clock.find(':', c1 + 1);
  if (c1 == std::string_view::npos) {
    return std::nullopt;
  }
  hh = parse_uint(clock.substr(0, c1));
  if (c2 == std::string_view::npos) {
    mm = parse_uint(clock.substr(c1 + 1));
  } else {
    mm = parse_uint(clock.substr(c1 + 1, c2 - c1 - 1));
    ss = parse_uint(clock.substr(c2 + 1));
  }
  if (!hh || !mm || !ss || *hh > 23 || *mm > 59 || *ss > 60) {
    return std::nullopt;
  }
  std::int64_t offset_min = 0;
  if ((zone[0] == '+' || zone[0] == '-') && zone.size() == 5) {
    auto hhmm = parse_uint(zone.substr(1));
    if (!hhmm) {
      return std::nullopt;
    }
    offset_min = (*hhmm / 100) * 60 + *hhmm % 100;
    if (zone[0] == '-') {
      offset_min = -offset_min;
    }
  } else {
    // RFC 2822 section 4.3 obsolete zone names, still seen in the wild.
    static constexpr std::array<std::pair<std::string_view, int>, 12> kZones = {{{"UT", 0},
                                                                                 {"UTC", 0},
                                                                                 {"GMT", 0},
                                                                                 {"Z", 0},
                                                                                 {"EST", -5},
                                                                                 {"EDT", -4},
                                                                                 {"CST", -6},
                                                                                 {"CDT", -5},
                                                                                 {"MST", -7},
                                                                                 {"MDT", -6},
                                                                                 {"PST", -8},
                                                                                 {"PDT", -7}}};
    bool found = false;
    for (const auto& [name, hours] : kZones) {
      if (zone == name) {
        offset_min = hours * 60;
        found = true;
      }
    }
    if (!found) {
      return std::nullopt;
    }
  }
  std::int64_t days = days_from_civil(static_cast<int>(y), month, static_cast<unsigned>(*day));
  std::int64_t secs = days * 86400 + *hh * 3600 + *mm * 60 + *ss - offset_min * 60;
  return secs * 1000;
}

WebhookResult twilio_event(const config::Twilio& cfg, const FormParams& params,
                           std::string_view default_region, const PhoneCanonicalizer& canon) {
  if (auto error = not_utf8(params)) {
    return bad_field(std::move(*error));
  }
  auto get = [&](std::string_view name) { return form_get(params, name).value_or(""); };
  std::string_view call_sid = get("CallSid");
  if (call_sid.empty()) {
    return bad_field("CallSid is missing");
  }
  CallEventInput ev;
  Inbound& in = ev.call;
  in.channel = "voice";
  in.kind = "call";
  in.account = cfg.name;
  in.external_id = std::string(call_sid);

  CallInfo call;
  call.status = status_of(get("CallStatus"), get("AnsweredBy"));
  call.direction = std::string(direction_of(get("Direction")));
  if (auto d = form_get(params, "CallDuration"); d && !d->empty()) {
    auto secs = parse_uint(*d);
    if (!secs) {
      return bad_field("CallDuration is not a whole number of seconds");
    }
    call.duration_s = *secs;
  }
  call.recording_url = std::string(get("RecordingUrl"));
  // Answering Machine Detection: AnsweredBy rides on the answer-time request (CallStatus
  // in-progress) and later status callbacks with synchronous AMD, and on the
  // AsyncAmdStatusCallback (CallSid, AccountSid, AnsweredBy, MachineDetectionDuration, no
  // CallStatus) with asynchronous AMD; the fold makes a completed call a machine answered
  // `voicemail` whichever arrives first, as it does with Telnyx's detection events.
  call.machine_detection = std::string(get("AnsweredBy"));

  std::optional<std::int64_t> sequence;
  if (auto s = form_get(params, "SequenceNumber"); s && !s->empty()) {
    sequence = parse_uint(*s);
    if (!sequence) {
      return bad_field("SequenceNumber is not a whole number");
    }
  }
  if (auto t = form_get(params, "Timestamp"); t && !t->empty()) {
    auto ms = parse_rfc2822(*t);
    if (!ms) {
      ms = parse_rfc3339(*t);
    }
    if (!ms) {
      return bad_field("Timestamp is not an RFC 2822 date");
    }
    in.occurred_at_ms = *ms;
  }
  ev.order_key = sequence ? *sequence : in.occurred_at_ms;
  if (!call.machine_detection.empty()) {
    call.machine_detection_at_ms = in.occurred_at_ms;  // 0 on the AMD callback: no Timestamp
  }

  // From/To are the parties of this call leg; Caller/Called are older synonyms.
  std::string_view from = get("From").empty() ? get("Caller") : get("From");
  std::string_view to = get("To").empty() ? get("Called") : get("To");
  std::string_view parent = get("ParentCallSid");
  // A call an agent places from a Twilio Client (the Voice SDK in a browser or app) reaches
  // Twilio as Direction "inbound", From "client:<identity>", the customer's number in To: for
  // us it is an outbound call to the customer, never a missed inbound one. (A SIP "From" may be a
  // customer's number through a trunk, so only client: says it is ours.)
  if (call.direction == "inbound" && from.starts_with("client:")) {
    call.direction = "outbound";
  }
  if (!parent.empty() && get("Direction") == "outbound-dial") {
    as_child_leg(ev, std::move(call), parent, to, default_region, canon);
  } else {
    if (auto error = add_dial_leg(call, params)) {
      return bad_field(std::move(*error));
    }
    if (!call.direction.empty()) {
      in.direction = call.direction;
    }
    set_parties(in, from, to, call.direction, default_region, canon);
    in.call = std::move(call);
    ev.legs_follow = true;  // <Dial> legs report in callbacks of their own, in any order
  }

  WebhookResult r;
  r.event = std::move(ev);
  r.response_content_type = "text/xml";
  r.response_body = std::string(kTwimlEmptyResponse);
  return r;
}

constexpr std::ptrdiff_t kMaxTwilioParams = 1000;

WebhookResult handle_twilio(const config::Twilio& cfg, const WebhookRequest& req,
                            std::string_view default_region, const PhoneCanonicalizer& canon) {
  if (req.method != "POST") {
    return webhook_error(405, "method_not_allowed", "Twilio webhooks must be POST requests");
  }
  if (cfg.public_url.empty()) {
    return webhook_error(500, "channel_misconfigured", "public_url is not set for this channel");
  }
  // The URL Twilio called: public_url (without its trailing slash) + path + query.
  std::string_view base = cfg.public_url;
  while (!base.empty() && base.back() == '/') {
    base.remove_suffix(1);
  }
  std::string url = std::string(base) + std::string(req.target);
  std::string_view signature = req.header ? req.header("X-Twilio-Signature") : std::string_view{};
  std::string type = media_type(req.content_type);

  FormParams params;
  if (type == "application/x-www-form-urlencoded") {
    // Twilio posts about 40 parameters. The signature check needs them all decoded and sorted,
    // on the io thread, before it can reject a forgery: a 1 MiB body of `a&b&...` is 350,000
    // of them, 0.3 s of the io thread per request from anyone. So the count is checked first,
    // on the raw bytes.
    if (std::count(req.body.begin(), req.body.end(), '&') >= kMaxTwilioParams) {
      return webhook_error(400, "too_many_parameters",
                           "the form has more than " + std::to_string(kMaxTwilioParams) +
                               " parameters (Twilio sends about 40)");
    }
    params = parse_form(req.body);
    if (auto check = verify_twilio_form(cfg.auth_token, url, params, signature); !check.ok()) {
      auto refused = webhook_error(check.status, check.code, check.message);
      refused.call_id = std::string(form_get(params, "CallSid").value_or(""));
      return refused;
    }
  } else if (type == "application/json") {
    if (auto check = verify_twilio_body(cfg.auth_token, url, req.body, signature); !check.ok()) {
      return webhook_error(check.status, check.code, check.message);
    }
    // The same parameter names, as a flat JSON object.
    std::string error;
    auto doc = parse_json_object(req.body, error);
    if (!doc) {
      return webhook_error(400, "invalid_json", error);
    }
    for (const auto& [k, v] : *doc) {
      if (v.is_string()) {
        params.emplace_back(k, v.get_string());
      } else if (v.is_number() || v.is_bool()) {
        params.emplace_back(k, boost::json::serialize(v));
      }
    }
  } else {
    return webhook_error(415, "unsupported_media_type",
                         "Twilio webhooks must be application/x-www-form-urlencoded "
                         "(or application/json with bodySHA256)");
  }
  auto r = twilio_event(cfg, params, default_region, canon);
  if (r.status >= 400) {
    r.call_id = std::string(form_get(params, "CallSid").value_or(""));
  }
  return r;
}

}  // namespace sb::voice
