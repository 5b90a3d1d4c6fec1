#pragma once
// Meta webhooks (SPEC section 3: GET/POST /webhooks/meta/{name}): Messenger, Instagram and
// WhatsApp Cloud API events, one endpoint per configured [[channels.meta]] account.
//
//   GET  -> subscription check (hub.mode=subscribe, hub.verify_token) answered with hub.challenge
//   POST -> X-Hub-Signature-256 checked over the raw body, then the JSON parsed into
//           interactions (items) and send-state updates of our own messages (statuses).
//
// handle_meta does no I/O. For a POST that yields status 200 the caller must store `items` and
// apply `statuses` and answer only after the commit (SPEC: a 2xx means committed); Meta retries
// on anything but 200, and dedupe on (channel, account, external_id) absorbs the retries.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "channels/social/common.hpp"
#include "config/config.hpp"
#include "core/interaction.hpp"

namespace sb::social {

// A send-state update of one of our outbound messages (WhatsApp `statuses[]`).
struct SendStatus {
  std::string channel;       // "whatsapp"
  std::string external_id;   // the provider's message id we got when sending (wamid....)
  std::string status;        // sent | delivered | read | failed (provider vocabulary)
  std::string recipient_id;  // wa_id of the customer
  std::int64_t occurred_at_ms = 0;
  std::string error_title;    // errors[0].title, when failed
  std::string error_message;  // errors[0].message (or error_data.details), when failed
};

// An item stored although part of it could not be read (a message that names no sender, a
// Messenger or Instagram message without a mid): the caller logs it and counts it in
// switchboard_channel_errors_total.
struct MetaProblem {
  std::string channel;  // the item's channel ("whatsapp", "messenger", "instagram")
  std::string message;
};

// An event read and deliberately left unstored: a customer message on the handover protocol's
// standby channel, an edit of a stored message (Messenger, WhatsApp), an Instagram unsend or a
// WhatsApp revoke, an Instagram or Facebook Page comment (not ingested yet). The caller counts it
// in switchboard_social_events_ignored_total{account,kind} and logs `why` (at most once a minute
// per account and kind): dropped without a trace, a Page whose Inbox took over would look idle.
struct MetaIgnored {
  std::string channel;  // "messenger", "instagram" or "whatsapp"
  std::string kind;     // standby | message_edit | unsend | comment
  std::string why;
};

struct MetaResult {
  int status = 200;
  std::string error_code;  // snake_case, set with a 4xx
  std::string error_message;
  std::vector<Inbound> items;
  std::vector<SendStatus> statuses;
  std::vector<MetaProblem> problems;
  std::vector<MetaIgnored> ignored;
  std::string response_body;  // what to answer (challenge text, error JSON, or "ok" JSON)
  std::string content_type;
};

// The whole webhook endpoint. `target` is the request's path and query; `header` looks up request
// headers; `phone` canonicalises WhatsApp senders (when empty, "+" + wa_id is used as is).
MetaResult handle_meta(const config::Meta& cfg, std::string_view method, std::string_view target,
                       std::string_view body, const HeaderLookup& header,
                       const PhoneCanonicaliser& phone = {}, std::string_view default_region = "");

// The pieces, exposed for tests and benchmarks.
// Checks "sha256=<hex>" against HMAC-SHA256(app_secret, body); false on any malformation.
bool meta_signature_valid(std::string_view app_secret, std::string_view body,
                          std::string_view header_value);

// Parses a verified POST body. Returns false (and sets `error`: what is wrong and at which byte,
// core/json_problem.hpp) when it is not a JSON object.
bool parse_meta_payload(const config::Meta& cfg, std::string_view body, MetaResult& out,
                        const PhoneCanonicaliser& phone, std::string_view default_region,
                        std::string& error);

}  // namespace sb::social
