#pragma once
// One IMAP session on Asio + OpenSSL, written as C++20 coroutines with errors as values.
// It knows the protocol steps the poller needs: connect (implicit TLS, STARTTLS or plain to
// loopback), authenticate, SELECT, fetch new UIDs in batches with BODY.PEEK[] (never sets
// \Seen), IDLE. Every read and write has a deadline. The poller loop, cursor storage and
// reconnect back-off are the caller's (see the report in the branch history).
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "channels/email/imap_error.hpp"
#include "channels/email/imap_parser.hpp"

namespace sb::email::imap {

enum class TlsMode { implicit, starttls, none };
enum class AuthMode { password, xoauth2 };

struct ClientOptions {
  std::string host;
  std::uint16_t port = 993;
  TlsMode tls = TlsMode::implicit;
  std::string username;
  std::string password;  // never logged
  AuthMode auth = AuthMode::password;
  // XOAUTH2 bearer token (Gmail, Microsoft 365). The caller reads it from the environment or its
  // file before each connect, so a rotated token is picked up on the next session.
  std::string access_token;  // never logged
  std::chrono::milliseconds connect_timeout{15000};
  std::chrono::milliseconds io_timeout{60000};  // each read or write of a command exchange
  ParserLimits limits;
  // Message bodies one UID FETCH keeps in memory. Past it, the bodies still arriving are read
  // off the wire and dropped, and the batch ends before the first of them (FetchBatch::
  // covered_to): a batch of 200 mails with 25 MB attachments would otherwise hold 5 GB. One
  // message is always kept (up to limits.max_literal). Everything else one command's responses
  // may hold is bounded by twice this plus one literal (errc::too_much_data past it).
  std::size_t max_fetch_bytes = 64u << 20;
};

struct MailboxStatus {
  std::uint64_t uidvalidity = 0;
  std::uint64_t uidnext = 0;  // 0 when the server did not say
  std::uint64_t exists = 0;
};

struct FetchedMessage {
  std::uint64_t uid = 0;
  std::uint64_t size = 0;  // RFC822.SIZE
  std::string raw;
  bool truncated = false;  // larger than limits.max_literal: `raw` holds its first bytes only
};

enum class IdleResult { new_mail, quiet };  // EXISTS seen / the wait ran out

struct FetchBatch {
  std::vector<FetchedMessage> messages;  // ascending UID, every UID > the `after_uid` given
  bool more = false;                     // further new UIDs exist beyond this batch
  // Every UID up to this one is in `messages`, in `vanished`, or does not exist: fetch_range's
  // `hi`, or the UID before the first body dropped over max_fetch_bytes (`more` is then set).
  std::uint64_t covered_to = 0;
  std::uint64_t bytes = 0;  // of the bodies in `messages`
  // UIDs the mailbox listed (UID SEARCH) that the UID FETCH left out, and that a UID SEARCH
  // after it no longer lists: expunged by another client in between (see settle_missing).
  std::vector<std::uint64_t> vanished;
};

// The context must be set up by the caller: ssl::context::tls_client, verify_peer,
// set_default_verify_paths() and/or load_verify_file(ca_file). The client adds SNI and host
// name verification for `options.host`; a mismatch fails the handshake.
class Client {
 public:
  Client(boost::asio::any_io_executor ex, boost::asio::ssl::context& tls, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // TCP connect, greeting, TLS (implicit or STARTTLS, the latter discarding anything buffered
  // before the handshake), CAPABILITY.
  boost::asio::awaitable<boost::system::error_code> connect();
  // AuthMode::password: AUTHENTICATE PLAIN (with SASL-IR when offered), else LOGIN.
  // AuthMode::xoauth2: AUTHENTICATE XOAUTH2 (requires AUTH=XOAUTH2).
  boost::asio::awaitable<boost::system::error_code> login();
  // SELECT (read_only: EXAMINE) of a UTF-8 mailbox name, sent in modified UTF-7. UIDVALIDITY
  // is required: its absence is a protocol error.
  boost::asio::awaitable<boost::system::result<MailboxStatus>> select(std::string_view mailbox,
                                                                      bool read_only = false);
  // UID SEARCH UID after+1:*, then UID FETCH (UID BODY.PEEK[]<0.max_literal> RFC822.SIZE) of
  // at most `max_messages` of them (a larger message comes cut, `truncated`). UIDs <= after_uid
  // are dropped ("n:*" always matches the highest message, RFC 3501 6.4.8).
  // `up_to` (not 0): only UIDs up to it are searched.
  // A listed UID the FETCH leaves out is never passed over in silence (settle_missing): it is
  // fetched once more, then either `vanished` or the fetch fails with errc::message_missing.
  boost::asio::awaitable<boost::system::result<FetchBatch>> fetch_new(std::uint64_t after_uid,
                                                                      std::size_t max_messages,
                                                                      std::uint64_t up_to = 0);
  // UID SEARCH UID lo:hi (hi 0: "*"): the UIDs that exist in that range, ascending.
  // `undeleted`: only messages not flagged \Deleted (UID SEARCH UID lo:hi UNDELETED).
  boost::asio::awaitable<boost::system::result<std::vector<std::uint64_t>>> search_uids(
      std::uint64_t lo, std::uint64_t hi, bool undeleted = false);
  // UID SEARCH UID lo:hi SINCE <day>: the UIDs whose INTERNALDATE is on the day of `unix_ms`
  // (UTC) or later. SEARCH compares dates only, "disregarding time and timezone" (RFC 3501
  // 6.4.4), so the caller filters by the exact INTERNALDATE (internal_dates).
  boost::asio::awaitable<boost::system::result<std::vector<std::uint64_t>>> search_since(
      std::uint64_t lo, std::uint64_t hi, std::int64_t unix_ms);
  // UID FETCH (UID INTERNALDATE) of `uids`: each one the server answered with an INTERNALDATE,
  // as Unix ms (nullopt when it does not parse), in UID order.
  struct Dated {
    std::uint64_t uid = 0;
    std::optional<std::int64_t> unix_ms;
  };
  boost::asio::awaitable<boost::system::result<std::vector<Dated>>> internal_dates(
      const std::vector<std::uint64_t>& uids);
  // UID FETCH lo:hi (UID BODY.PEEK[]<0.max_literal> RFC822.SIZE) without a SEARCH first: for
  // the initial sync of a large mailbox, read range by range below UIDNEXT (missing UIDs return
  // nothing). When the answer has gaps, UID SEARCH UID lo:hi tells UIDs that never existed (or
  // were expunged) from messages the server left out, which go through settle_missing.
  boost::asio::awaitable<boost::system::result<FetchBatch>> fetch_range(std::uint64_t lo,
                                                                        std::uint64_t hi);
  // IDLE (RFC 2177) until the server reports EXISTS or `max_wait` passes (callers re-issue at
  // least every 10 minutes, under the servers' 30-minute timeout).
  // `on_started` runs once the server accepted IDLE (tests use it to deliver mail).
  boost::asio::awaitable<boost::system::result<IdleResult>> idle(
      std::chrono::milliseconds max_wait, std::function<void()> on_started = {});
  // After the commit of a batch (`after = seen | move:Folder`): UID STORE +FLAGS.SILENT (\Seen);
  // UID MOVE when offered (RFC 6851), else UID COPY + \Deleted + UID EXPUNGE (RFC 4315) of
  // exactly those UIDs. Without UIDPLUS the copies stay flagged \Deleted but are not expunged:
  // a plain EXPUNGE would also remove messages other clients flagged.
  boost::asio::awaitable<boost::system::error_code> mark_seen(
      const std::vector<std::uint64_t>& uids);
  boost::asio::awaitable<boost::system::error_code> move(const std::vector<std::uint64_t>& uids,
                                                         std::string_view folder);
  boost::asio::awaitable<boost::system::error_code> logout();
  void close();

  std::size_t max_fetch_bytes() const { return options_.max_fetch_bytes; }
  bool has_capability(std::string_view cap) const;
  const std::vector<std::string>& capability_list() const { return caps_; }
  const MailboxStatus& mailbox() const { return mailbox_; }
  // The UIDs the last UID FETCH named (lowest, highest, how many); count 0 when the last
  // fetch_new / fetch_range failed before its FETCH was sent (in the SEARCH).
  struct FetchSpan {
    std::uint64_t lo = 0;
    std::uint64_t hi = 0;
    std::size_t count = 0;
  };
  const FetchSpan& last_fetch() const { return last_fetch_; }
  // What the server said when the last command failed: the text of its BYE or of the tagged
  // NO / BAD ("FETCH failed: Internal error occurred..."); empty when it said nothing.
  const std::string& last_reply() const { return last_reply_; }
  // Its response code (RFC 5530), upper-cased: "UNAVAILABLE", "SERVERBUG", ...; may be empty.
  const std::string& last_reply_code() const { return last_reply_code_; }
  // `ec` for the log, with what failed when it is the client's last failure: the command or step
  // (never its arguments), and the server's words or the parser's complaint, e.g. "SELECT
  // failed: command rejected (NO): NO [NONEXISTENT] Unknown Mailbox". Else ec.message().
  std::string describe(const boost::system::error_code& ec) const;

 private:
  using responses = std::vector<Response>;
  boost::asio::awaitable<boost::system::result<Response>> read_response(
      std::chrono::milliseconds timeout, bool soft = false);
  boost::asio::awaitable<boost::system::error_code> write(std::string data);
  // Sends "<tag> text", collects untagged responses until the tagged one; each "+"
  // continuation is answered with the next of `answers` (SASL steps), a protocol error when
  // none is left.
  // `held_before`: bytes of bodies the caller holds already for this batch, counted against
  // max_fetch_bytes (the first body is kept whatever).
  boost::asio::awaitable<boost::system::result<responses>> command(
      std::string text, std::vector<std::string> answers = {}, std::size_t held_before = 0);
  // UID SEARCH UID lo:hi (hi 0: "*") and `criteria` (" UNDELETED"): the UIDs, ascending.
  boost::asio::awaitable<boost::system::result<std::vector<std::uint64_t>>> search(
      std::uint64_t lo, std::uint64_t hi, std::string_view criteria);
  boost::asio::awaitable<boost::system::error_code> refresh_capabilities();
  boost::asio::awaitable<boost::system::error_code> handshake();
  void note(const Response& r);      // EXISTS, UIDVALIDITY, UIDNEXT, CAPABILITY wherever they come
  void remember(const Response& r);  // the server's last words (NO, BAD, BYE): last_reply()
  std::string fetch_items() const;
  FetchedMessage make_fetched(std::uint64_t uid, std::optional<std::uint64_t> size,
                              std::string body) const;
  // The messages of a UID FETCH's responses with a UID in lo..hi into `batch`, in UID order,
  // up to the first body dropped over max_fetch_bytes (covered_to, more); body_unavailable when
  // one of them came back NIL, protocol when a body was dropped before any was kept.
  boost::system::error_code take_messages(responses& fetched, std::uint64_t lo, std::uint64_t hi,
                                          FetchBatch& batch) const;
  // `listed`: UIDs known to exist (ascending). Those up to batch.covered_to that the UID FETCH
  // left out are fetched once more; what is still left out is looked up with UID SEARCH.
  boost::asio::awaitable<boost::system::error_code> settle_missing(
      std::vector<std::uint64_t> listed, FetchBatch& batch);
  // Records what failed for describe(): `step` ("SELECT", "connect", ...), then `detail`, else
  // the server's last reply, else the parser's error. Returns ec.
  boost::system::error_code failed(boost::system::error_code ec, std::string_view step,
                                   std::string_view detail = {});
  void arm(std::chrono::milliseconds timeout, bool soft);
  void disarm();
  std::string next_tag();

  ClientOptions options_;
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket> stream_;
  boost::asio::steady_timer deadline_;
  bool tls_active_ = false;
  bool exists_since_search_ = false;  // an EXISTS arrived since the last UID SEARCH began
  bool timed_out_ = false;
  std::uint64_t deadline_gen_ = 0;
  // False once the Client is gone: a deadline handler queued before (the timer expired as the
  // operation finished) must not touch it. The generation alone would be read from freed memory.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::vector<char> read_buf_ = std::vector<char>(64 * 1024);
  ResponseParser parser_;
  std::vector<std::string> caps_;
  MailboxStatus mailbox_;
  std::uint64_t tag_counter_ = 0;
  FetchSpan last_fetch_;
  std::vector<std::uint64_t> dropped_;  // UIDs whose bodies the last command dropped
  std::string last_reply_;
  std::string last_reply_code_;
  boost::system::error_code failure_ec_;  // describe(): the last failure and what it was
  std::string failure_;
};

}  // namespace sb::email::imap
