#include "channels/email/imap_client.hpp"

// GCC 12 reports -Wmismatched-new-delete inside Asio's awaitable frame allocator for some
// coroutines; the frame is allocated and freed by the same awaitable_frame_base operators, so
// the warning is a false positive of GCC 12's coroutine support.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include "channels/email/base64.hpp"
#include "channels/email/imap_utf7.hpp"
#include "core/printable.hpp"

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace sb::email::imap {
namespace asio = boost::asio;
using boost::system::error_code;
using boost::system::result;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// A quoted string when the bytes allow (RFC 3501 quoted: 7-bit, no CR/LF/NUL); else empty.
std::optional<std::string> quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u == 0 || u == '\r' || u == '\n' || u >= 0x80) {
      return std::nullopt;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
    }
    out += c;
  }
  return out + "\"";
}

// "1,2,3,7,9,10" -> "1:3,7,9:10" keeps the command short for large batches.
std::string uid_set(const std::vector<std::uint64_t>& uids) {
  std::string out;
  for (std::size_t i = 0; i < uids.size();) {
    std::size_t j = i;
    while (j + 1 < uids.size() && uids[j + 1] == uids[j] + 1) {
      ++j;
    }
    if (!out.empty()) {
      out += ',';
    }
    out += std::to_string(uids[i]);
    if (j > i) {
      out += ':' + std::to_string(uids[j]);
    }
    i = j + 1;
  }
  return out;
}

// The name of a command for the log: its first word, or two for "UID FETCH" and "AUTHENTICATE
// PLAIN"; never its arguments (a LOGIN's password, an AUTHENTICATE's initial response).
std::string command_name(std::string_view text) {
  std::size_t end = text.find(' ');
  std::string_view first = text.substr(0, end);
  if ((first == "UID" || first == "AUTHENTICATE") && end != std::string_view::npos) {
    end = text.find(' ', end + 1);
  }
  return std::string(text.substr(0, end));
}

// What a response holds in memory, roughly: its strings and nodes.
std::size_t footprint(const Value& v) {
  std::size_t n = sizeof(Value) + v.text.size();
  for (const auto& item : v.items) {
    n += footprint(item);
  }
  return n;
}

std::size_t footprint(const Response& r) {
  std::size_t n = sizeof(Response) + r.tag.size() + r.name.size() + r.code.size() + r.text.size();
  for (const auto* values : {&r.code_args, &r.data}) {
    for (const auto& v : *values) {
      n += footprint(v);
    }
  }
  return n;
}

}  // namespace

// A message larger than the parser's literal cap would fail the whole FETCH on every attempt
// and stop the mailbox for good: ask for at most max_literal bytes of each one (a partial
// fetch, RFC 3501 6.4.5), and mark the ones that came cut.
std::string Client::fetch_items() const {
  return " (UID RFC822.SIZE BODY.PEEK[]<0." + std::to_string(options_.limits.max_literal) + ">)";
}

FetchedMessage Client::make_fetched(std::uint64_t uid, std::optional<std::uint64_t> size,
                                    std::string body) const {
  bool cut = body.size() >= options_.limits.max_literal && size.value_or(0) > body.size();
  std::uint64_t total = size.value_or(body.size());
  return {uid, total, std::move(body), cut};
}

Client::Client(asio::any_io_executor ex, asio::ssl::context& tls, ClientOptions options)
    : options_(std::move(options)), stream_(ex, tls), deadline_(ex), parser_(options_.limits) {}

Client::~Client() {
  *alive_ = false;
}

bool Client::has_capability(std::string_view cap) const {
  return std::find(caps_.begin(), caps_.end(), cap) != caps_.end();
}

std::string Client::describe(const error_code& ec) const {
  if (ec && ec == failure_ec_ && !failure_.empty()) {
    return failure_;
  }
  return ec.message();
}

error_code Client::failed(error_code ec, std::string_view step, std::string_view detail) {
  failure_ec_ = ec;
  failure_ = std::string(step) + " failed: " + ec.message();
  if (!detail.empty()) {
    failure_ += ": " + std::string(detail);
  } else if (!last_reply_.empty()) {
    failure_ += ": \"" + last_reply_ + "\"";
  } else if (ec == errc::protocol && parser_.error()) {
    failure_ += ": " + *parser_.error();
  }
  return ec;
}

void Client::remember(const Response& r) {
  last_reply_ = r.name + (r.code.empty() ? "" : " [" + r.code + "]") + " " + r.text;
  last_reply_code_ = r.code;
}

std::string Client::next_tag() {
  return "sb" + std::to_string(++tag_counter_);
}

void Client::close() {
  error_code ignored;
  deadline_.cancel();
  stream_.next_layer().close(ignored);
}

// Every socket operation runs under a watchdog timer. Hard expiry closes the socket (the
// session is unusable after a half-read response); soft expiry only cancels the pending read,
// which IDLE uses to end its wait and send DONE on the same connection.
void Client::arm(std::chrono::milliseconds timeout, bool soft) {
  timed_out_ = false;
  std::uint64_t gen = ++deadline_gen_;
  deadline_.expires_after(timeout);
  deadline_.async_wait([this, soft, gen, alive = alive_](error_code ec) {
    if (ec || !*alive || gen != deadline_gen_) {
      return;  // cancelled, or the operation finished in time, or the Client is gone
    }
    timed_out_ = true;
    error_code ignored;
    if (soft) {
      stream_.next_layer().cancel(ignored);
    } else {
      stream_.next_layer().close(ignored);
    }
  });
}

void Client::disarm() {
  ++deadline_gen_;
  deadline_.cancel();
}

asio::awaitable<result<Response>> Client::read_response(std::chrono::milliseconds timeout,
                                                        bool soft) {
  while (true) {
    if (auto r = parser_.next()) {
      co_return std::move(*r);
    }
    if (parser_.error()) {
      co_return make_error_code(errc::protocol);
    }
    arm(timeout, soft);
    auto buf = asio::buffer(read_buf_);
    auto [ec, n] = tls_active_ ? co_await stream_.async_read_some(buf, use_tuple)
                               : co_await stream_.next_layer().async_read_some(buf, use_tuple);
    disarm();
    if (timed_out_) {
      ec = asio::error::timed_out;
    }
    if (ec) {
      co_return ec;
    }
    parser_.feed(std::string_view(read_buf_.data(), n));
  }
}

asio::awaitable<error_code> Client::write(std::string data) {
  arm(options_.io_timeout, false);
  auto [ec, n] =
      tls_active_ ? co_await asio::async_write(stream_, asio::buffer(data), use_tuple)
                  : co_await asio::async_write(stream_.next_layer(), asio::buffer(data), use_tuple);
  disarm();
  co_return timed_out_ ? error_code(asio::error::timed_out) : ec;
}

void Client::note(const Response& r) {
  if (r.name == "EXISTS" && r.number) {
    // Only growth means new mail (some servers repeat EXISTS unchanged); EXPUNGE shrinks it.
    exists_since_search_ = exists_since_search_ || *r.number > mailbox_.exists;
    mailbox_.exists = *r.number;
  } else if (r.name == "EXPUNGE" && r.number && mailbox_.exists > 0) {
    --mailbox_.exists;
  } else if (r.code == "UIDVALIDITY" && !r.code_args.empty()) {
    mailbox_.uidvalidity = r.code_args[0].number;
  } else if (r.code == "UIDNEXT" && !r.code_args.empty()) {
    mailbox_.uidnext = r.code_args[0].number;
  }
  if (auto c = capabilities(r); !c.empty()) {
    caps_ = std::move(c);
  }
}

asio::awaitable<result<Client::responses>> Client::command(std::string text,
                                                           std::vector<std::string> answers,
                                                           std::size_t held_before) {
  std::string tag = next_tag();
  const std::string name = command_name(text);
  last_reply_.clear();
  last_reply_code_.clear();
  failure_.clear();
  if (auto ec = co_await write(tag + " " + text + "\r\n")) {
    co_return failed(ec, name);
  }
  responses untagged;
  dropped_.clear();
  std::size_t held = held_before;  // what `untagged` holds (footprint), and the caller's bodies
  const std::size_t held_cap = 2 * options_.max_fetch_bytes + options_.limits.max_literal;
  bool kept_body = false;
  bool bye = false;
  std::size_t next_answer = 0;
  while (true) {
    auto r = co_await read_response(options_.io_timeout);
    if (!r) {
      co_return failed(bye ? make_error_code(errc::server_bye) : r.error(), name);
    }
    note(*r);
    if (r->type == ResponseType::continuation) {
      if (next_answer == answers.size()) {
        co_return failed(make_error_code(errc::protocol), name,
                         "the server asked for more (\"+ " + r->text + "\") than there is to send");
      }
      if (auto ec = co_await write(std::move(answers[next_answer++]) + "\r\n")) {
        co_return failed(ec, name);
      }
      continue;
    }
    if (r->type == ResponseType::tagged) {
      if (r->tag != tag) {
        co_return failed(make_error_code(errc::protocol), name,
                         "answered with tag " + r->tag + " instead of " + tag);
      }
      if (r->name == "OK") {
        co_return untagged;
      }
      remember(*r);
      co_return failed(make_error_code(r->name == "NO" ? errc::rejected : errc::bad_command), name);
    }
    if (r->name == "BYE") {
      bye = true;
      remember(*r);
    }
    // Bodies past max_fetch_bytes are dropped as they arrive (the caller fetches them again in
    // a later batch), once one is kept: a batch always moves on; a NIL body is kept, it fails
    // the fetch.
    if (r->name == "FETCH" && held >= options_.max_fetch_bytes && kept_body) {
      if (auto f = as_fetch(std::move(*r)); f && f->body && !f->body_nil) {
        if (f->uid) {
          dropped_.push_back(*f->uid);
          held += sizeof(std::uint64_t);
        }
        continue;
      }
    }
    kept_body = kept_body || carries_body(*r);
    held += footprint(*r);
    if (held > held_cap + held_before) {
      // A server that never stops talking.
      co_return failed(make_error_code(errc::too_much_data), name,
                       "more than " + std::to_string(held_cap) + " bytes of responses");
    }
    untagged.push_back(std::move(*r));
  }
}

asio::awaitable<error_code> Client::handshake() {
  // SNI plus RFC 6125 host name check; a mismatch fails the handshake.
  SSL_set_tlsext_host_name(stream_.native_handle(), options_.host.c_str());
  stream_.set_verify_mode(asio::ssl::verify_peer);
  stream_.set_verify_callback(asio::ssl::host_name_verification(options_.host));
  arm(options_.io_timeout, false);
  auto [ec] = co_await stream_.async_handshake(asio::ssl::stream_base::client, use_tuple);
  disarm();
  if (timed_out_) {
    ec = asio::error::timed_out;
  }
  tls_active_ = !ec;
  co_return ec;
}

asio::awaitable<error_code> Client::connect() {
  failure_.clear();
  // The resolver is not the socket, so the watchdog cannot reach it: a timer of its own
  // cancels a DNS lookup that hangs. Its handler may already be queued when the lookup ends,
  // and run once this frame (and the resolver) is gone: `resolving` tells it not to touch it.
  asio::ip::tcp::resolver resolver(stream_.get_executor());
  asio::steady_timer resolve_deadline(stream_.get_executor(), options_.connect_timeout);
  auto resolving = std::make_shared<bool>(true);
  resolve_deadline.async_wait([&resolver, resolving](error_code ec) {
    if (!ec && *resolving) {
      resolver.cancel();
    }
  });
  auto [rec, endpoints] =
      co_await resolver.async_resolve(options_.host, std::to_string(options_.port), use_tuple);
  *resolving = false;
  resolve_deadline.cancel();
  if (rec) {
    co_return failed(
        rec == asio::error::operation_aborted ? error_code(asio::error::timed_out) : rec,
        "looking up " + options_.host);
  }
  if (options_.tls == TlsMode::none) {
    for (const auto& e : endpoints) {
      if (!e.endpoint().address().is_loopback()) {
        co_return failed(make_error_code(errc::tls_required), "connect",
                         options_.host + " is " + e.endpoint().address().to_string());
      }
    }
  }
  arm(options_.connect_timeout, false);
  auto [cec, ep] = co_await asio::async_connect(stream_.next_layer(), endpoints, use_tuple);
  disarm();
  if (timed_out_) {
    cec = asio::error::timed_out;
  }
  if (cec) {
    co_return failed(cec, "connecting to " + options_.host + ":" + std::to_string(options_.port));
  }
  if (options_.tls == TlsMode::implicit) {
    if (auto ec = co_await handshake()) {
      co_return failed(ec, "TLS handshake");
    }
  }
  // RFC 3501 7.1 / RFC 9051 7.1: the greeting is "* OK", "* PREAUTH" or "* BYE". Anything else
  // is most likely another service on this port (SMTP's "220 ...", SSH, an HTTP proxy): the
  // error quotes what it said (printable, cut), so the log names the mistake.
  auto greeting = co_await read_response(options_.io_timeout);
  if (!greeting) {
    if (greeting.error() == errc::protocol && parser_.error()) {
      co_return failed(greeting.error(), "greeting",
                       "not an IMAP greeting: \"" + printable(parser_.error_head(), 120) + "\" (" +
                           *parser_.error() + ")");
    }
    co_return failed(greeting.error(), "greeting");
  }
  if (greeting->name == "BYE") {
    remember(*greeting);
    co_return failed(make_error_code(errc::server_bye), "greeting");
  }
  if (greeting->type != ResponseType::untagged ||
      (greeting->name != "OK" && greeting->name != "PREAUTH")) {
    std::string said = greeting->type == ResponseType::tagged     ? greeting->tag + " "
                       : greeting->type == ResponseType::untagged ? "* "
                                                                  : "+ ";
    said += greeting->name.empty() ? greeting->text : greeting->name + " " + greeting->text;
    co_return failed(make_error_code(errc::protocol), "greeting",
                     "not an IMAP greeting (\"* OK ...\"): \"" + printable(said, 120) + "\"");
  }
  note(*greeting);
  if (options_.tls == TlsMode::starttls) {
    if (caps_.empty()) {
      if (auto ec = co_await refresh_capabilities()) {
        co_return ec;
      }
    }
    if (!has_capability("STARTTLS")) {
      co_return failed(make_error_code(errc::capability_missing), "STARTTLS",
                       "the server does not offer STARTTLS (tls = \"starttls\")");
    }
    auto r = co_await command("STARTTLS");
    if (!r) {
      co_return r.error();
    }
    // Anything the server sent after its OK but before the handshake could be injected by a
    // man in the middle (CVE-2011-0411 class): drop it, and forget the pre-TLS capabilities.
    parser_.reset();
    caps_.clear();
    if (auto ec = co_await handshake()) {
      co_return failed(ec, "TLS handshake");
    }
  }
  if (caps_.empty()) {
    co_return co_await refresh_capabilities();
  }
  co_return error_code{};
}

asio::awaitable<error_code> Client::refresh_capabilities() {
  auto r = co_await command("CAPABILITY");
  co_return r ? error_code{} : r.error();
}

asio::awaitable<error_code> Client::login() {
  result<responses> r = make_error_code(errc::capability_missing);
  std::string_view step = "LOGIN";
  if (options_.auth == AuthMode::xoauth2) {
    step = "AUTHENTICATE XOAUTH2";
    if (!has_capability("AUTH=XOAUTH2")) {
      co_return failed(make_error_code(errc::capability_missing), step,
                       "the server does not offer AUTH=XOAUTH2 (auth = \"xoauth2\")");
    }
    // https://developers.google.com/gmail/imap/xoauth2-protocol: on a bad token the server
    // sends a "+ <base64 JSON>" challenge and expects an empty line before its tagged NO.
    std::string ir = base64("user=" + options_.username +
                            "\x01"
                            "auth=Bearer " +
                            options_.access_token + "\x01\x01");
    // (The answers are built outside the co_await: GCC 12 rejects initializer lists there.)
    std::vector<std::string> answers;
    std::string cmd = "AUTHENTICATE XOAUTH2";
    if (has_capability("SASL-IR")) {
      cmd += " " + ir;
    } else {
      answers.push_back(ir);
    }
    answers.emplace_back();
    r = co_await command(std::move(cmd), std::move(answers));
  } else if (has_capability("AUTH=PLAIN")) {
    step = "AUTHENTICATE PLAIN";
    // RFC 4616: authzid NUL authcid NUL passwd; RFC 4959 SASL-IR sends it with the command.
    std::string ir = base64(std::string(1, '\0') + options_.username + '\0' + options_.password);
    if (has_capability("SASL-IR")) {
      r = co_await command("AUTHENTICATE PLAIN " + ir);
    } else {
      std::vector<std::string> answers;
      answers.push_back(ir);
      r = co_await command("AUTHENTICATE PLAIN", std::move(answers));
    }
  } else if (!has_capability("LOGINDISABLED")) {
    auto user = quoted(options_.username);
    auto pass = quoted(options_.password);
    if (!user || !pass) {
      // LOGIN would need a literal, and servers differ in the charset they read it in.
      co_return failed(make_error_code(errc::capability_missing), step,
                       "the user name or password is not plain ASCII (or holds CR, LF or NUL): "
                       "only AUTHENTICATE PLAIN can send it, and the server does not offer "
                       "AUTH=PLAIN");
    }
    r = co_await command("LOGIN " + *user + " " + *pass);
  } else {
    co_return failed(make_error_code(errc::capability_missing), step,
                     "the server offers neither AUTH=PLAIN nor LOGIN (LOGINDISABLED; TLS first?)");
  }
  if (!r) {
    auto ec = r.error();
    co_return ec == errc::rejected ? failed(make_error_code(errc::auth_failed), step) : ec;
  }
  // Capabilities change after login; Dovecot sends them in the tagged OK, others do not.
  if (!has_capability("IMAP4REV1") || !has_capability("IDLE")) {
    caps_.clear();
    co_return co_await refresh_capabilities();
  }
  co_return error_code{};
}

asio::awaitable<result<MailboxStatus>> Client::select(std::string_view mailbox, bool read_only) {
  auto encoded = encode_mailbox_name(mailbox);
  auto name = encoded ? quoted(*encoded) : std::nullopt;
  if (!name) {
    co_return failed(make_error_code(errc::bad_command), read_only ? "EXAMINE" : "SELECT",
                     "the mailbox name is not valid UTF-8");
  }
  mailbox_ = {};
  auto r = co_await command((read_only ? "EXAMINE " : "SELECT ") + *name);
  if (!r) {
    co_return r.error();
  }
  if (mailbox_.uidvalidity == 0) {  // RFC 3501 requires UIDVALIDITY in SELECT
    co_return failed(make_error_code(errc::protocol), read_only ? "EXAMINE" : "SELECT",
                     "no UIDVALIDITY in the answer (RFC 3501 6.3.1 requires it: without it no "
                     "UID can be kept as the mailbox's cursor)");
  }
  co_return mailbox_;
}

asio::awaitable<result<std::vector<std::uint64_t>>> Client::search_uids(std::uint64_t lo,
                                                                        std::uint64_t hi,
                                                                        bool undeleted) {
  co_return co_await search(lo, hi, undeleted ? " UNDELETED" : "");
}

asio::awaitable<result<std::vector<std::uint64_t>>> Client::search_since(std::uint64_t lo,
                                                                         std::uint64_t hi,
                                                                         std::int64_t unix_ms) {
  co_return co_await search(lo, hi, " SINCE " + search_date(unix_ms));
}

asio::awaitable<result<std::vector<Client::Dated>>> Client::internal_dates(
    const std::vector<std::uint64_t>& uids) {
  std::vector<Dated> out;
  if (uids.empty()) {
    co_return out;
  }
  auto fetched = co_await command("UID FETCH " + uid_set(uids) + " (UID INTERNALDATE)");
  if (!fetched) {
    co_return fetched.error();
  }
  for (const auto& r : *fetched) {
    auto f = as_fetch(r);
    if (!f || !f->uid || !f->internal_date) {
      continue;  // a FETCH of flags another client changed: not an answer
    }
    out.push_back({*f->uid, parse_internal_date(*f->internal_date)});
  }
  std::sort(out.begin(), out.end(), [](const Dated& a, const Dated& b) { return a.uid < b.uid; });
  co_return out;
}

asio::awaitable<result<std::vector<std::uint64_t>>> Client::search(std::uint64_t lo,
                                                                   std::uint64_t hi,
                                                                   std::string_view criteria) {
  std::string range = std::to_string(lo) + ":" + (hi == 0 ? "*" : std::to_string(hi));
  auto search = co_await command("UID SEARCH UID " + range + std::string(criteria));
  if (!search) {
    co_return search.error();
  }
  std::vector<std::uint64_t> uids;
  for (const auto& r : *search) {
    if (r.name != "SEARCH") {
      continue;
    }
    for (const auto& v : r.data) {
      // "n:*" always matches the highest message, even below n (RFC 3501 6.4.8).
      if (v.kind == Value::Kind::number && v.number >= lo && (hi == 0 || v.number <= hi)) {
        uids.push_back(v.number);
      }
    }
  }
  std::sort(uids.begin(), uids.end());
  uids.erase(std::unique(uids.begin(), uids.end()), uids.end());
  co_return uids;
}

asio::awaitable<result<FetchBatch>> Client::fetch_new(std::uint64_t after_uid,
                                                      std::size_t max_messages,
                                                      std::uint64_t up_to) {
  FetchBatch batch;
  last_fetch_ = {};
  exists_since_search_ = false;  // an EXISTS from here on may be mail this search misses
  auto found = co_await search_uids(after_uid + 1, up_to);
  if (!found) {
    co_return found.error();
  }
  std::vector<std::uint64_t> uids = std::move(*found);
  if (uids.empty()) {
    co_return batch;
  }
  if (max_messages > 0 && uids.size() > max_messages) {
    uids.resize(max_messages);
    batch.more = true;
  }
  last_fetch_ = {uids.front(), uids.back(), uids.size()};
  auto fetched = co_await command("UID FETCH " + uid_set(uids) + fetch_items());
  if (!fetched) {
    co_return fetched.error();
  }
  if (auto ec = take_messages(*fetched, after_uid + 1, uids.back(), batch)) {
    co_return failed(ec, "UID FETCH");
  }
  if (auto ec = co_await settle_missing(std::move(uids), batch)) {
    co_return ec;
  }
  co_return batch;
}

asio::awaitable<result<FetchBatch>> Client::fetch_range(std::uint64_t lo, std::uint64_t hi) {
  FetchBatch batch;
  last_fetch_ = {};
  if (lo == 0 || hi < lo) {
    co_return batch;
  }
  last_fetch_ = {lo, hi, static_cast<std::size_t>(hi - lo + 1)};
  std::string cmd = "UID FETCH " + std::to_string(lo) + ":" + std::to_string(hi) + fetch_items();
  auto fetched = co_await command(std::move(cmd));
  if (!fetched) {
    co_return fetched.error();
  }
  if (auto ec = take_messages(*fetched, lo, hi, batch)) {
    co_return failed(ec, "UID FETCH");
  }
  // A range may name UIDs that never existed, and those are left out without a word (RFC 3501
  // 6.4.8, RFC 9051 6.4.9): only when there are gaps does UID SEARCH tell them apart from
  // messages the server left out (one round trip, answered with this range's UIDs only).
  if (batch.messages.size() < batch.covered_to - lo + 1) {
    auto listed = co_await search_uids(lo, batch.covered_to);
    if (!listed) {
      co_return listed.error();
    }
    if (auto ec = co_await settle_missing(std::move(*listed), batch)) {
      co_return ec;
    }
  }
  co_return batch;
}

// A UID FETCH answered OK may leave out a message UID SEARCH listed, for two reasons:
// - another client expunged it in between: a UID that no longer exists is ignored without an
//   error (RFC 3501 6.4.8, RFC 9051 6.4.9), and the EXPUNGE may come during the UID FETCH or
//   later (RFC 3501 7.4.1, RFC 9051 7.5.1); some servers keep it fetchable until then, others
//   answer without it (RFC 2180 4.1);
// - the server could not read it and said nothing (a broken store, a proxy that skips it).
// Passing over such a UID lost the message for good. So the UIDs left out are fetched once more
// (a passing hiccup), and what is still left out is looked up with UID SEARCH: no longer listed
// is expunged (`vanished`, the caller logs it); still listed fails the fetch with
// errc::message_missing, and the poller's retries across sessions and its placeholder
// (unfetchable.hpp) take it from there, as for a FETCH the server refuses.
asio::awaitable<error_code> Client::settle_missing(std::vector<std::uint64_t> listed,
                                                   FetchBatch& batch) {
  auto left_out = [&batch](const std::vector<std::uint64_t>& uids) {
    std::vector<std::uint64_t> out;
    for (std::uint64_t uid : uids) {
      auto at =
          std::lower_bound(batch.messages.begin(), batch.messages.end(), uid,
                           [](const FetchedMessage& m, std::uint64_t u) { return m.uid < u; });
      if (uid <= batch.covered_to && (at == batch.messages.end() || at->uid != uid)) {
        out.push_back(uid);
      }
    }
    return out;
  };
  std::vector<std::uint64_t> missing = left_out(listed);
  if (missing.empty()) {
    co_return error_code{};
  }
  // Counted with the bodies the batch holds already: its memory stays near max_fetch_bytes.
  auto again = co_await command("UID FETCH " + uid_set(missing) + fetch_items(), {}, batch.bytes);
  if (!again) {
    co_return again.error();
  }
  FetchBatch retried;
  if (auto ec = take_messages(*again, missing.front(), missing.back(), retried)) {
    co_return failed(ec, "UID FETCH");
  }
  for (auto& m : retried.messages) {
    batch.messages.push_back(std::move(m));
  }
  std::sort(batch.messages.begin(), batch.messages.end(),
            [](const auto& a, const auto& b) { return a.uid < b.uid; });
  if (retried.covered_to < missing.back()) {
    // Bodies dropped over max_fetch_bytes: the batch ends before the first of them.
    batch.covered_to = std::min(batch.covered_to, retried.covered_to);
    std::erase_if(batch.messages, [&batch](const auto& m) { return m.uid > batch.covered_to; });
    batch.more = true;
  }
  batch.bytes = 0;
  for (const auto& m : batch.messages) {
    batch.bytes += m.raw.size();
  }
  missing = left_out(missing);
  if (missing.empty()) {
    co_return error_code{};
  }
  auto still = co_await search_uids(missing.front(), missing.back());
  if (!still) {
    co_return still.error();
  }
  for (std::uint64_t uid : missing) {
    if (std::binary_search(still->begin(), still->end(), uid)) {
      co_return failed(
          make_error_code(errc::message_missing), "UID FETCH",
          "UID " + std::to_string(uid) + " was left out twice, and UID SEARCH still lists it");
    }
    batch.vanished.push_back(uid);
  }
  co_return error_code{};
}

error_code Client::take_messages(responses& fetched, std::uint64_t lo, std::uint64_t hi,
                                 FetchBatch& batch) const {
  for (auto& r : fetched) {
    auto f = as_fetch(std::move(r));
    if (!f || !f->uid || *f->uid < lo || *f->uid > hi) {
      continue;
    }
    // A NIL body is the server failing to give this message (RFC 3501 allows NIL there):
    // stored as an empty mail it would also make every later NIL a duplicate of it (same
    // synthetic id), so it fails the fetch, and the poller's retries and give-up handle it
    // like any other.
    if (f->body_nil) {
      return make_error_code(errc::body_unavailable);
    }
    // FETCH responses carrying only FLAGS (another client changed them) have no body.
    if (f->body) {
      batch.messages.push_back(make_fetched(*f->uid, f->rfc822_size, std::move(*f->body)));
    }
  }
  std::sort(batch.messages.begin(), batch.messages.end(),
            [](const auto& a, const auto& b) { return a.uid < b.uid; });
  batch.covered_to = hi;
  // Over max_fetch_bytes: the batch ends before the first dropped body. Servers answer in UID
  // order, so what was kept lies below it; a server that answered the other way round kept
  // nothing below it, and fails the fetch (the poller narrows down to one UID at a time).
  std::uint64_t first_dropped = 0;
  for (std::uint64_t uid : dropped_) {
    if (uid >= lo && uid <= hi && (first_dropped == 0 || uid < first_dropped)) {
      first_dropped = uid;
    }
  }
  if (first_dropped != 0) {
    std::erase_if(batch.messages, [first_dropped](const auto& m) { return m.uid > first_dropped; });
    if (batch.messages.empty()) {
      return make_error_code(errc::protocol);
    }
    batch.covered_to = first_dropped - 1;
    batch.more = true;
  }
  for (const auto& m : batch.messages) {
    batch.bytes += m.raw.size();
  }
  return {};
}

asio::awaitable<result<IdleResult>> Client::idle(std::chrono::milliseconds max_wait,
                                                 std::function<void()> on_started) {
  failure_.clear();
  last_reply_.clear();
  last_reply_code_.clear();
  if (!has_capability("IDLE")) {
    co_return failed(make_error_code(errc::capability_missing), "IDLE",
                     "the server does not offer IDLE");
  }
  // An EXISTS that came with an earlier response (unsolicited, RFC 3501 section 7) is not
  // repeated when IDLE starts: mail delivered while the last UID SEARCH ran would otherwise wait
  // out the whole IDLE period.
  if (exists_since_search_) {
    exists_since_search_ = false;
    if (on_started) {
      on_started();
    }
    co_return IdleResult::new_mail;
  }
  std::string tag = next_tag();
  if (auto ec = co_await write(tag + " IDLE\r\n")) {
    co_return failed(ec, "IDLE");
  }
  bool new_mail = false;
  while (true) {  // until the "+ idling" continuation
    auto r = co_await read_response(options_.io_timeout);
    if (!r) {
      co_return failed(r.error(), "IDLE");
    }
    note(*r);
    if (r->type == ResponseType::continuation) {
      break;
    }
    if (r->type == ResponseType::tagged) {
      remember(*r);
      co_return failed(make_error_code(r->name == "NO" ? errc::rejected : errc::bad_command),
                       "IDLE");
    }
    new_mail = new_mail || r->name == "EXISTS";
  }
  if (on_started) {
    on_started();
  }
  auto until = std::chrono::steady_clock::now() + max_wait;
  while (!new_mail) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      break;
    }
    auto r = co_await read_response(left, /*soft=*/true);
    if (!r) {
      if (r.error() == asio::error::timed_out) {
        break;  // our own IDLE period is over; the connection is fine
      }
      co_return failed(r.error(), "IDLE");
    }
    note(*r);
    if (r->name == "BYE") {
      remember(*r);
      co_return failed(make_error_code(errc::server_bye), "IDLE");
    }
    new_mail = r->name == "EXISTS";
  }
  if (auto ec = co_await write("DONE\r\n")) {
    co_return failed(ec, "IDLE (DONE)");
  }
  while (true) {
    auto r = co_await read_response(options_.io_timeout);
    if (!r) {
      co_return failed(r.error(), "IDLE (DONE)");
    }
    note(*r);
    if (r->type == ResponseType::tagged && r->tag == tag) {
      if (r->name != "OK") {
        remember(*r);
        co_return failed(make_error_code(r->name == "NO" ? errc::rejected : errc::bad_command),
                         "IDLE (DONE)");
      }
      co_return new_mail ? IdleResult::new_mail : IdleResult::quiet;
    }
    new_mail = new_mail || r->name == "EXISTS";
  }
}

asio::awaitable<error_code> Client::mark_seen(const std::vector<std::uint64_t>& uids) {
  if (uids.empty()) {
    co_return error_code{};
  }
  auto r = co_await command("UID STORE " + uid_set(uids) + " +FLAGS.SILENT (\\Seen)");
  co_return r ? error_code{} : r.error();
}

asio::awaitable<error_code> Client::move(const std::vector<std::uint64_t>& uids,
                                         std::string_view folder) {
  auto encoded = encode_mailbox_name(folder);
  auto name = encoded ? quoted(*encoded) : std::nullopt;
  if (!name) {
    co_return failed(make_error_code(errc::bad_command), "move",
                     "the folder name is not valid UTF-8");
  }
  if (uids.empty()) {
    co_return error_code{};
  }
  std::string set = uid_set(uids);
  if (has_capability("MOVE")) {
    auto r = co_await command("UID MOVE " + set + " " + *name);
    co_return r ? error_code{} : r.error();
  }
  if (auto r = co_await command("UID COPY " + set + " " + *name); !r) {
    co_return r.error();
  }
  if (auto r = co_await command("UID STORE " + set + " +FLAGS.SILENT (\\Deleted)"); !r) {
    co_return r.error();
  }
  if (!has_capability("UIDPLUS")) {
    co_return error_code{};
  }
  auto r = co_await command("UID EXPUNGE " + set);
  co_return r ? error_code{} : r.error();
}

asio::awaitable<error_code> Client::logout() {
  auto r = co_await command("LOGOUT");
  close();
  co_return r ? error_code{} : r.error();
}

}  // namespace sb::email::imap
