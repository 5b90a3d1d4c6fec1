#pragma once
// From a parsed email to the pipeline's `Inbound`, and the threading keys that tie replies
// to conversations: the In-Reply-To and References ids are looked up as the id of a message
// this system stored or sent (a recorded conversation key), never read as text. Our own
// Message-IDs name the conversation ("sb.<conversation>.") for people reading headers only:
// anyone can write that into a References header, and conversation ids are no secret (every
// reply shows its own), so a parse of it would let a stranger's mail into any conversation
// and its sticky queue.
#include <string>
#include <string_view>

#include "channels/email/mime.hpp"
#include "core/interaction.hpp"

namespace sb::email {

// channel "email", kind "email", external_id = Message-ID (the store appends "#<hash>" for
// another message under an id already stored: Inbound::content_hash, set from the parse unless
// the Message-ID is synthetic), from = lower-cased email identity,
// to = To and Cc, flags from the parse. thread_lookup, most recent first: for In-Reply-To, a
// bounce's returned message (ParsedEmail::report), the last 50 References ids from the last,
// then the first (the thread's root), each as
// "email:<account>:<msg-id>" (a reply we sent is recorded under the same key:
// smtp.hpp reply_thread_keys). thread_record: "email:<account>:<own Message-ID>".
// `mailbox` is not part of any key: a message moved between folders is still one message.
// Taken by value: the attachments (their bytes up to 25 MiB) move into the Inbound.
sb::Inbound to_inbound(ParsedEmail email, std::string_view account, std::string_view mailbox);

// The Message-ID an email interaction's external_id names: the id itself, without the
// "#<16 hex digits>" the store appends to tell another message under an id already taken
// (Inbound::content_hash). What a reply's In-Reply-To and References must carry.
std::string_view message_id_of(std::string_view external_id);

// "<sb.<conversation_id>.<16 random hex>@<domain>>" for messages we send.
std::string make_message_id(std::string_view conversation_id, std::string_view domain);

// For the subject fallback: strips reply/forward prefixes (Re, Fwd, Fw, AW, WG, SV, VS, Antw,
// RIF, TR, Réf, Ref, 回复, 答复, 回覆, 转发, 轉寄, also "Re[2]:" and full-width colons) and
// [tags] repeatedly from the front, collapses whitespace and lower-cases ASCII.
std::string normalize_subject(std::string_view subject);

// For our reply's subject: `subject` without the reply prefixes at its front (Re, AW, SV, VS,
// Antw, RIF, Ref, Réf, Res, Odp, 回复, 答复, 回覆, with counters and full-width colons as above),
// stripped repeatedly, and without leading blanks. Forward prefixes (Fwd, Fw, WG, TR, 转发,
// 轉寄) and [tags] stay, as Gmail, Outlook and Thunderbird keep them ("Re: Fwd: x").
std::string_view strip_reply_prefixes(std::string_view subject);

}  // namespace sb::email
