#pragma once
// The normalised interaction: what every channel produces and what the pipeline stores.
// SPEC section 5 is the JSON form of `Interaction`; `Inbound` is what a channel hands in,
// before storage assigns ids, customer, conversation and route.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sb {

// An identity in canonical form (SPEC section 5): type is email | phone | mastodon | x |
// messenger | instagram | telegram | whatsapp; value is canonical (lower-cased email, E.164
// phone, user@domain, platform user id). `name` and `handle` are display data only.
struct Identity {
  std::string type;
  std::string value;
  std::string name;
  std::string handle;
};

struct Attachment {
  std::string filename;
  std::string content_type;
  std::int64_t size = 0;
  // The decoded bytes, when the channel kept them (within its size caps): stored beside the
  // interaction and served to agents by GET /v1/interactions/{id}/attachments/{n}.
  bool stored = false;
  std::string data{};  // (an initializer: brace lists that stop before it need not name it)
  // Where the provider serves the file, when it names a link instead of sending the bytes
  // (Messenger/Instagram CDN, Mastodon media): in the payload as "url" when set. Such links may
  // expire; the bytes are not fetched.
  std::string url{};
};

// A leg a call set up to reach our side (Twilio <Dial>: a child call with a CallSid of its own).
// In the payload as "call"."legs": [{"id","to","status","duration_s"}], only when there is one.
struct CallLeg {
  std::string id;                // the leg's provider call id
  std::string to;                // whom it rang: E.164 when a phone number, else as sent (sip:...)
  std::string status;            // the leg's own status (CallInfo words); "" when none yet
  std::int64_t duration_s = -1;  // -1: not known yet
};

// Call status vocabulary of SPEC section 3.
struct CallInfo {
  std::string status;            // queued | initiated | ringing | in-progress | completed | busy |
                                 // no-answer | failed | canceled | voicemail | unknown
  std::string direction;         // inbound | outbound
  std::int64_t duration_s = -1;  // -1: not known yet
  std::string recording_url;
  // Who on our side answered (the `to` of the leg that was answered) and when (Unix ms), once
  // a leg tells; "" and 0 until then. In the payload only when set. (The `{}`s keep aggregate
  // initialisations of the first four members free of missing-initializer warnings.)
  std::string answered_by{};
  std::int64_t answered_at_ms = 0;
  std::vector<CallLeg> legs{};
  // The provider's answering-machine detection result, as sent, once one tells (Telnyx:
  // human, machine, not_sure; premium: human_residence, human_business, machine, silence,
  // fax_detected, not_sure; Twilio's AnsweredBy: human, machine_start, machine_end_beep,
  // machine_end_silence, machine_end_other, fax, unknown); "" until then. "machine" and
  // "machine_*" make a completed call `voicemail` (channels/voice/call_state.hpp). In the payload
  // as "machine_detection" only when set.
  std::string machine_detection{};
  // When that result was reached (the event's time, Unix ms); 0 when the event had none. A later
  // result replaces an earlier one (Telnyx restarts premium detection after an iOS call
  // screening). In the payload as "machine_detection_at" only when set.
  std::int64_t machine_detection_at_ms = 0;
  // The provider's id of the recording (Telnyx call.recording.saved `recording_id`), "" when
  // none: Telnyx's recording_urls are presigned links that expire 10 minutes after they are
  // sent, and with the id a client fetches fresh ones (GET /v2/recordings/{id}). In the payload
  // as "recording_id" only when set; the first one stored stays, like recording_url.
  std::string recording_id{};
};

// Email: what a delivery status notification (RFC 3464: multipart/report with
// report-type=delivery-status) says about the message it returns. `message_id` empty: the mail
// is no such report, or it names no message (neither a message/rfc822 nor a
// text/rfc822-headers part with a Message-ID).
struct DeliveryReport {
  std::string message_id;  // "<id>": the Message-ID of the returned message
  // Of the first recipient whose Action is "failed", else of the first recipient: Action
  // (failed | delayed | delivered | relayed | expanded, lower-cased), Status ("5.1.1"),
  // Diagnostic-Code ("smtp; 550 5.1.1 user unknown") and Final-Recipient ("rfc822; a@b.example").
  std::string action;
  std::string status;
  std::string diagnostic;
  std::string recipient;
};

// What a channel hands to the pipeline. All strings are valid UTF-8.
struct Inbound {
  std::string
      channel;  // email | voice | mastodon | x | messenger | instagram | whatsapp | telegram | api
  std::string account;  // the configured channel name (for the ingest API: the `source`)
  std::string kind;     // email | call | mention | direct_message | comment | message
  std::string direction = "inbound";
  std::string external_id;  // dedupe key within (channel, account)
  // Set where one external id may name different messages (email: broken mailers and some
  // ticketing and marketing tools reuse Message-IDs; a forger may too): a digest of what the
  // message says, without its delivery trace. Stored with the row. A stored row with the same
  // external_id and another hash is a different message, stored under
  // "<external_id>#<first 16 hex digits of the hash>" (Store::submit). Empty: the external id
  // alone decides.
  std::string content_hash;
  std::optional<Identity> from;  // canonical; nullopt for withheld callers (never matched)
  // The sender's other identities, when the channel was given several (the ingest API's
  // from.email, from.phone and from.platform + handle: `from` is the first of them in that
  // order, these the rest, canonical). Matched after `from`, in order, and kept with the
  // customer (Store: match_customer); not in the payload, whose `from` is one identity (SPEC
  // section 5). Empty for every other channel.
  std::vector<Identity> also_from;
  // Email: the Reply-To address when it differs from From; answers go there. In the payload as
  // "reply_to" when set. Not used for matching: the customer is the sender (mail From us, flag
  // `from_us`, is matched by customer_address instead).
  std::optional<Identity> reply_to;
  // Email, flag `from_us` (From is one of our addresses, To or Cc too: a contact form mailing
  // From support@ To support@, a colleague's handoff): From names no customer, so the customer
  // is matched by this (the Reply-To when it names someone else), or none when unset. Not in
  // the payload. Ignored without the flag.
  std::optional<Identity> customer_address;
  std::vector<Identity> to;
  std::string subject;
  std::string text;
  std::int64_t occurred_at_ms = 0;  // Unix ms; 0 means "use received_at"
  std::string in_reply_to;          // external id of the parent, when known
  // Email: the References ids, oldest first, so a reply can carry the whole chain (RFC 5322
  // 3.6.4). In the payload as "references" when not empty.
  std::vector<std::string> references;
  // Threading: conversation keys to look up (first hit wins), and keys that will point to this
  // interaction's conversation afterwards. Keys are opaque strings such as
  // "api:web-form:order-7" or "email:support:<abc@example.com>".
  std::vector<std::string> thread_lookup;
  std::vector<std::string> thread_record;
  // The fallback when no thread_lookup key names a conversation: the conversation of the same
  // customer, channel and account last given this key, if it holds a message from within 14
  // days of this one. Email sets the subject without Re:/Fwd:/AW:/回复: prefixes; empty: none.
  std::string subject_key;
  std::optional<CallInfo> call;
  std::vector<Attachment> attachments;
  std::vector<std::string> flags;  // auto_reply | bounce | bulk | malformed | ...
  // Email, flag `bounce`: the delivery report's subject. Its Message-ID is looked up as a
  // reference (thread_lookup), and the store marks our reply it names as bounced.
  DeliveryReport report;
};

}  // namespace sb
