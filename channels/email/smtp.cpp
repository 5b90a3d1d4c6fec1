#include "channels/email/smtp.hpp"

// GCC 12 false positive inside Asio's awaitable frame allocator (see imap_client.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/json.hpp>
#include <cctype>

#include "channels/email/charset.hpp"
#include "channels/email/gmime_util.hpp"
#include "channels/email/smtp_client.hpp"
#include "channels/email/threading.hpp"
#include "core/log.hpp"
#include "core/supervise.hpp"
#include "core/time.hpp"
#include "routing/identity.hpp"
#include "storage/interaction_json.hpp"

namespace sb::email {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

struct Mailbox {
  std::string name;
  std::string address;
};

// "Support <support@example.com>" or a bare address, parsed by GMime (quoted names, RFC 2047).
std::optional<Mailbox> parse_mailbox(const std::string& text) {
  ensure_gmime_initialised();
  gobject_ptr<InternetAddressList> list(internet_address_list_parse(nullptr, text.c_str()));
  if (!list || internet_address_list_length(list.get()) < 1) {
    return std::nullopt;
  }
  InternetAddress* ia = internet_address_list_get_address(list.get(), 0);
  if (!INTERNET_ADDRESS_IS_MAILBOX(ia)) {
    return std::nullopt;
  }
  const char* addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
  const char* name = internet_address_get_name(ia);
  if (addr == nullptr || std::string_view(addr).find('@') == std::string_view::npos) {
    return std::nullopt;
  }
  return Mailbox{name != nullptr ? name : "", addr};
}

std::string str(const json::object& o, std::string_view key) {
  auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

// An email identity of the interaction JSON as a mailbox; nullopt for any other kind.
std::optional<Mailbox> identity(const json::object& o) {
  if (str(o, "type") != "email" || str(o, "value").empty()) {
    return std::nullopt;
  }
  return Mailbox{str(o, "name"), str(o, "value")};
}

// Our ids and real Message-IDs only; synthetic ids of id-less messages mean nothing to others.
// The ids come from the customer's mail and are written into In-Reply-To / References as they
// are (GMime folds them but keeps a CR or LF inside): a msg-id has no blanks or controls
// (RFC 5322 3.6.4), and one that does could add header lines or a body to our reply. GMime
// folds between ids, never inside one: an id near the 998-byte line limit (RFC 5322 2.1.1)
// would make a line servers may refuse or cut, so it is left out.
constexpr std::size_t kMaxReferableId = 900;
bool referable(const std::string& id) {
  auto blank_or_control = [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7f;
  };
  return id.size() > 2 && id.size() <= kMaxReferableId && id.front() == '<' && id.back() == '>' &&
         id.find("@switchboard.invalid>") == std::string::npos &&
         std::none_of(id.begin(), id.end(), blank_or_control);
}

// The longest line of `text` in bytes (lines end at LF, CR or CRLF).
std::size_t longest_line(std::string_view text) {
  std::size_t longest = 0;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find_first_of("\r\n", start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    longest = std::max(longest, end - start);
    start = end + 1;
  }
  return longest;
}

std::string token(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '_') {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return out;
}

// The lower-cased address of "Support <support@example.com>" or a bare address; nullopt when
// it is none.
std::optional<std::string> canonical_address(const std::string& text) {
  auto m = parse_mailbox(text);
  return m ? canonical_email(m->address) : std::nullopt;
}

void add_address(InternetAddressList* list, const Mailbox& m) {
  // A name decoded from the customer's mail may hold controls (an encoded CR/LF): GMime encodes
  // them, but the customer's client decodes them back into our header. As the subject.
  const std::string name = controls_to_spaces(m.name);
  gobject_ptr<InternetAddress> ia(internet_address_mailbox_new(name.c_str(), m.address.c_str()));
  internet_address_list_add(list, ia.get());
}

}  // namespace

std::vector<std::string> reply_thread_keys(std::string_view imap_account,
                                           std::string_view message_id) {
  return {"email:" + std::string(imap_account) + ":" + std::string(message_id)};
}

std::string reply_message_id(const config::Smtp& account, std::string_view outbound_id,
                             std::string_view conversation_id) {
  auto from = parse_mailbox(account.from.empty() ? account.username : account.from);
  std::string tok = token(outbound_id);
  if (!from || tok.empty()) {
    return "";
  }
  std::string domain = from->address.substr(from->address.rfind('@') + 1);
  return "<sb." + std::string(conversation_id) + "." + tok + "@" + domain + ">";
}

std::set<std::string> own_addresses(const config::Channels& channels) {
  std::set<std::string> own;
  auto add = [&own](const std::string& text) {
    if (auto a = canonical_address(text)) {
      own.insert(std::move(*a));
    }
  };
  for (const auto& imap : channels.imap) {
    add(imap.username);  // often the mailbox's address; "alice" on a local server is none
  }
  for (const auto& smtp : channels.smtp) {
    add(smtp.from);
    add(smtp.username);
  }
  return own;
}

BuiltReply build_reply(const config::Smtp& account, const OutboundMessage& m, std::int64_t now,
                       const std::set<std::string>& own) {
  BuiltReply out;
  auto from = parse_mailbox(account.from.empty() ? account.username : account.from);
  if (!from) {
    out.error = "smtp account " + account.name + ": `from` is not an email address";
    return out;
  }
  std::string from_address = canonical_email(from->address).value_or(from->address);
  json::object parent;
  try {
    parent = json::parse(m.parent_json).as_object();
  } catch (const std::exception& e) {
    out.error = std::string("parent_json is not a JSON object: ") + e.what();
    return out;
  }
  // Reply-To first, else From; to our own message's first To (the reply route records the same).
  // Never one of our own addresses: the answer would arrive in a mailbox we poll, as a new
  // message (a loop). The route refuses such a reply; this covers rows stored before.
  auto ours = [&](std::string_view type, std::string_view value) {
    return type == "email" && (value == from_address || own.contains(std::string(value)));
  };
  const json::object* who = storage::reply_recipient(parent, ours);
  std::optional<Mailbox> to = who ? identity(*who) : std::nullopt;
  if (!to) {
    const json::object* self = storage::reply_recipient(parent);
    std::optional<Mailbox> ours_only = self ? identity(*self) : std::nullopt;
    out.error = ours_only ? "the interaction being answered names only our own address (" +
                                ours_only->address + ") to reply to: not mailed to ourselves"
                          : "the interaction being answered has no email address to reply to";
    return out;
  }

  // An external id may carry "#<hash>" after the Message-ID (another message under an id
  // already stored, threading.hpp message_id_of); the headers name the Message-ID. So do the
  // References the reply route copied from such a parent.
  std::string parent_id(message_id_of(str(parent, "external_id")));
  // Our own earlier replies: the reply route stores each under its interaction id (a ULID, no
  // msg-id: every id of a customer's mail, synthetic ones too, is "<...>"), as its external id
  // and in the References chain it keeps, but it went out under the Message-ID stored with it
  // (m.earlier_ids), which the customer's client has. Named so, a reply to our reply has
  // In-Reply-To pointing at it and References ending with it (RFC 5322 3.6.4), and the
  // customer's client threads our second reply under our first. Rebuilt from the account as it
  // is now (reply_message_id()) only for rows that kept none (stored by an older build, never
  // sent): after `from` changed domain that is not the id they went out with.
  std::string conversation = str(parent, "conversation_id");
  auto sent_as = [&](std::string id) {
    if (!id.empty() && id.front() != '<') {
      if (auto it = m.earlier_ids.find(id); it != m.earlier_ids.end() && referable(it->second)) {
        return it->second;
      }
      std::string ours =
          reply_message_id(account, id, conversation.empty() ? m.conversation_id : conversation);
      if (referable(ours)) {
        return ours;
      }
    }
    return id;
  };
  if (str(parent, "direction") == "outbound") {
    parent_id = sent_as(std::move(parent_id));
  }
  std::vector<std::string> refs;
  auto add_references = [&refs, &sent_as](const json::value* r) {
    if (r && r->is_array()) {
      for (const auto& v : r->as_array()) {
        std::string id = v.is_string() ? sent_as(std::string(message_id_of(v.as_string()))) : "";
        if (referable(id)) {
          refs.push_back(std::move(id));
        }
      }
    }
  };
  if (!m.thread_json.empty()) {
    json::error_code ec;
    if (auto tj = json::parse(m.thread_json, ec); !ec && tj.is_object()) {
      add_references(tj.as_object().if_contains("references"));
    }  // thread_json is optional help; without it the parent's own ids are used below
  }
  // RFC 5322 3.6.4: the parent's References, else its In-Reply-To, then the parent's own id.
  if (refs.empty()) {
    add_references(parent.if_contains("references"));
  }
  if (std::string irt = sent_as(std::string(message_id_of(str(parent, "in_reply_to"))));
      refs.empty() && referable(irt)) {
    refs.push_back(std::move(irt));
  }
  if (referable(parent_id) && (refs.empty() || refs.back() != parent_id)) {
    refs.push_back(parent_id);
  }

  // The Message-ID stored with the reply (SmtpSender::planned_id): a resend, after a crash or
  // after `from` changed domain, is the same message to the customer's client, and the key
  // recorded with the reply stays the one its answer names. Rebuilt for a reply stored by an
  // older build.
  out.message_id =
      referable(m.planned_id) ? m.planned_id : reply_message_id(account, m.id, m.conversation_id);
  if (out.message_id.empty()) {  // an id with no letter or digit (not one of ours)
    out.message_id =
        make_message_id(m.conversation_id, from->address.substr(from->address.rfind('@') + 1));
  }
  out.mail_from = from->address;
  out.rcpt_to = to->address;

  ensure_gmime_initialised();
  gobject_ptr<GMimeMessage> msg(g_mime_message_new(TRUE));
  add_address(g_mime_message_get_from(msg.get()), *from);
  add_address(g_mime_message_get_to(msg.get()), *to);
  // Controls as spaces again: rows stored before the parse replaced them (mime.cpp) may hold
  // a CR or LF, which GMime writes as it is and dot-stuffing turns into a line end.
  std::string subject = controls_to_spaces(str(parent, "subject"));
  // One "Re: " in front of the subject without its reply prefixes: a customer's "AW: Order 7"
  // is answered as "Re: Order 7", not "Re: AW: Order 7", and the subject does not grow a
  // prefix each round.
  subject = "Re: " + std::string(strip_reply_prefixes(subject));
  g_mime_message_set_subject(msg.get(), subject.c_str(), "utf-8");  // RFC 2047 when not ASCII
  GDateTime* date = g_date_time_new_from_unix_utc(now / 1000);
  g_mime_message_set_date(msg.get(), date);
  g_date_time_unref(date);
  std::string bare_id = out.message_id.substr(1, out.message_id.size() - 2);
  g_mime_message_set_message_id(msg.get(), bare_id.c_str());
  auto* obj = GMIME_OBJECT(msg.get());
  if (referable(parent_id)) {
    g_mime_object_set_header(obj, "In-Reply-To", parent_id.c_str(), nullptr);
  }
  if (!refs.empty()) {
    std::string joined;
    for (const auto& r : refs) {
      joined += (joined.empty() ? "" : " ") + r;
    }
    g_mime_object_set_header(obj, "References", joined.c_str(), nullptr);
  }

  // The body is set as bytes with an explicit charset: g_mime_text_part_set_text would pick
  // the "best" charset (iso-8859-1 for Latin text), and we promise UTF-8.
  gobject_ptr<GMimeTextPart> part(g_mime_text_part_new_with_subtype("plain"));
  gobject_ptr<GMimeStream> mem(g_mime_stream_mem_new_with_buffer(m.text.data(), m.text.size()));
  gobject_ptr<GMimeDataWrapper> content(
      g_mime_data_wrapper_new_with_stream(mem.get(), GMIME_CONTENT_ENCODING_DEFAULT));
  g_mime_part_set_content(GMIME_PART(part.get()), content.get());
  bool ascii = std::all_of(m.text.begin(), m.text.end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  g_mime_object_set_content_type_parameter(GMIME_OBJECT(part.get()), "charset",
                                           ascii ? "us-ascii" : "utf-8");
  // 7bit only where it is valid: ASCII in lines of at most 998 bytes (RFC 5322 2.1.1, RFC 2045
  // 2.7). An agent's long paragraph is one line; sent as it is, servers refuse or cut it.
  // Quoted-printable wraps it in soft line breaks, which readers join again.
  bool seven_bit = ascii && longest_line(m.text) <= 998;
  g_mime_part_set_content_encoding(
      GMIME_PART(part.get()),
      seven_bit ? GMIME_CONTENT_ENCODING_7BIT : GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE);
  g_mime_message_set_mime_part(msg.get(), GMIME_OBJECT(part.get()));
  g_mime_object_set_header(obj, "MIME-Version", "1.0", nullptr);

  GMimeFormatOptions* fo = g_mime_format_options_clone(nullptr);
  g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
  char* text = g_mime_object_to_string(obj, fo);
  out.data = text != nullptr ? text : "";
  g_free(text);
  g_mime_format_options_free(fo);
  return out;
}

SmtpSender::SmtpSender(asio::any_io_executor ex, config::Smtp account, std::set<std::string> own)
    : ex_(std::move(ex)),
      account_(std::move(account)),
      own_(std::move(own)),
      tls_(std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client)) {
  if (auto from = canonical_address(account_.from.empty() ? account_.username : account_.from)) {
    own_.insert(std::move(*from));
  }
  tls_->set_verify_mode(asio::ssl::verify_peer);
  tls_->set_default_verify_paths();
  if (!account_.ca_file.empty()) {
    tls_->load_verify_file(account_.ca_file);
  }
}

bool SmtpSender::own_identity(std::string_view type, std::string_view value) const {
  return type == "email" && own_.contains(std::string(value));
}

std::vector<std::string> SmtpSender::planned_thread_keys(std::string_view outbound_id,
                                                         std::string_view conversation_id) const {
  std::string id = reply_message_id(account_, outbound_id, conversation_id);
  return id.empty() ? std::vector<std::string>{} : reply_thread_keys(account_.for_account, id);
}

std::string SmtpSender::planned_id(std::string_view outbound_id,
                                   std::string_view conversation_id) const {
  return reply_message_id(account_, outbound_id, conversation_id);
}

void SmtpSender::take_secrets(const std::vector<config::Smtp>& fresh) {
  config::take_secrets(account_, fresh);
}

void SmtpSender::send(OutboundMessage message, Done done) {
  BuiltReply reply = build_reply(account_, message, now_ms(), own_);
  std::string prefix = "[email:" + account_.for_account + "]";
  if (!reply.error.empty()) {
    logger("email")->warn("{} reply {} not sent: {}", prefix, message.id, reply.error);
    done(SendResult::failed(reply.error));
    return;
  }
  smtp::Options o{account_.host, account_.port, account_.tls, account_.username, account_.password};
  o.helo_name = reply.mail_from.substr(reply.mail_from.rfind('@') + 1);
  smtp::Envelope env{reply.mail_from, {reply.rcpt_to}, std::move(reply.data)};
  auto shared_done = std::make_shared<Done>(std::move(done));
  asio::co_spawn(
      ex_,
      [tls = tls_, o = std::move(o), env = std::move(env), id = reply.message_id, prefix,
       via = account_.name, outbound = message.id, imap = account_.for_account,
       shared_done]() -> asio::awaitable<void> {
        auto r = co_await smtp::send(co_await asio::this_coro::executor, *tls, o, env);
        auto log = logger("email");
        if (r.status == smtp::Outcome::Status::sent) {
          log->info("{} reply {} sent via smtp {} as {}", prefix, outbound, via, id);
          auto sent = SendResult::sent(id);
          sent.thread_keys = reply_thread_keys(imap, id);
          (*shared_done)(std::move(sent));
        } else if (r.status == smtp::Outcome::Status::temporary) {
          log->warn("{} reply {} via smtp {} deferred: {}", prefix, outbound, via, r.error);
          (*shared_done)(SendResult::retry(r.error));
        } else {
          log->warn("{} reply {} via smtp {} failed: {}", prefix, outbound, via, r.error);
          (*shared_done)(SendResult::failed(r.error));
        }
      },
      [shared_done, prefix, via = account_.name, outbound = message.id](std::exception_ptr e) {
        if (e) {
          std::string what = exception_what(e);
          logger("email")->error(
              "{} reply {} via smtp {}: the send stopped by an exception: {}; it will be retried",
              prefix, outbound, via, what);
          (*shared_done)(SendResult::retry("the send stopped by an exception: " + what));
        }
      });
}

}  // namespace sb::email
