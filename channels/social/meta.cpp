#include "channels/social/meta.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include "channels/social/hmac.hpp"
#include "core/crypto.hpp"
#include "core/hex.hpp"
#include "core/json_problem.hpp"

namespace sb::social {

namespace json = boost::json;

namespace {

// A Meta time in milliseconds. Messenger's message events give milliseconds; the reference of
// messaging_postbacks shows seconds, as a string ("timestamp": "1527459824"), and entry times
// come both ways: a value below 10^11 (1973 in milliseconds) is read as seconds.
std::int64_t meta_time_ms(std::int64_t at) {
  return at > 0 && at < 100000000000LL ? at * 1000 : at;
}

constexpr std::string_view kJson = "application/json";

MetaResult fail(int status, std::string_view code, std::string_view message) {
  MetaResult r;
  r.status = status;
  r.error_code = code;
  r.error_message = message;
  r.response_body = error_body(code, message);
  r.content_type = kJson;
  return r;
}

// GET verification (Meta "Getting Started > Verification Requests"): Meta sends hub.mode,
// hub.verify_token and hub.challenge and expects the challenge echoed back with 200.
MetaResult verify_subscription(const config::Meta& cfg, std::string_view target) {
  auto url = boost::urls::parse_origin_form(target);
  if (!url) {
    return fail(400, "bad_request", "the request target is not a valid URL");
  }
  std::string mode, token, challenge;
  for (auto param : url->params()) {
    if (param.key == "hub.mode") {
      mode = param.value;
    } else if (param.key == "hub.verify_token") {
      token = param.value;
    } else if (param.key == "hub.challenge") {
      challenge = param.value;
    }
  }
  if (mode != "subscribe" || cfg.verify_token.empty() ||
      !constant_time_equal(token, cfg.verify_token)) {
    return fail(403, "verification_failed", "hub.mode or hub.verify_token does not match");
  }
  MetaResult r;
  r.status = 200;
  r.response_body = challenge;
  r.content_type = "text/plain";
  return r;
}

// Meta attachment types are coarse (image, video, audio, file, ...); map them to a MIME family so
// the interaction's attachment list stays meaningful.
std::string mime_for_messenger_type(std::string_view type) {
  if (type == "image" || type == "video" || type == "audio") {
    return std::string(type) + "/*";
  }
  return "application/octet-stream";
}

// Standby (Messenger Platform "standby Webhook Event Reference", handover protocol): a message
// sent to the Page while another app - or the Page Inbox, when it is the primary receiver - owns
// the thread comes as entry.standby[] instead of entry.messaging[], every customer message while
// it keeps control. It is not stored: the owner answers it, and the Send API is not ours to use
// on that thread until control passes to this app. Reads, deliveries and echoes on standby are
// no more a customer's message than on messaging[]: only messages are counted.
void note_standby(std::string_view channel, const json::object& entry, MetaResult& out) {
  const json::array* standby = arr_at(entry, "standby");
  if (standby == nullptr) {
    return;
  }
  for (const json::value& ev_value : *standby) {
    const json::object* ev = ev_value.if_object();
    const json::object* msg = ev == nullptr ? nullptr : obj_at(*ev, "message");
    if (msg != nullptr && !bool_at(*msg, "is_echo")) {
      out.ignored.push_back(MetaIgnored{
          std::string(channel), "standby",
          "customer message on the standby channel (handover protocol: another app or the Page "
          "Inbox owns the thread) not stored; to receive such messages make this app the "
          "primary receiver or pass it thread control"});
    }
  }
}

// Comments come as entry.changes[], beside messaging[]: Instagram webhooks field `comments`
// (Instagram Platform webhook examples: value {id, from {id, username}, text, media {id,
// media_product_type}, parent_id when it answers another comment}), `live_comments`, and the
// Page webhooks field `feed` with value.item "comment". Instagram comments are stored as kind
// `comment` from the commenter, one conversation per (media, commenter) as Mastodon's per
// (status, account), and answered by a public reply (meta_send.hpp). Our own comments (from.id
// the account's own, entry.id: a reply of ours, or one written in the Instagram app) are no
// customer's and pass silently. The rest is not ingested: counted and logged, so that a
// subscription to them does not look like an idle account.
void parse_comments(const config::Meta& cfg, std::string_view channel, const json::object& entry,
                    MetaResult& out) {
  const json::array* changes = arr_at(entry, "changes");
  if (changes == nullptr) {
    return;
  }
  const std::string own = str_at(entry, "id");
  for (const json::value& c : *changes) {
    const json::object* change = c.if_object();
    const json::object* value = change == nullptr ? nullptr : obj_at(*change, "value");
    if (value == nullptr) {
      continue;
    }
    std::string field = str_at(*change, "field");
    bool comment = channel == "instagram" ? field == "comments" || field == "live_comments"
                                          : field == "feed" && str_at(*value, "item") == "comment";
    const json::object* from = obj_at(*value, "from");
    std::string user = from == nullptr ? "" : str_at(*from, "id");
    if (!comment || (!own.empty() && user == own)) {
      continue;
    }
    if (channel != "instagram" || field != "comments") {
      // A live video's comments cannot be answered by a comment (IG Comment Replies: "You
      // cannot reply to comments on a live video"); Page comments are not read yet.
      out.ignored.push_back(MetaIgnored{
          std::string(channel), "comment",
          channel == "instagram"
              ? "Instagram live video comment (webhook field live_comments) not stored: a live "
                "comment cannot be answered by a comment reply"
              : "Facebook Page comment (webhook field feed) not stored: Page comments are not "
                "ingested yet, only Messenger messages"});
      continue;
    }
    Inbound in;
    std::string id = str_at(*value, "id");
    if (id.empty() || user.empty()) {
      std::string what;
      if (id.empty()) {
        id = "nomid." + hex_lower(sha256(json::serialize(*value)));
        what = "comment without an id (stored as " + id + ")";
      } else {
        what = "comment " + id;
      }
      if (user.empty()) {
        what += " names no commenter";
      }
      in.flags.push_back("malformed");
      out.problems.push_back(MetaProblem{"instagram", what + ": stored with flag malformed"});
    }
    in.channel = "instagram";
    in.account = cfg.name;
    in.kind = "comment";
    in.external_id = id;
    if (!user.empty()) {
      // The commenter's Instagram-scoped id, as a direct message's sender, and the username
      // the comment came with (direct messages bring none) as the handle, as Telegram's.
      in.from = Identity{"instagram", user, "", str_at(*from, "username")};
    }
    in.to.push_back(Identity{"instagram", own, "", ""});
    in.text = str_at(*value, "text");
    // No time in the comment: the entry's, when Meta sent it.
    in.occurred_at_ms = meta_time_ms(int_at(entry, "time").value_or(0));
    in.in_reply_to = str_at(*value, "parent_id");
    const json::object* media = obj_at(*value, "media");
    std::string media_id = media == nullptr ? "" : str_at(*media, "id");
    if (!media_id.empty()) {
      in.flags.push_back("ig_media:" + media_id);
    }
    // Threaded per (media, commenter); without the media (a comment on an album names none),
    // per (the comment it answers, commenter), else a conversation of its own.
    std::string topic = !media_id.empty() ? media_id : in.in_reply_to;
    if (!user.empty() && !topic.empty()) {
      std::string key = "instagram_comment:" + cfg.name + ":" + own + ":" + topic + ":" + user;
      in.thread_lookup.push_back(key);
      in.thread_record.push_back(key);
    }
    out.items.push_back(std::move(in));
  }
}

// Messenger (`object: page`) and Instagram (`object: instagram`) share the messaging[] shape
// (Messenger Platform "messages" webhook reference; Instagram Platform webhook examples).
void parse_messaging(const config::Meta& cfg, std::string_view channel, const json::object& entry,
                     MetaResult& out) {
  note_standby(channel, entry, out);
  parse_comments(cfg, channel, entry, out);
  const json::array* messaging = arr_at(entry, "messaging");
  if (messaging == nullptr) {
    return;
  }
  for (const json::value& ev_value : *messaging) {
    const json::object* ev = ev_value.if_object();
    const json::object* msg = ev == nullptr ? nullptr : obj_at(*ev, "message");
    // A postback (Messenger Platform "messaging_postbacks" webhook reference: a tap on a postback
    // button, Get Started, a persistent menu item; Instagram ice breakers come the same way) is
    // the customer's choice, "Talk to a human" say: stored as a message whose text is the
    // button's title, under postback.mid (Meta sends the same mid again on a retry).
    const json::object* postback =
        ev == nullptr || msg != nullptr ? nullptr : obj_at(*ev, "postback");
    // read, delivery, reaction, optin, ... events carry no `message`.
    if (msg == nullptr && postback == nullptr) {
      // message_edits (Messenger Platform "message_edits Webhook Event Reference"): the mid of
      // a message already stored and its new text. Interactions are not rewritten.
      if (ev != nullptr && obj_at(*ev, "message_edit") != nullptr) {
        out.ignored.push_back(MetaIgnored{
            std::string(channel), "message_edit",
            "customer edit of a message (message_edit) not applied; the stored text stays "
            "the one first received"});
      }
      continue;
    }
    // Echoes are our own page's sends (message_echoes).
    if (msg != nullptr && bool_at(*msg, "is_echo")) {
      continue;
    }
    // Instagram reports an unsent message as a message with is_deleted: what was stored stays.
    if (msg != nullptr && bool_at(*msg, "is_deleted")) {
      out.ignored.push_back(
          MetaIgnored{std::string(channel), "unsend",
                      "customer unsent (deleted) a message (is_deleted); the stored copy is kept"});
      continue;
    }
    const json::object* sender = obj_at(*ev, "sender");
    const json::object* recipient = obj_at(*ev, "recipient");
    std::string sender_id = sender == nullptr ? "" : str_at(*sender, "id");
    std::string page_id = recipient == nullptr ? str_at(entry, "id") : str_at(*recipient, "id");
    std::string mid = str_at(msg != nullptr ? *msg : *postback, "mid");
    Inbound in;
    // Without a mid or a sender the event is a shape we do not know. As for WhatsApp it is
    // stored all the same (a 200 is an answer Meta will not repeat), flagged, in a conversation
    // of its own, and reported to the caller. A missing mid gets a stand-in: a hash of the event
    // as Meta sent it, so that a redelivery of the same event is still a duplicate (the email
    // channel's synthetic Message-ID does the same).
    if (mid.empty() || sender_id.empty()) {
      std::string what;
      if (mid.empty()) {
        mid = "nomid." + hex_lower(sha256(json::serialize(*ev)));
        what = "message without a mid (stored as " + mid + ")";
      } else {
        what = "message " + mid;
      }
      if (sender_id.empty()) {
        what += " names no sender";
      }
      in.flags.push_back("malformed");
      out.problems.push_back(
          MetaProblem{std::string(channel), what + ": stored with flag malformed"});
    }
    in.channel = channel;
    in.account = cfg.name;
    in.kind = "direct_message";
    in.external_id = mid;
    if (!sender_id.empty()) {
      in.from = Identity{std::string(channel), sender_id, "", ""};
    }
    in.to.push_back(Identity{std::string(channel), page_id, "", ""});
    in.occurred_at_ms = meta_time_ms(int_at(*ev, "timestamp").value_or(0));
    if (postback != nullptr) {
      // The title is what the customer saw and tapped; the payload is our own page's code for
      // it, sent to the app that made the button only, and kept out of the text.
      in.text = str_at(*postback, "title");
      if (in.text.empty()) {
        in.text = "[postback]";
      }
      in.flags.push_back("postback");
    } else {
      in.text = str_at(*msg, "text");
      if (const json::object* reply_to = obj_at(*msg, "reply_to")) {
        in.in_reply_to = str_at(*reply_to, "mid");
      }
    }
    if (const json::array* atts = msg == nullptr ? nullptr : arr_at(*msg, "attachments")) {
      std::string placeholder;
      for (const json::value& a : *atts) {
        if (const json::object* att = a.if_object()) {
          std::string type = str_at(*att, "type");
          // Messenger Platform "messages" webhook: attachments[] = {type, payload: {url}}, the
          // url a link to Meta's CDN (it expires); Instagram sends the same shape. Kept as the
          // attachment's url, its last path segment as the file name.
          const json::object* payload = obj_at(*att, "payload");
          std::string url = payload == nullptr ? "" : str_at(*payload, "url");
          Attachment attachment{url_file_name(url), mime_for_messenger_type(type), 0};
          attachment.url = std::move(url);
          in.attachments.push_back(std::move(attachment));
          placeholder += (placeholder.empty() ? "[" : " [") + type + "]";
        }
      }
      if (in.text.empty()) {
        in.text = placeholder;
      }
    }
    if (in.text.empty() && msg != nullptr && bool_at(*msg, "is_unsupported")) {
      in.text = "[unsupported message]";
    }
    if (!sender_id.empty()) {
      std::string key = std::string(channel) + ":" + cfg.name + ":" + page_id + ":" + sender_id;
      in.thread_lookup.push_back(key);
      in.thread_record.push_back(key);
    }
    out.items.push_back(std::move(in));
  }
}

std::string whatsapp_text(const json::object& m, std::string_view type, Inbound& in) {
  if (type == "text") {
    const json::object* t = obj_at(m, "text");
    return t == nullptr ? "" : str_at(*t, "body");
  }
  // Media messages carry an id to fetch the bytes with later (GET /{media-id}), a MIME type, for
  // documents a filename, and an optional caption (WhatsApp "messages" webhook reference).
  if (type == "image" || type == "audio" || type == "video" || type == "document" ||
      type == "sticker") {
    const json::object* media = obj_at(m, type);
    std::string text = "[" + std::string(type) + "]";
    if (media != nullptr) {
      std::string filename = str_at(*media, "filename");
      if (filename.empty()) {
        filename = str_at(*media, "id");  // the media id: what a later download needs
      }
      in.attachments.push_back(Attachment{filename, str_at(*media, "mime_type"), 0});
      std::string caption = str_at(*media, "caption");
      if (!caption.empty()) {
        text += " " + caption;
      }
    }
    return text;
  }
  if (type == "location") {
    const json::object* loc = obj_at(m, "location");
    std::string text = "[location]";
    if (loc != nullptr) {
      for (std::string_view k : {"name", "address"}) {
        std::string v = str_at(*loc, k);
        if (!v.empty()) {
          text += " " + v;
        }
      }
      if (const json::value* lat = loc->if_contains("latitude")) {
        if (const json::value* lon = loc->if_contains("longitude")) {
          if (lat->is_number() && lon->is_number()) {
            text += " (" + std::to_string(lat->to_number<double>()) + ", " +
                    std::to_string(lon->to_number<double>()) + ")";
          }
        }
      }
    }
    return text;
  }
  if (type == "button") {  // quick-reply button of a template message
    const json::object* b = obj_at(m, "button");
    return b == nullptr ? "[button]" : str_at(*b, "text");
  }
  if (type == "interactive") {
    if (const json::object* i = obj_at(m, "interactive")) {
      for (std::string_view k : {"button_reply", "list_reply"}) {
        if (const json::object* r = obj_at(*i, k)) {
          return str_at(*r, "title");
        }
      }
    }
    return "[interactive]";
  }
  return "[" + std::string(type.empty() ? "unsupported" : type) + "]";
}

// WhatsApp Cloud API: entry[].changes[] with field "messages"; value holds metadata, contacts,
// messages (from customers) and statuses (of our sends).
void parse_whatsapp(const config::Meta& cfg, const json::object& entry, MetaResult& out,
                    const PhoneCanonicaliser& phone, std::string_view region) {
  const json::array* changes = arr_at(entry, "changes");
  if (changes == nullptr) {
    return;
  }
  for (const json::value& c : *changes) {
    const json::object* change = c.if_object();
    const json::object* value = change == nullptr ? nullptr : obj_at(*change, "value");
    if (value == nullptr) {
      continue;
    }
    const json::object* meta = obj_at(*value, "metadata");
    std::string phone_number_id = meta == nullptr ? "" : str_at(*meta, "phone_number_id");
    std::string display_number = meta == nullptr ? "" : str_at(*meta, "display_phone_number");
    const json::array* contacts = arr_at(*value, "contacts");
    // The sender's entry in contacts[]: by wa_id, else by BSUID (user_id), else the only one.
    auto contact_of = [&](const std::string& wa_id,
                          const std::string& bsuid) -> const json::object* {
      if (contacts == nullptr) {
        return nullptr;
      }
      for (const json::value& cv : *contacts) {
        const json::object* contact = cv.if_object();
        if (contact != nullptr && ((!wa_id.empty() && str_at(*contact, "wa_id") == wa_id) ||
                                   (!bsuid.empty() && str_at(*contact, "user_id") == bsuid))) {
          return contact;
        }
      }
      if (wa_id.empty() && bsuid.empty() && contacts->size() == 1) {
        return contacts->front().if_object();
      }
      return nullptr;
    };
    if (const json::array* messages = arr_at(*value, "messages")) {
      for (const json::value& mv : *messages) {
        const json::object* m = mv.if_object();
        if (m == nullptr) {
          continue;
        }
        std::string type = str_at(*m, "type");
        std::string wa_id = str_at(*m, "from");
        // The business-scoped user id (BSUID, "US.13491208655302741918"): Meta's developer
        // documentation "Business-scoped user IDs" (2026) adds it to messages webhooks as
        // messages[].from_user_id and contacts[].user_id, beside contacts[].profile.username.
        // A user who adopts a WhatsApp username may hide the phone number: `from` and
        // contacts[].wa_id are then left out, and the BSUID is the only stable id.
        std::string bsuid = str_at(*m, "from_user_id");
        std::string id = str_at(*m, "id");
        // Reactions point at an existing message and "system" messages report number changes:
        // neither is something a customer wrote to us.
        if (id.empty() || type == "reaction" || type == "system") {
          continue;
        }
        // Edits and revokes (WhatsApp "Edit messages" / "Revoke messages" webhook references)
        // name a message already received (edit|revoke.original_message_id) under an id of
        // their own: stored, they would read as a new customer message "[edit]" or "[revoke]".
        // As a Messenger edit or an Instagram unsend, the stored message stays as received.
        if (type == "edit") {
          out.ignored.push_back(MetaIgnored{
              "whatsapp", "message_edit",
              "customer edit of a message (type edit) not applied; the stored text stays the "
              "one first received"});
          continue;
        }
        if (type == "revoke") {
          out.ignored.push_back(
              MetaIgnored{"whatsapp", "unsend",
                          "customer deleted a message (type revoke); the stored copy is kept"});
          continue;
        }
        const json::object* contact = contact_of(wa_id, bsuid);
        const json::object* profile = contact == nullptr ? nullptr : obj_at(*contact, "profile");
        std::string name = profile == nullptr ? "" : str_at(*profile, "name");
        if (wa_id.empty() && contact != nullptr) {
          wa_id = str_at(*contact, "wa_id");
        }
        if (bsuid.empty() && contact != nullptr) {
          bsuid = str_at(*contact, "user_id");
        }
        Inbound in;
        in.channel = "whatsapp";
        in.account = cfg.name;
        in.kind = "direct_message";
        in.external_id = id;
        std::string sender;  // what keys the sender's thread: the wa_id, else the BSUID
        if (!wa_id.empty()) {
          // wa_id is the sender's phone number without "+": E.164 once the "+" is back, which
          // is what matches the customer's phone across channels. It is not always that number
          // written another way: Mexican mobiles keep the "1" after 52 that E.164 dropped (wa_id
          // 5215512345678 is +525512345678), older Brazilian and Argentinian accounts differ
          // too. The wa_id is kept as the handle, and a reply goes to it (senders.cpp).
          std::string raw = "+" + wa_id;
          std::optional<std::string> e164 = phone ? phone(raw, region) : std::optional(raw);
          in.from = Identity{"whatsapp", e164.value_or(raw), name, wa_id};
          if (!e164) {
            in.flags.push_back("malformed");
          }
          sender = wa_id;
        } else if (!bsuid.empty()) {
          // No phone number: the BSUID is the identity (it never starts with "+", so it cannot
          // be taken for a number) and the handle; the same user's next message matches it.
          in.from = Identity{"whatsapp", bsuid, name, bsuid};
          sender = bsuid;
        } else {
          // Neither: a shape we do not know. Stored all the same (a 200 is an answer Meta will
          // not repeat), flagged, in a conversation of its own, and reported to the caller.
          in.flags.push_back("malformed");
          out.problems.push_back(
              MetaProblem{"whatsapp", "message " + id +
                                          " names no sender (no from, from_user_id "
                                          "or contact): stored with flag malformed"});
        }
        if (!display_number.empty()) {
          in.to.push_back(Identity{"whatsapp", "+" + display_number, "", ""});
        }
        in.text = whatsapp_text(*m, type, in);
        in.occurred_at_ms = int_at(*m, "timestamp").value_or(0) * 1000;
        if (const json::object* ctx = obj_at(*m, "context")) {
          in.in_reply_to = str_at(*ctx, "id");
        }
        // The number that received it: a reply goes out from the same one (meta_send.hpp).
        if (!phone_number_id.empty()) {
          in.flags.push_back("phone_number_id:" + phone_number_id);
        }
        if (!sender.empty()) {
          std::string key = "whatsapp:" + cfg.name + ":" + phone_number_id + ":" + sender;
          in.thread_lookup.push_back(key);
          in.thread_record.push_back(key);
        }
        out.items.push_back(std::move(in));
      }
    }
    if (const json::array* statuses = arr_at(*value, "statuses")) {
      for (const json::value& sv : *statuses) {
        const json::object* s = sv.if_object();
        if (s == nullptr) {
          continue;
        }
        SendStatus st;
        st.channel = "whatsapp";
        st.external_id = str_at(*s, "id");
        st.status = str_at(*s, "status");
        st.recipient_id = str_at(*s, "recipient_id");
        st.occurred_at_ms = int_at(*s, "timestamp").value_or(0) * 1000;
        if (const json::array* errors = arr_at(*s, "errors"); errors && !errors->empty()) {
          if (const json::object* e = errors->front().if_object()) {
            st.error_title = str_at(*e, "title");
            st.error_message = str_at(*e, "message");
            if (const json::object* data = obj_at(*e, "error_data");
                data != nullptr && st.error_message.empty()) {
              st.error_message = str_at(*data, "details");
            }
          }
        }
        if (!st.external_id.empty() && !st.status.empty()) {
          out.statuses.push_back(std::move(st));
        }
      }
    }
  }
}

}  // namespace

bool meta_signature_valid(std::string_view app_secret, std::string_view body,
                          std::string_view header_value) {
  constexpr std::string_view prefix = "sha256=";
  if (app_secret.empty() || header_value.substr(0, prefix.size()) != prefix) {
    return false;
  }
  std::string given = ascii_lower(header_value.substr(prefix.size()));
  std::string expected = hmac_sha256_hex(app_secret, body);
  return !expected.empty() && constant_time_equal(given, expected);
}

bool parse_meta_payload(const config::Meta& cfg, std::string_view body, MetaResult& out,
                        const PhoneCanonicaliser& phone, std::string_view default_region,
                        std::string& error) {
  auto root = parse_json_object(body, error);
  if (!root) {
    return false;
  }
  const json::object& obj = *root;
  std::string object = str_at(obj, "object");
  const json::array* entries = arr_at(obj, "entry");
  if (entries == nullptr) {
    return true;  // nothing to do; an unknown shape must not make Meta retry forever
  }
  for (const json::value& ev : *entries) {
    const json::object* entry = ev.if_object();
    if (entry == nullptr) {
      continue;
    }
    if (object == "page") {
      parse_messaging(cfg, "messenger", *entry, out);
    } else if (object == "instagram") {
      parse_messaging(cfg, "instagram", *entry, out);
    } else if (object == "whatsapp_business_account") {
      parse_whatsapp(cfg, *entry, out, phone, default_region);
    }
  }
  return true;
}

MetaResult handle_meta(const config::Meta& cfg, std::string_view method, std::string_view target,
                       std::string_view body, const HeaderLookup& header,
                       const PhoneCanonicaliser& phone, std::string_view default_region) {
  if (method == "GET") {
    return verify_subscription(cfg, target);
  }
  if (method != "POST") {
    return fail(405, "method_not_allowed", "only GET and POST are accepted");
  }
  // The signature covers the raw bytes exactly as sent: verify before parsing anything.
  std::optional<std::string> signature = header ? header("X-Hub-Signature-256") : std::nullopt;
  if (!signature || signature->empty()) {
    return fail(401, "missing_signature", "the X-Hub-Signature-256 header is missing");
  }
  if (!meta_signature_valid(cfg.app_secret, body, *signature)) {
    return fail(403, "bad_signature", "the X-Hub-Signature-256 signature does not match");
  }
  MetaResult r;
  std::string error;
  if (!parse_meta_payload(cfg, body, r, phone, default_region, error)) {
    return fail(400, "invalid_json", error);
  }
  r.status = 200;
  r.response_body = R"({"status":"ok"})";
  r.content_type = kJson;
  return r;
}

}  // namespace sb::social
