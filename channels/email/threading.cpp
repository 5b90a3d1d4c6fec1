#include "channels/email/threading.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "core/hex.hpp"
#include "routing/identity.hpp"

namespace sb::email {
namespace {

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The sender as the import and the ingest API canonicalise an address (one form for an IDN
// domain: GMime decodes xn-- to Unicode). An address canonicalize refuses (a quoted local part,
// an emoji domain, an invisible character) is kept as today, ASCII lower-cased: the mail is
// stored under the sender as written rather than lost, and matches a customer only if some
// later mail carries the same bytes (no file or API call can name such an address).
sb::Identity identity(const Address& a) {
  auto c = sb::canonicalize("email", a.email, "");
  return {"email", c.ok() ? std::move(c.value) : lower_ascii(a.email), a.name, {}};
}

}  // namespace

std::string make_message_id(std::string_view conversation_id, std::string_view domain) {
  std::array<unsigned char, 8> rnd{};
  RAND_bytes(rnd.data(), static_cast<int>(rnd.size()));
  std::string r = hex_lower({reinterpret_cast<const char*>(rnd.data()), rnd.size()});
  return "<sb." + std::string(conversation_id) + "." + r + "@" + std::string(domain) + ">";
}

std::string_view message_id_of(std::string_view external_id) {
  constexpr std::size_t kSuffix = 17;  // '#' and 16 hex digits, after the id's closing '>'
  if (external_id.size() <= kSuffix) {
    return external_id;
  }
  std::size_t at = external_id.size() - kSuffix;
  std::string_view digits = external_id.substr(at + 1);
  bool hex = std::all_of(digits.begin(), digits.end(),
                         [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
  if (external_id[at] != '#' || external_id[at - 1] != '>' || !hex) {
    return external_id;
  }
  return external_id.substr(0, at);
}

sb::Inbound to_inbound(ParsedEmail email, std::string_view account, std::string_view /*mailbox*/) {
  sb::Inbound in;
  in.channel = "email";
  in.account = std::string(account);
  in.kind = "email";
  in.external_id = email.message_id;
  in.content_hash = std::move(email.content_hash);  // empty for a synthetic id
  if (!email.from.email.empty()) {
    in.from = identity(email.from);
  }
  // Where answers go (RFC 5322 3.6.2): web forms and shops send From a no-reply address and
  // Reply-To the customer. Kept only when it differs from From.
  if (!email.reply_to.email.empty()) {
    auto rt = identity(email.reply_to);
    if (!in.from || rt.value != in.from->value) {
      in.reply_to = std::move(rt);
    }
  }
  for (const auto* list : {&email.to, &email.cc}) {
    for (const auto& a : *list) {
      if (!a.email.empty()) {
        in.to.push_back(identity(a));
      }
    }
  }
  in.subject = std::move(email.subject);
  in.text = std::move(email.text);
  in.occurred_at_ms = email.date_ms;
  in.in_reply_to = email.in_reply_to;
  // Kept for our reply's References. A long thread keeps its root and its latest ids, as mail
  // clients trim (RFC 5322 3.6.4 sets no limit; RFC 5537 3.4.4 trims the same way).
  constexpr std::size_t kKeptReferences = 20;
  const auto& refs = email.references;
  if (refs.size() > kKeptReferences) {
    in.references.push_back(refs.front());
    in.references.insert(in.references.end(),
                         refs.end() - static_cast<std::ptrdiff_t>(kKeptReferences - 1), refs.end());
  } else {
    in.references = refs;
  }

  // Looked up, most recent first: In-Reply-To, the latest References ids, then the thread's
  // root. Each key is a query on the writer thread: a hostile header of 200,000 ids must not
  // become 200,000 of them. The parent is In-Reply-To and the last References id; the root
  // ties a reply to a thread whose middle was never stored here.
  constexpr std::size_t kLookedUpReferences = 50;
  std::vector<std::string_view> ids;  // at most kLookedUpReferences + 2
  auto look_up = [&ids](std::string_view id) {
    if (!id.empty() && std::find(ids.begin(), ids.end(), id) == ids.end()) {
      ids.push_back(id);
    }
  };
  look_up(email.in_reply_to);
  // A bounce names the message it returns in its report, not in In-Reply-To (RFC 3464 has no
  // such header): that id is a reference too, so the bounce joins the conversation of the mail
  // that bounced (ours: Store marks the reply), never one by its fixed subject.
  look_up(email.report.message_id);
  const std::size_t latest = std::min(refs.size(), kLookedUpReferences);
  for (std::size_t i = 0; i < latest; ++i) {
    look_up(refs[refs.size() - 1 - i]);
  }
  if (!refs.empty()) {
    look_up(refs.front());
  }
  // Only ids recorded here find a conversation, ours included (recorded with the reply, in
  // the transaction that stores it: agents/records.hpp Records::reply). The conversation id
  // inside one of our Message-IDs is not read: a forged "<sb.<their conversation>.x@y>" would
  // thread a stranger's mail into it.
  std::string prefix = "email:" + std::string(account) + ":";
  for (std::string_view id : ids) {
    in.thread_lookup.push_back(prefix + std::string(id));
  }
  in.thread_record.push_back(prefix + email.message_id);
  in.subject_key = normalize_subject(in.subject);
  in.attachments = std::move(email.attachments);
  if (email.auto_reply) {
    in.flags.emplace_back("auto_reply");
  }
  if (email.bounce) {
    in.flags.emplace_back("bounce");
  }
  if (email.bulk) {
    in.flags.emplace_back("bulk");
  }
  if (email.malformed) {
    in.flags.emplace_back("malformed");
  }
  if (email.truncated) {
    in.flags.emplace_back("truncated");
  }
  for (auto& what : email.cut) {
    in.flags.push_back(std::move(what));
  }
  in.report = std::move(email.report);
  return in;
}

namespace {

// Reply prefixes: "Re" and its translations (German, Nordic, Finnish, Dutch, Italian,
// Portuguese, Polish, French, Chinese).
constexpr std::array<std::string_view, 14> kReplyPrefixes{"re",
                                                          "aw",
                                                          "sv",
                                                          "vs",
                                                          "antw",
                                                          "rif",
                                                          "ref",
                                                          "r\xC3\xA9"
                                                          "f",
                                                          "r\xC3\x89"
                                                          "f",
                                                          "res",
                                                          "odp",
                                                          "\xE5\x9B\x9E\xE5\xA4\x8D" /*回复*/,
                                                          "\xE7\xAD\x94\xE5\xA4\x8D" /*答复*/,
                                                          "\xE5\x9B\x9E\xE8\xA6\x86" /*回覆*/};
// Forward prefixes: English, German, French, Chinese.
constexpr std::array<std::string_view, 6> kForwardPrefixes{"fwd",
                                                           "fw",
                                                           "wg",
                                                           "tr",
                                                           "\xE8\xBD\xAC\xE5\x8F\x91" /*转发*/,
                                                           "\xE8\xBD\x89\xE5\xAF\x84" /*轉寄*/};

// The length of the prefix at the front of `s` ("Re:", "AW :", "Re[2]:", "回复：") when it is
// one of `prefixes`, compared case-insensitively (ASCII) and followed by ':' or '：', optionally
// with a counter such as "[2]" or "(2)" in between; 0 when there is none.
template <std::size_t N>
std::size_t prefix_length(std::string_view s, const std::array<std::string_view, N>& prefixes) {
  std::string low = lower_ascii(s.substr(0, 16));
  for (std::string_view p : prefixes) {
    if (low.compare(0, p.size(), p) != 0) {
      continue;
    }
    std::size_t i = p.size();
    if (i < s.size() && (s[i] == '[' || s[i] == '(')) {  // "Re[2]:" / "Re(2):"
      char close = s[i] == '[' ? ']' : ')';
      std::size_t j = i + 1;
      while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j])) != 0) {
        ++j;
      }
      if (j < s.size() && s[j] == close && j > i + 1) {
        i = j + 1;
      }
    }
    while (i < s.size() && s[i] == ' ') {
      ++i;
    }
    if (i < s.size() && s[i] == ':') {
      return i + 1;
    }
    if (s.compare(i, 3, "\xEF\xBC\x9A") == 0) {  // full-width colon
      return i + 3;
    }
  }
  return 0;
}

void skip_blanks(std::string_view& s) {
  std::size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) {
    ++i;
  }
  s.remove_prefix(i);
}

}  // namespace

std::string_view strip_reply_prefixes(std::string_view subject) {
  std::string_view s = subject;
  skip_blanks(s);
  while (std::size_t n = prefix_length(s, kReplyPrefixes)) {
    s.remove_prefix(n);
    skip_blanks(s);
  }
  return s;
}

std::string normalize_subject(std::string_view subject) {
  // A view whose front is dropped, never a string erased from the front: "[]" repeated over a
  // 256 KB subject made the erases quadratic.
  std::string_view s = subject;
  bool changed = true;
  while (changed) {
    changed = false;
    skip_blanks(s);
    if (!s.empty() && s[0] == '[') {
      if (auto close = s.find(']'); close != std::string::npos) {
        s.remove_prefix(close + 1);
        changed = true;
        continue;
      }
    }
    std::size_t n = prefix_length(s, kReplyPrefixes);
    n = n > 0 ? n : prefix_length(s, kForwardPrefixes);
    if (n > 0) {
      s.remove_prefix(n);
      changed = true;
    }
  }
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      space = !out.empty();
      continue;
    }
    if (space) {
      out += ' ';
      space = false;
    }
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

}  // namespace sb::email
