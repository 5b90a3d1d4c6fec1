#include "channels/email/mime.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <optional>
#include <unordered_set>

#include "channels/email/charset.hpp"
#include "channels/email/gmime_util.hpp"
#include "channels/email/html_text.hpp"
#include "channels/email/rfc2047.hpp"
#include "core/crypto.hpp"
#include "core/hex.hpp"

namespace sb::email {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && ws(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && ws(s.back())) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

void note(ParsedEmail& out, std::string_view problem) {
  out.malformed = true;
  if (std::find(out.problems.begin(), out.problems.end(), problem) == out.problems.end()) {
    out.problems.emplace_back(problem);
  }
}

// Mbox separator lines ("From sender date", or ">From " munged) before the first header, which
// mail stored from mbox files sometimes keeps. GMimeMessage's parser skips them (they are not
// headers); the top-level entity parsed as a part would take them for a broken header block.
// "From : x@y.z" is a header (blanks may precede the colon), not a separator.
std::string_view skip_mbox_from_lines(std::string_view raw) {
  for (;;) {
    std::size_t name = raw.starts_with("From ") ? 4 : raw.starts_with(">From ") ? 5 : 0;
    if (name == 0) {
      return raw;
    }
    std::size_t colon = raw.find_first_not_of(" \t", name);
    if (colon != std::string_view::npos && raw[colon] == ':') {
      return raw;
    }
    std::size_t eol = raw.find('\n');
    raw = raw.substr(eol == std::string_view::npos ? raw.size() : eol + 1);
  }
}

// Where the top-level header block ends: the first empty line (CRLF or LF), or the end.
std::size_t header_block_end(std::string_view entity) {
  if (entity.starts_with("\n") || entity.starts_with("\r\n")) {
    return 0;
  }
  std::size_t lf = entity.find("\n\n");
  std::size_t crlf = entity.find("\n\r\n");
  std::size_t end = std::min(lf, crlf);
  return end == std::string_view::npos ? entity.size() : end + 1;
}

// RFC 5322 3.6: the message headers that may appear only once (GMime's own list).
bool single_occurrence_header(std::string_view name) {
  static constexpr std::array<std::string_view, 11> kSingle = {
      "bcc",        "cc",       "date",   "from",    "in-reply-to", "message-id",
      "references", "reply-to", "sender", "subject", "to"};
  std::string l = lower(name);
  return std::find(kSingle.begin(), kSingle.end(), l) != kSingle.end();
}

struct WarningSink {
  ParsedEmail& out;
  gint64 top_headers_end;  // offset of the blank line that ends the top-level header block
};

// Structural problems GMime reports while parsing; duplicated headers, 8-bit headers and bad
// address lists are everyday mail, not damage, and are not counted.
void on_parser_warning(gint64 offset, GMimeParserWarning code, const gchar* item, gpointer user) {
  auto& sink = *static_cast<WarningSink*>(user);
  auto& out = sink.out;
  // The top-level entity is parsed as a part (see parse_email), and GMime then checks every
  // repeated header of it for a conflict; as a message it checks only Content-* and the
  // single-occurrence headers. Two different Received: lines are every mail, not damage.
  if (code == GMIME_CRIT_CONFLICTING_HEADER && offset >= 0 && offset < sink.top_headers_end &&
      item != nullptr && !lower(item).starts_with("content-") && !single_occurrence_header(item)) {
    return;
  }
  switch (code) {
    case GMIME_WARN_MALFORMED_MULTIPART:
      note(out, "multipart-without-parts");
      break;
    case GMIME_WARN_TRUNCATED_MESSAGE:
      note(out, "truncated-message");
      break;
    case GMIME_WARN_MALFORMED_MESSAGE:
      note(out, "malformed-message");
      break;
    case GMIME_WARN_INVALID_CONTENT_TYPE:
      note(out, "invalid-content-type");
      break;
    case GMIME_CRIT_INVALID_HEADER_NAME:
      note(out, "invalid-header-name");
      break;
    case GMIME_CRIT_CONFLICTING_HEADER:
    case GMIME_CRIT_CONFLICTING_PARAMETER:
      note(out, "conflicting-header");
      break;
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
      note(out, "multipart-without-boundary");
      break;
    case GMIME_CRIT_NESTING_OVERFLOW:
      note(out, "nesting-too-deep");
      break;
    case GMIME_WARN_PART_WITHOUT_CONTENT:
    case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
      note(out, "part-without-content");
      break;
    default:
      break;
  }
}

// A header's raw value, unfolded (RFC 5322 2.2.3: CRLF followed by WSP is removed).
std::string unfolded(GMimeHeader* h) {
  const char* v = g_mime_header_get_raw_value(h);
  std::string out;
  for (const char* p = v == nullptr ? "" : v; *p != '\0'; ++p) {
    if (*p != '\r' && *p != '\n') {
      out += *p;
    }
  }
  return out;
}

// The raw value of the first header `name`, unfolded and trimmed.
std::optional<std::string> raw_header(GMimeObject* obj, const char* name) {
  GMimeHeaderList* list = g_mime_object_get_header_list(obj);
  GMimeHeader* h = list == nullptr ? nullptr : g_mime_header_list_get_header(list, name);
  if (h == nullptr) {
    return std::nullopt;
  }
  return trim(unfolded(h));
}

// Outlook writes display names as "'Jane Doe'"; the quotes are not part of the name.
std::string clean_name(std::string name) {
  name = trim(name);
  if (name.size() >= 2 && name.front() == '\'' && name.back() == '\'') {
    name = trim(name.substr(1, name.size() - 2));
  }
  return name;
}

void collect_addresses(InternetAddressList* list, std::vector<Address>& out) {
  int n = internet_address_list_length(list);
  for (int i = 0; i < n; ++i) {
    InternetAddress* ia = internet_address_list_get_address(list, i);
    if (INTERNET_ADDRESS_IS_GROUP(ia)) {
      collect_addresses(internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia)), out);
      continue;
    }
    Address a;
    const char* addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
    const char* name = internet_address_get_name(ia);
    a.email = sanitize_utf8(addr == nullptr ? "" : addr);
    a.name = sanitize_utf8(clean_name(name == nullptr ? "" : name));
    if (!a.email.empty() || !a.name.empty()) {
      out.push_back(std::move(a));
    }
  }
}

std::vector<Address> parse_addresses(GMimeObject* msg, const char* header,
                                     GMimeParserOptions* options) {
  std::vector<Address> out;
  auto raw = raw_header(msg, header);
  if (!raw || raw->empty()) {
    return out;
  }
  std::string decoded = predecode_address_header(*raw);
  gobject_ptr<InternetAddressList> list(internet_address_list_parse(options, decoded.c_str()));
  if (list) {
    collect_addresses(list.get(), out);
  }
  return out;
}

std::vector<std::string> parse_ids(GMimeObject* msg, const char* header,
                                   GMimeParserOptions* options) {
  std::vector<std::string> out;
  auto raw = raw_header(msg, header);
  if (!raw || raw->empty()) {
    return out;
  }
  GMimeReferences* refs = g_mime_references_parse(options, raw->c_str());
  if (refs == nullptr) {
    return out;
  }
  // Repeats dropped through a hash set: a hostile References header of 200,000 ids (2 MB) made
  // a search of the list so far for each id take minutes.
  int n = g_mime_references_length(refs);
  std::unordered_set<std::string> seen;
  for (int i = 0; i < n; ++i) {
    const char* id = g_mime_references_get_message_id(refs, i);
    if (id != nullptr && *id != '\0') {
      std::string bracketed = "<" + sanitize_utf8(id) + ">";
      if (seen.insert(bracketed).second) {
        out.push_back(std::move(bracketed));
      }
    }
  }
  g_mime_references_free(refs);
  return out;
}

// CRLF and lone CR -> LF. Copies the runs between CRs in one go (memchr), not byte by byte.
std::string normalise_newlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  while (!s.empty()) {
    const void* cr = std::memchr(s.data(), '\r', s.size());
    if (cr == nullptr) {
      out.append(s);
      break;
    }
    std::size_t i = static_cast<std::size_t>(static_cast<const char*>(cr) - s.data());
    out.append(s.substr(0, i));
    out += '\n';
    i += (i + 1 < s.size() && s[i + 1] == '\n') ? 2 : 1;
    s.remove_prefix(i);
  }
  return out;
}

// Whether `s` has anything but blanks and line ends.
bool blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos;
}

struct walker {
  ParsedEmail& out;
  const ParseLimits& limits;
  // Every inline text part's text, joined per type: what content_hash reads (text/plain, else
  // the HTML), as it did before `shown` chose the text.
  std::string plain;
  std::string html;
  bool plain_more = false;
  bool html_more = false;
  std::size_t kept = 0;  // attachment bytes kept so far
  // The text parts the text is made of, in the order of the message: a range of `plain` or of
  // `html` each. One alternative of each multipart/alternative, as a mail client shows the
  // message: an HTML mail whose list manager added a text/plain footer part is the HTML and
  // the footer, not the footer alone.
  struct Shown {
    bool is_html;
    std::size_t begin, end;
    bool cut;  // the part was longer than what was read of it
  };
  std::vector<Shown> shown{};
  // The mail's own line ends (CRLF, as IMAP delivers it, or LF), for a forwarded message kept
  // as bytes.
  bool crlf = true;
  // Each attachment's size as content_hash reads it: the size, except for a forwarded message,
  // which counts its LF-only form as before its bytes were kept (see walk).
  std::vector<std::int64_t> hashed_sizes{};
  // The first multipart/report of report-type delivery-status met (read_delivery_report).
  GMimeMultipart* report = nullptr;

  std::string_view text_of(const Shown& s) const {
    return std::string_view(s.is_html ? html : plain).substr(s.begin, s.end - s.begin);
  }

  // Of the alternatives a multipart/alternative's parts added to `shown` (from[i] is where part
  // i's begin, from.back() the end), keeps one: the first with text/plain that is not blank
  // (plain text as the sender wrote it, the choice of `text` since the first version), else
  // the last with any text (RFC 2046 5.1.4: the last is the sender's preferred), so a blank
  // text/plain beside the HTML gives the HTML.
  void choose_alternative(const std::vector<std::size_t>& from) {
    std::size_t n = from.size() - 1;
    auto has = [&](std::size_t i, bool want_plain) {
      for (std::size_t k = from[i]; k < from[i + 1]; ++k) {
        if ((!want_plain || !shown[k].is_html) && !blank(text_of(shown[k]))) {
          return true;
        }
      }
      return false;
    };
    std::size_t chosen = n;
    for (std::size_t i = 0; i < n && chosen == n; ++i) {
      chosen = has(i, true) ? i : n;
    }
    for (std::size_t i = n; i-- > 0 && chosen == n;) {
      chosen = has(i, false) ? i : n;
    }
    if (chosen == n) {
      shown.resize(from.front());  // nothing but blanks
      return;
    }
    std::vector<Shown> kept_parts(shown.begin() + static_cast<std::ptrdiff_t>(from[chosen]),
                                  shown.begin() + static_cast<std::ptrdiff_t>(from[chosen + 1]));
    shown.resize(from.front());
    shown.insert(shown.end(), kept_parts.begin(), kept_parts.end());
  }

  // Reads at most `cap` decoded bytes of a leaf part, streaming through GMime's transfer
  // decoder so that a 50 MB part never sits in memory twice.
  std::string read_decoded(GMimePart* part, std::size_t cap, bool& more) {
    std::string data;
    GMimeDataWrapper* w = g_mime_part_get_content(part);
    if (w == nullptr) {
      return data;
    }
    GMimeStream* src = g_mime_data_wrapper_get_stream(w);
    if (src == nullptr) {
      return data;
    }
    g_mime_stream_reset(src);
    gobject_ptr<GMimeStream> filtered(g_mime_stream_filter_new(src));
    GMimeContentEncoding enc = g_mime_data_wrapper_get_encoding(w);
    if (enc == GMIME_CONTENT_ENCODING_BASE64 || enc == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
        enc == GMIME_CONTENT_ENCODING_UUENCODE) {
      gobject_ptr<GMimeFilter> f(g_mime_filter_basic_new(enc, FALSE));
      g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered.get()), f.get());
    }
    std::array<char, 16384> buf;
    while (data.size() <= cap) {
      gssize n = g_mime_stream_read(filtered.get(), buf.data(), buf.size());
      if (n <= 0) {
        break;
      }
      data.append(buf.data(), static_cast<std::size_t>(n));
    }
    if (data.size() > cap) {
      more = true;
      data.resize(cap);
    }
    return data;
  }

  void add_attachment(GMimeObject* obj, std::string filename, std::int64_t size,
                      std::string data = {}, bool stored = false,
                      std::optional<std::int64_t> hashed_size = std::nullopt) {
    hashed_sizes.push_back(hashed_size.value_or(size));
    const GMimeContentType* ct = g_mime_object_get_content_type(obj);
    char* mime = ct == nullptr
                     ? nullptr
                     : g_mime_content_type_get_mime_type(const_cast<GMimeContentType*>(ct));
    out.attachments.push_back({sanitize_utf8(filename),
                               lower(mime == nullptr ? "application/octet-stream" : mime), size,
                               stored, std::move(data)});
    g_free(mime);
  }

  void leaf(GMimePart* part) {
    GMimeObject* obj = GMIME_OBJECT(part);
    if (auto cte = raw_header(obj, "Content-Transfer-Encoding"); cte && !cte->empty()) {
      if (g_mime_content_encoding_from_string(cte->c_str()) == GMIME_CONTENT_ENCODING_DEFAULT) {
        note(out, "bogus-transfer-encoding");  // GMime then passes the bytes through as-is
      }
    }
    GMimeContentType* ct = g_mime_object_get_content_type(obj);
    GMimeContentDisposition* disp = g_mime_object_get_content_disposition(obj);
    const char* fname = g_mime_part_get_filename(part);
    bool attachment =
        (disp != nullptr && g_mime_content_disposition_is_attachment(disp)) || fname != nullptr;
    if (g_mime_content_type_is_type(ct, "message", "delivery-status")) {
      out.bounce = true;
    }
    bool is_plain = g_mime_content_type_is_type(ct, "text", "plain");
    bool is_html = g_mime_content_type_is_type(ct, "text", "html");
    if (!attachment && (is_plain || is_html)) {
      std::string& target = is_plain ? plain : html;
      bool& more = is_plain ? plain_more : html_more;
      // HTML shrinks when rendered, so it may read more raw bytes than the text cap.
      std::size_t budget = (is_plain ? limits.max_text_bytes : limits.max_text_bytes * 4);
      if (target.size() >= budget) {
        more = true;
        shown.push_back({is_html, target.size(), target.size(), true});
        return;
      }
      bool cut = false;
      std::string bytes = read_decoded(part, budget - target.size(), cut);
      more = more || cut;
      const char* charset = g_mime_content_type_get_parameter(ct, "charset");
      std::string text = normalise_newlines(to_utf8(bytes, charset == nullptr ? "" : charset));
      if (!target.empty() && !text.empty()) {
        target += '\n';
      }
      shown.push_back({is_html, target.size(), target.size() + text.size(), cut});
      target += text;
      return;
    }
    // Keep the bytes for agents when they fit the caps; otherwise only count them.
    std::size_t budget =
        std::min(limits.max_attachment_bytes,
                 limits.max_attachments_total - std::min(limits.max_attachments_total, kept));
    bool more = false;
    std::string data = budget > 0 ? read_decoded(part, budget, more) : std::string();
    if (budget > 0 && !more) {
      kept += data.size();
      auto size = static_cast<std::int64_t>(data.size());
      add_attachment(obj, fname == nullptr ? "" : fname, size, std::move(data), true);
      return;
    }
    std::int64_t size = 0;
    if (GMimeDataWrapper* w = g_mime_part_get_content(part); w != nullptr) {
      gobject_ptr<GMimeStream> counter(g_mime_stream_null_new());
      gssize n = g_mime_data_wrapper_write_to_stream(w, counter.get());
      size = n < 0 ? 0 : n;
    }
    add_attachment(obj, fname == nullptr ? "" : fname, size);
  }

  void walk(GMimeObject* obj, int depth) {
    if (obj == nullptr) {
      return;
    }
    if (depth > limits.max_depth) {
      note(out, "nesting-too-deep");  // deeper structure is not looked into
      return;
    }
    if (GMIME_IS_MULTIPART(obj)) {
      GMimeMultipart* mp = GMIME_MULTIPART(obj);
      GMimeContentType* ct = g_mime_object_get_content_type(obj);
      if (g_mime_content_type_is_type(ct, "multipart", "report")) {
        const char* rt = g_mime_content_type_get_parameter(ct, "report-type");
        if (rt != nullptr && lower(rt) == "delivery-status") {
          out.bounce = true;
          report = report == nullptr ? mp : report;
        }
      }
      int n = g_mime_multipart_get_count(mp);
      if (n == 0) {
        // Boundary missing or never used: GMime keeps the body as the prologue; it is the only
        // text there is.
        note(out, "multipart-without-parts");
        if (const char* pro = g_mime_multipart_get_prologue(mp); pro != nullptr) {
          std::size_t begin = plain.size();
          plain += normalise_newlines(to_utf8(pro, ""));
          shown.push_back({false, begin, plain.size(), false});
        }
      }
      bool alternative = g_mime_content_type_is_type(ct, "multipart", "alternative");
      std::vector<std::size_t> from;
      for (int i = 0; i < n; ++i) {
        from.push_back(shown.size());
        walk(g_mime_multipart_get_part(mp, i), depth + 1);
      }
      if (alternative && n > 1) {
        from.push_back(shown.size());
        choose_alternative(from);
      }
      return;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
      // A forwarded or bounced message: an attachment, its text is not the customer's. Its
      // bytes are kept as the other attachments' are, under the same caps, so an agent can
      // open the .eml. They are GMime's writing of the message it parsed, which keeps the
      // headers' raw values and each part's content, in the mail's own line ends: the inner
      // message's bytes, except for line ends in a preamble or epilogue.
      GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
      if (inner == nullptr) {
        add_attachment(obj, "", 0);
        return;
      }
      const char* subject = g_mime_message_get_subject(inner);
      std::string name = subject == nullptr ? "message.eml" : std::string(subject) + ".eml";
      auto written = [inner](GMimeStream* to, GMimeNewLineFormat newline) -> std::int64_t {
        GMimeFormatOptions* fo = g_mime_format_options_clone(nullptr);
        g_mime_format_options_set_newline_format(fo, newline);
        gssize n = g_mime_object_write_to_stream(GMIME_OBJECT(inner), fo, to);
        g_mime_format_options_free(fo);
        return n < 0 ? 0 : n;
      };
      // content_hash counts the size in LF line ends (GMime's default), as it did when only the
      // size was listed: the same mail fetched again hashes the same.
      gobject_ptr<GMimeStream> counter(g_mime_stream_null_new());
      std::int64_t hashed = written(counter.get(), GMIME_NEWLINE_FORMAT_UNIX);
      GMimeNewLineFormat newline = crlf ? GMIME_NEWLINE_FORMAT_DOS : GMIME_NEWLINE_FORMAT_UNIX;
      std::int64_t size = hashed;
      if (crlf) {
        gobject_ptr<GMimeStream> dos_counter(g_mime_stream_null_new());
        size = written(dos_counter.get(), newline);
      }
      std::size_t budget =
          std::min(limits.max_attachment_bytes,
                   limits.max_attachments_total - std::min(limits.max_attachments_total, kept));
      if (size > 0 && static_cast<std::size_t>(size) <= budget) {
        gobject_ptr<GMimeStream> mem(g_mime_stream_mem_new());
        written(mem.get(), newline);
        GByteArray* bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem.get()));
        std::string data(reinterpret_cast<const char*>(bytes->data), bytes->len);
        kept += data.size();
        size = static_cast<std::int64_t>(data.size());
        add_attachment(obj, name, size, std::move(data), true, hashed);
        return;
      }
      add_attachment(obj, name, size, {}, false, hashed);
      return;
    }
    if (GMIME_IS_PART(obj)) {
      leaf(GMIME_PART(obj));
    }
  }
};

// The last header of that name, as GMimeMessage takes it (each one it meets replaces the one
// before); nullptr when there is none.
GMimeHeader* last_header(GMimeObject* obj, const char* name) {
  GMimeHeaderList* list = g_mime_object_get_header_list(obj);
  GMimeHeader* found = nullptr;
  int n = list == nullptr ? 0 : g_mime_header_list_get_count(list);
  for (int i = 0; i < n; ++i) {
    GMimeHeader* h = g_mime_header_list_get_header_at(list, i);
    if (g_ascii_strcasecmp(g_mime_header_get_name(h), name) == 0) {
      found = h;
    }
  }
  return found;
}

// The id of the last Message-ID header without its angle brackets, "" if none. Read from the
// raw value, unfolded: g_mime_header_get_value() (and so g_mime_message_get_message_id())
// decodes RFC 2047 encoded words, which RFC 2047 section 5 forbids in a msg-id, and turns
// "=?utf-8?Q?=0D=0A...?=" into a CR LF that would reach our replies' In-Reply-To.
std::string message_id_header(GMimeObject* obj) {
  GMimeHeader* h = last_header(obj, "Message-Id");
  if (h == nullptr || g_mime_header_get_raw_value(h) == nullptr) {
    return {};
  }
  // 8-bit ids as GMime's header decoding read them: UTF-8 when valid, else windows-1252.
  std::string value = to_utf8(unfolded(h), "");
  char* id = g_mime_utils_decode_message_id(value.c_str());
  std::string out = id == nullptr ? "" : id;
  g_free(id);
  return out;
}

// The Date header in Unix ms, parsed as GMimeMessage does; 0 when absent or unreadable.
std::int64_t date_header_ms(GMimeObject* obj) {
  GMimeHeader* h = last_header(obj, "Date");
  const char* value = h == nullptr ? nullptr : g_mime_header_get_value(h);
  GDateTime* date = value == nullptr ? nullptr : g_mime_utils_header_decode_date(value);
  if (date == nullptr) {
    return 0;
  }
  std::int64_t ms = g_date_time_to_unix(date) * 1000 + g_date_time_get_microsecond(date) / 1000;
  g_date_time_unref(date);
  return ms;
}

// Any header besides the Content-* ones, which describe the body: a GMimeMessage's own list
// held only those, and without them there is no message header to read.
bool has_message_header(GMimeObject* obj) {
  GMimeHeaderList* list = g_mime_object_get_header_list(obj);
  int n = list == nullptr ? 0 : g_mime_header_list_get_count(list);
  for (int i = 0; i < n; ++i) {
    if (g_ascii_strncasecmp(g_mime_header_get_name(g_mime_header_list_get_header_at(list, i)),
                            "Content-", 8) != 0) {
      return true;
    }
  }
  return false;
}

// The Message-ID of a text/rfc822-headers part (RFC 6522: the returned message's header
// only), read as the top-level one is.
std::string rfc822_headers_message_id(std::string bytes) {
  bytes += "\r\n\r\n";  // a header block the sender may not have ended
  gobject_ptr<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(bytes.data(), bytes.size()));
  gobject_ptr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
  gobject_ptr<GMimeObject> headers(g_mime_parser_construct_part(parser.get(), nullptr));
  return headers ? message_id_header(headers.get()) : std::string();
}

// One recipient's fields of a message/delivery-status part (RFC 3464 2.3), its values with
// controls as spaces and cut at one header line.
void take_dsn_field(DeliveryReport& r, std::string_view name, std::string_view value) {
  std::string v = trim(controls_to_spaces(sanitize_utf8(value)));
  if (v.size() > kMaxIdBytes) {
    v = std::string(utf8_prefix(v, kMaxIdBytes));
  }
  std::string n = lower(name);
  if (n == "action") {
    r.action = lower(v);
  } else if (n == "status") {
    r.status = std::move(v);
  } else if (n == "diagnostic-code") {
    r.diagnostic = std::move(v);
  } else if (n == "final-recipient") {
    r.recipient = std::move(v);
  }
}

// The fields of a message/delivery-status body: a per-message block, then one block per
// recipient, each a header block (folded lines continue a field). Of the recipients, the first
// whose Action is "failed", else the first with an Action.
void read_dsn_fields(std::string_view body, DeliveryReport& out) {
  DeliveryReport block, first;
  bool chosen = false;
  std::string name, value;
  auto field_done = [&] {
    if (!name.empty()) {
      take_dsn_field(block, name, value);
    }
    name.clear();
    value.clear();
  };
  auto block_done = [&] {
    field_done();
    if (!block.action.empty() && first.action.empty()) {
      first = block;
    }
    if (block.action == "failed" && !chosen) {
      first = block;
      chosen = true;
    }
    block = DeliveryReport{};
  };
  while (!body.empty()) {
    std::size_t eol = body.find('\n');
    std::string_view line = body.substr(0, eol);
    body = eol == std::string_view::npos ? std::string_view() : body.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.find_first_not_of(" \t") == std::string_view::npos) {
      block_done();
    } else if (line.front() == ' ' || line.front() == '\t') {
      value += ' ';
      value.append(line);
    } else if (std::size_t colon = line.find(':'); colon != std::string_view::npos) {
      field_done();
      name = std::string(line.substr(0, colon));
      value = std::string(line.substr(colon + 1));
    }
  }
  block_done();
  first.message_id = std::move(out.message_id);
  out = std::move(first);
}

// What a delivery status notification (RFC 3464) reports: the Message-ID of the message it
// returns (a message/rfc822 part, or text/rfc822-headers when the MTA returned only the
// header) and its recipients' fields (message/delivery-status, or RFC 6533's
// message/global-delivery-status). Only the report's own parts: a bounce forwarded inside
// another message is that message's attachment.
void read_delivery_report(walker& w, GMimeMultipart* mp) {
  constexpr std::size_t kMaxReportPart = 64 * 1024;  // a DSN's fields or a header block
  auto& r = w.out.report;
  int n = g_mime_multipart_get_count(mp);
  for (int i = 0; i < n; ++i) {
    GMimeObject* part = g_mime_multipart_get_part(mp, i);
    GMimeContentType* ct = g_mime_object_get_content_type(part);
    std::string id;
    if (GMIME_IS_MESSAGE_PART(part)) {
      GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(part));
      id = inner == nullptr ? "" : message_id_header(GMIME_OBJECT(inner));
    } else if (GMIME_IS_PART(part) && g_mime_content_type_is_type(ct, "text", "rfc822-headers")) {
      bool more = false;
      id = rfc822_headers_message_id(w.read_decoded(GMIME_PART(part), kMaxReportPart, more));
    } else if (GMIME_IS_PART(part) &&
               (g_mime_content_type_is_type(ct, "message", "delivery-status") ||
                g_mime_content_type_is_type(ct, "message", "global-delivery-status"))) {
      bool more = false;
      read_dsn_fields(w.read_decoded(GMIME_PART(part), kMaxReportPart, more), r);
    }
    if (!id.empty() && r.message_id.empty()) {
      r.message_id = "<" + sanitize_utf8(id) + ">";
    }
  }
}

bool has_header(GMimeObject* obj, const char* name) {
  return raw_header(obj, name).has_value();
}

void detect_flags(GMimeObject* msg, ParsedEmail& out) {
  auto token = [](std::string v) {
    v = lower(trim(v));
    if (auto cut = v.find_first_of(";( "); cut != std::string::npos) {
      v.resize(cut);
    }
    return v;
  };
  // RFC 3834: Auto-Submitted other than "no" is machine-sent; X-Autoreply / X-Autorespond are
  // the older vacation-program headers.
  if (auto v = raw_header(msg, "Auto-Submitted"); v && !token(*v).empty() && token(*v) != "no") {
    out.auto_reply = true;
  }
  for (const char* h : {"X-Autoreply", "X-Autorespond"}) {
    if (auto v = raw_header(msg, h); v && token(*v) != "no") {
      out.auto_reply = true;
    }
  }
  if (auto v = raw_header(msg, "Precedence")) {
    std::string p = token(*v);
    if (p == "bulk" || p == "junk" || p == "list") {
      out.bulk = true;
    } else if (p == "auto_reply") {
      out.auto_reply = true;
    }
  }
  // Decision: List-Id (RFC 2919) and List-Unsubscribe (RFC 2369) are only added by list
  // managers and bulk senders, so they mark `bulk` too; the flag feeds rules, it drops nothing.
  if (has_header(msg, "List-Id") || has_header(msg, "List-Unsubscribe")) {
    out.bulk = true;
  }
  // MAILER-DAEMON sends reports (an old qmail's plain-text bounce among them). Not postmaster:
  // that is the mail system's administrator, a person (RFC 5321 4.5.1), who writes like any
  // customer; a report from postmaster@ is told by its multipart/report or
  // message/delivery-status part (walk()).
  std::string local = lower(out.from.email.substr(0, out.from.email.find('@')));
  if (local == "mailer-daemon") {
    out.bounce = true;
  }
}

std::string hex_sha256(std::string_view data) {
  return hex_lower(sha256(data));
}

// ParsedEmail::content_hash. `attachment_sizes`: walker::hashed_sizes. `body`: the text as
// decoded from the parts, before HTML rendering and the cap on `text`. Each field is preceded by
// its length, so that no two lists of fields make the same input; the body goes in as its own
// digest (no copy of a body of megabytes).
std::string content_hash(const ParsedEmail& e, std::string_view body,
                         const std::vector<std::int64_t>& attachment_sizes) {
  std::size_t first = body.find_first_not_of('\n');
  body = first == std::string_view::npos ? std::string_view() : body.substr(first);
  body = body.substr(0, body.find_last_not_of(" \t\n") + 1);
  std::string in = "switchboard email content v1\n";
  auto field = [&in](std::string_view v) {
    in += std::to_string(v.size());
    in += ':';
    in.append(v);
  };
  field(lower(e.from.email));
  field(std::to_string(e.date_ms));
  field(e.subject);
  field(sha256(body));
  for (std::size_t i = 0; i < e.attachments.size(); ++i) {
    const auto& a = e.attachments[i];
    field(a.content_type);
    field(a.filename);
    field(std::to_string(i < attachment_sizes.size() ? attachment_sizes[i] : a.size));
  }
  return hex_sha256(in);
}

}  // namespace

namespace {

// Cuts `s` to `max` bytes on a UTF-8 boundary; true when it did.
bool cut_to(std::string& s, std::size_t max) {
  if (s.size() <= max) {
    return false;
  }
  s = std::string(utf8_prefix(s, max));
  return true;
}

// A msg-id cut keeps its brackets, so the cut id is still "<...>" (threading.hpp message_id_of
// and the reply's headers expect one). It ends in "~" and 32 hex digits of the SHA-256 of the
// whole id: the cut id is the message's external id (dedupe) and its threading key, so two
// messages whose ids share their first 998 bytes must not share it (the second would be taken
// for a copy of the first when their content is alike, and a reply to it would join the
// first's conversation, another customer's maybe), while the same id always cuts the same way
// (a message fetched again is a duplicate). In-Reply-To and References are cut alike: a reply
// to a message stored under a cut id names it in full, and finds it cut the same way.
bool cut_id(std::string& id) {
  if (id.size() <= kMaxIdBytes) {
    return false;
  }
  bool bracketed = id.front() == '<' && id.back() == '>';
  std::string inner = bracketed ? id.substr(1, id.size() - 2) : id;
  std::string tail = "~" + hex_sha256(inner).substr(0, 32);
  cut_to(inner, kMaxIdBytes - 2 - tail.size());
  id = "<" + inner + tail + ">";
  return true;
}

// The caps of mime.hpp; each cut is named in `cut` once.
void cap(ParsedEmail& e) {
  auto note_cut = [&e](const char* what) {
    if (std::find(e.cut.begin(), e.cut.end(), what) == e.cut.end()) {
      e.cut.emplace_back(what);
    }
  };
  if (e.attachments.size() > kMaxAttachments) {
    e.attachments.resize(kMaxAttachments);
    note_cut("attachments_truncated");
  }
  for (auto& a : e.attachments) {
    if (cut_to(a.filename, kMaxFilenameBytes)) {
      note_cut("filename_truncated");
    }
  }
  if (cut_to(e.subject, kMaxSubjectBytes)) {
    note_cut("subject_truncated");
  }
  bool ids = cut_id(e.message_id);
  if (!e.report.message_id.empty()) {
    ids = cut_id(e.report.message_id) || ids;
  }
  ids = cut_id(e.in_reply_to) || ids;
  for (auto& r : e.references) {
    ids = cut_id(r) || ids;
  }
  if (ids) {
    note_cut("id_truncated");
  }
  if (e.to.size() > kMaxRecipients) {
    e.to.resize(kMaxRecipients);
    note_cut("recipients_truncated");
  }
  if (e.cc.size() > kMaxRecipients - e.to.size()) {
    e.cc.resize(kMaxRecipients - e.to.size());
    note_cut("recipients_truncated");
  }
  for (auto* list : {&e.to, &e.cc}) {
    for (auto& a : *list) {
      bool email = cut_to(a.email, kMaxIdBytes);
      if (cut_to(a.name, kMaxIdBytes) || email) {
        note_cut("recipients_truncated");
      }
    }
  }
}

}  // namespace

std::string synthetic_message_id(std::string_view raw) {
  return "<" + hex_sha256(raw) + "@switchboard.invalid>";
}

ParsedEmail parse_email(std::string_view raw, const ParseLimits& limits) {
  ensure_gmime_initialised();
  ParsedEmail out;
  if (raw.find('\0') != std::string_view::npos) {
    note(out, "nul-bytes");
  }
  parser_options_ptr options(g_mime_parser_options_new());
  const char* fallback[] = {"utf-8", "windows-1252", nullptr};
  g_mime_parser_options_set_fallback_charsets(options.get(), fallback);
  std::string_view entity = skip_mbox_from_lines(raw);
  WarningSink sink{out, static_cast<gint64>(header_block_end(entity))};
  g_mime_parser_options_set_warning_callback(options.get(), on_parser_warning, &sink);

  // g_mime_stream_mem copies the buffer once; with persist-stream (the default) parts refer to
  // ranges of it instead of copying their content again.
  gobject_ptr<GMimeStream> stream(g_mime_stream_mem_new_with_buffer(entity.data(), entity.size()));
  gobject_ptr<GMimeParser> parser(g_mime_parser_new_with_stream(stream.get()));
  g_mime_parser_set_format(parser.get(), GMIME_FORMAT_MESSAGE);
  // The message is built as its top-level MIME entity (whose header list holds every header),
  // not as a GMimeMessage: a GMimeMessage decodes each header as it is added and keeps six
  // address lists (GObjects with change signals) that it builds and tears down again (320k ->
  // 256k instructions per bench_imap message). The few message-level headers we use are read
  // below as GMimeMessage reads them.
  gobject_ptr<GMimeObject> top(g_mime_parser_construct_part(parser.get(), options.get()));

  GMimeObject* msg = top.get();
  if (msg == nullptr || !has_message_header(msg)) {
    note(out, "no-headers");
  }
  if (msg == nullptr) {
    // Nothing GMime recognises as a message: keep the bytes as text.
    std::string text = normalise_newlines(to_utf8(entity.substr(0, limits.max_text_bytes), ""));
    out.truncated = entity.size() > limits.max_text_bytes;
    out.text = std::string(utf8_prefix(text, limits.max_text_bytes));
    out.message_id = synthetic_message_id(raw);
    out.synthetic_message_id = true;
    return out;
  }

  std::string mid = message_id_header(msg);
  if (!mid.empty()) {
    out.message_id = "<" + sanitize_utf8(mid) + ">";
  } else {
    out.message_id = synthetic_message_id(raw);
    out.synthetic_message_id = true;
  }
  if (auto s = raw_header(msg, "Subject")) {
    out.subject = trim(decode_rfc2047(*s));
  }
  if (auto from = parse_addresses(msg, "From", options.get()); !from.empty()) {
    out.from = from.front();
  }
  for (auto& a : parse_addresses(msg, "Reply-To", options.get())) {
    if (a.email.find('@') != std::string::npos) {  // the first usable address
      out.reply_to = std::move(a);
      break;
    }
  }
  out.to = parse_addresses(msg, "To", options.get());
  out.cc = parse_addresses(msg, "Cc", options.get());
  out.date_ms = date_header_ms(msg);
  if (auto irt = parse_ids(msg, "In-Reply-To", options.get()); !irt.empty()) {
    out.in_reply_to = irt.front();
  }
  out.references = parse_ids(msg, "References", options.get());
  detect_flags(msg, out);

  walker w{out, limits, {}, {}};
  std::size_t first_lf = entity.find('\n');
  w.crlf = first_lf == std::string_view::npos || (first_lf > 0 && entity[first_lf - 1] == '\r');
  w.walk(msg, 0);
  if (w.report != nullptr) {
    read_delivery_report(w, w.report);
  }
  if (!out.synthetic_message_id) {  // a synthetic id is a hash of the whole message already
    out.content_hash = content_hash(out, w.plain.empty() ? w.html : w.plain, w.hashed_sizes);
  }
  // Controls as spaces only now, after the hash: it keeps the subject as decoded, so a message
  // stored before this rule hashes the same when fetched again. Our reply copies the subject
  // into its own header, where a CR or LF would start a header line or the body.
  out.subject = trim(controls_to_spaces(out.subject));
  cap(out);
  std::string text;
  bool more = false;
  for (const auto& part : w.shown) {
    std::string piece = part.is_html ? html_to_text(w.text_of(part)) : std::string(w.text_of(part));
    more = more || part.cut;
    if (!text.empty() && !piece.empty()) {
      text += '\n';
    }
    text += piece;
    if (text.size() > limits.max_text_bytes) {
      break;  // cut below; the parts after it are not rendered
    }
  }
  if (text.size() > limits.max_text_bytes) {
    text = std::string(utf8_prefix(text, limits.max_text_bytes));
    more = true;
  }
  // Leading blank lines and trailing whitespace carry nothing; inner layout is kept.
  std::size_t first = text.find_first_not_of("\n");
  std::size_t last = text.find_last_not_of(" \t\n");
  if (first == std::string::npos) {
    text.clear();
  } else {
    text.erase(last + 1);
    text.erase(0, first);
  }
  // Built from to_utf8 / html_to_text output, so valid already; checked as a last defence.
  out.text = is_valid_utf8(text) ? std::move(text) : sanitize_utf8(text);
  out.truncated = more;
  return out;
}

}  // namespace sb::email
