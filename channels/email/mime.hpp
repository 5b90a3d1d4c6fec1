#pragma once
// One raw RFC 5322 message -> the fields an interaction needs, with GMime 3 doing the MIME
// structure. Never throws and never fails: whatever cannot be read is flagged `malformed`
// and the rest is returned, so one broken message never stops a mailbox (issue 4).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/interaction.hpp"

namespace sb::email {

struct Address {
  std::string email;  // as written (case kept); empty for a group or an unparseable entry
  std::string name;   // display name, decoded
};

struct ParseLimits {
  std::size_t max_text_bytes = 1 << 20;  // UTF-8 bytes of `text`; more sets `truncated`
  int max_depth = 32;                    // MIME nesting; deeper parts are opaque, `malformed`
  // Attachment bytes kept for agents: each at most this, and all of one message together at
  // most max_attachments_total; larger ones are listed (name, type, size) with stored=false.
  std::size_t max_attachment_bytes = 10 << 20;
  std::size_t max_attachments_total = 25 << 20;
};

struct ParsedEmail {
  std::string message_id;  // "<id@host>"; synthetic "<sha256-hex@switchboard.invalid>" if none
  bool synthetic_message_id = false;
  // The message's content without its trace, to tell two messages under one Message-ID apart:
  // hex SHA-256 over the sender's address (lower-cased), the Date (Unix ms), the decoded
  // Subject, the body text as decoded from its parts (text/plain, else the HTML source: before
  // our HTML rendering, whose output may change between versions) and each attachment's type,
  // name and decoded size. Not in it: Received, Delivered-To, Return-Path, X-* and the rest of
  // the trace, and the MIME structure (boundaries, transfer encodings), so the same message
  // fetched again, or delivered to two of our addresses or mailboxes, hashes the same; another
  // message a broken mailer or a forger sends under a Message-ID already stored does not.
  // Stored with the interaction (Inbound::content_hash): a change to what goes in makes every
  // message stored before look different when fetched again (a second interaction each).
  std::string content_hash;
  std::string subject;
  Address from;
  Address reply_to;  // the first Reply-To address, when the header names one
  std::vector<Address> to;
  std::vector<Address> cc;
  std::int64_t date_ms = 0;             // 0 when absent or unparseable
  std::string in_reply_to;              // "<id>" of the first In-Reply-To id, or empty
  std::vector<std::string> references;  // "<id>" each, oldest first, as in the header
  std::string text;                     // text/plain when present, else the HTML as text
  bool truncated = false;
  std::vector<sb::Attachment> attachments;
  bool auto_reply = false;
  bool bounce = false;
  bool bulk = false;
  bool malformed = false;
  // A delivery status notification's subject (multipart/report, report-type=delivery-status):
  // the returned message's Message-ID and what the first failed recipient's fields say.
  sb::DeliveryReport report;
  std::vector<std::string> problems;  // why `malformed`, for the log ("nul-bytes", ...)
  // What parse_email cut to its caps (kMaxAttachments ...): "attachments_truncated",
  // "subject_truncated", "id_truncated", "recipients_truncated", "filename_truncated". Each
  // becomes a flag of the interaction, so the agent knows the mail held more than it shows.
  std::vector<std::string> cut;
};

// Caps on what one message may put in its interaction: every attachment is a row written in
// the writer's transaction and listed in the payload, so a message of 600,000 empty parts would
// stall every other commit. Applied after content_hash, which still counts the whole message.
inline constexpr std::size_t kMaxAttachments = 100;
inline constexpr std::size_t kMaxFilenameBytes = 255;  // a file name on most file systems
inline constexpr std::size_t kMaxSubjectBytes = 4096;  // as the ingest API's subject
inline constexpr std::size_t kMaxIdBytes = 998;        // one header line (RFC 5322 2.1.1)
inline constexpr std::size_t kMaxRecipients = 100;     // To and Cc together

ParsedEmail parse_email(std::string_view raw, const ParseLimits& limits = {});

// "<" + hex SHA-256 of the raw bytes + "@switchboard.invalid>": stable across re-fetches, so a
// message without Message-ID still dedupes.
std::string synthetic_message_id(std::string_view raw);

}  // namespace sb::email
