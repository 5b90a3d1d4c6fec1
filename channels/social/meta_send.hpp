#pragma once
// Replies through Meta: the Messenger/Instagram Send API and the WhatsApp Cloud API messages
// endpoint. Builds the request, and classifies the provider's answer into a send state.
#include <optional>
#include <string>
#include <string_view>

#include "channels/social/common.hpp"
#include "config/config.hpp"

namespace sb::social {

// The outcome of a send attempt, for the outbound interaction's send state.
struct SendOutcome {
  bool ok = false;
  bool retryable = false;  // try again later with the same request
  // Retryable because Meta throttles us (a rate-limit code, below), which it says lasts until
  // usage drops, up to an hour, and names no Retry-After: the send loop waits longer for it.
  bool throttled = false;
  std::string provider_message_id;  // message_id / wamid, matched by later status webhooks
  std::string error_message;        // the provider's message, e.g. the 24-hour window error
  std::int64_t code = 0;            // the Graph API error's `code`; 0: none
};

// Messenger or Instagram: POST {base_url}/me/messages with messaging_type RESPONSE (a reply
// inside the 24-hour standard messaging window). `recipient_id` is the PSID / IGSID, which is
// valid only for the Page that received the customer's message, and `page_token` must be that
// Page's access token (config::Meta::token_for_page): /me is the Page the token belongs to.
HttpRequestSpec meta_send_message(std::string_view page_token, std::string_view recipient_id,
                                  std::string_view text);

// Instagram comment: POST {base_url}/{ig-comment-id}/replies with `message` (Instagram Graph
// API "IG Comment Replies"), form-encoded in the body as Graph API POST parameters may be; the
// answer is {"id": the reply's comment id}. A public reply under the comment: Instagram adds a
// reply to a reply to its top-level comment. The token is the one of the Page linked to the
// Instagram account, as for the account's messages.
HttpRequestSpec instagram_comment_reply(std::string_view page_token, std::string_view comment_id,
                                        std::string_view text);

// Whom a WhatsApp reply names: a phone number, or the business-scoped user id (BSUID,
// "US.13491208655302741918") of a user whose message came without one (meta.cpp).
enum class WhatsAppTo { phone, user_id };

// WhatsApp: POST {base_url}/{phone_number_id}/messages. `to` is the customer's number (with or
// without "+"), sent as `to`; a BSUID goes as `recipient` instead (Meta's "Business-scoped user
// IDs": `to` takes a phone number, `recipient` a BSUID, and `to` wins when both are given).
// `reply_to_wamid`, when set, quotes the customer's message (context.message_id).
HttpRequestSpec whatsapp_send_message(const config::Meta& cfg, std::string_view phone_number_id,
                                      std::string_view to, std::string_view text,
                                      std::string_view reply_to_wamid = "",
                                      WhatsAppTo kind = WhatsAppTo::phone);

// Classifies an HTTP status and body of either endpoint. Graph API errors are
// {"error":{"message","type","code","error_subcode","is_transient"}}; 429/5xx, is_transient and
// the throttling codes are retryable, everything else is final. The throttling codes (Graph API
// 4 app, 17 user, 32 Page, 613 and 80007 rate limits; WhatsApp 130429 throughput and 131056
// pair rate limit, which comes as HTTP 400) are `throttled` too; `code` lets the sender pause a
// whole app, Page or number for the limits that are theirs (senders.cpp meta_limit_scope).
SendOutcome parse_meta_send_response(int http_status, std::string_view body);

// "whatsapp:<account>:<phone_number_id>:<wa_id>" or "messenger|instagram:<account>:<page>:<user>"
// (the thread keys meta.cpp records) split back into their parts, for the sender.
struct MetaThreadKey {
  std::string channel, account, business_id, user_id;
};
std::optional<MetaThreadKey> parse_meta_thread_key(std::string_view key);

}  // namespace sb::social
