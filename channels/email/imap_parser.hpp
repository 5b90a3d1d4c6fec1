#pragma once
// IMAP4rev1 (RFC 3501) server responses, incremental and without a socket: feed() whatever
// bytes arrived, next() hands out each complete response. Literals {n} and LITERAL+ {n+}
// (RFC 7888) and literal8 ~{n} (RFC 3516) are taken by byte count, so message bodies are
// binary-safe; untagged EXISTS / EXPUNGE / RECENT may arrive between any two responses and
// are ordinary responses here. Limits on literal size, nesting depth and line length turn a
// hostile or broken server into an error value, never a crash or unbounded memory.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sb::email::imap {

struct Value {
  enum class Kind { atom, number, string, nil, list };
  Kind kind = Kind::nil;
  std::string text;          // atom (case kept), string bytes (quoted or literal), number digits
  std::uint64_t number = 0;  // Kind::number
  std::vector<Value> items;  // Kind::list
};

enum class ResponseType { tagged, untagged, continuation };

struct Response {
  ResponseType type = ResponseType::untagged;
  std::string tag;                      // tagged only
  std::optional<std::uint64_t> number;  // "* 23 EXISTS" -> 23
  std::string
      name;  // upper-cased: OK NO BAD PREAUTH BYE EXISTS EXPUNGE RECENT FETCH CAPABILITY ...
  std::string code;  // response code, upper-cased: "UIDVALIDITY" from "[UIDVALIDITY 3857529045]"
  std::vector<Value> code_args;
  std::string text;         // human-readable text (status responses, continuation)
  std::vector<Value> data;  // everything else: CAPABILITY atoms, the FETCH list, SEARCH numbers

  bool is_status() const;  // OK NO BAD PREAUTH BYE
};

// The usual FETCH attributes of one message.
struct FetchData {
  std::uint64_t seq = 0;
  std::optional<std::uint64_t> uid;
  std::optional<std::vector<std::string>> flags;
  std::optional<std::uint64_t> rfc822_size;
  std::optional<std::string> body;  // BODY[] / BODY.PEEK[] answer / BINARY[]; NIL -> empty
  bool body_nil = false;            // the body was NIL: the server cannot give the content
  std::optional<std::string> internal_date;
};
std::optional<FetchData> as_fetch(const Response& r);
std::optional<FetchData> as_fetch(Response&& r);  // moves the body out instead of copying it
// Whether a FETCH response carries a message body (not NIL), without copying it.
bool carries_body(const Response& r);

// An INTERNALDATE (RFC 3501 date-time: "17-Jul-1996 02:44:25 -0700", the day space-padded or
// not) as Unix ms; nullopt when it is not one.
std::optional<std::int64_t> parse_internal_date(std::string_view text);
// The day of `unix_ms` (UTC) as a SEARCH date (RFC 3501 date: "2-Dec-2026").
std::string search_date(std::int64_t unix_ms);

// Capability names from "* CAPABILITY ..." or "[CAPABILITY ...]", upper-cased.
std::vector<std::string> capabilities(const Response& r);

struct ParserLimits {
  std::size_t max_literal = 64u << 20;  // one literal
  std::size_t max_line = 1u << 20;      // non-literal bytes of one response
  // All bytes of one response, literals included. A FETCH we send asks for one body literal of
  // at most max_literal; a server that sends many literals in one response (each under
  // max_literal) would otherwise be buffered without bound before the response is complete.
  // 0: max_literal + max_line.
  std::size_t max_response = 0;
  int max_depth = 64;  // nested lists / brackets
};

class ResponseParser {
 public:
  explicit ResponseParser(ParserLimits limits = {});

  void feed(std::string_view bytes);
  // The next complete response, or nullopt when more bytes are needed or after an error.
  std::optional<Response> next();
  // Set once the stream violated the protocol or a limit; the connection must be dropped.
  const std::optional<std::string>& error() const { return error_; }
  // The start of the response the error was found in (its first line, at most 200 bytes, raw):
  // what a server that is not an IMAP server at all said ("220 mx.example ESMTP", "SSH-2.0-...").
  const std::string& error_head() const { return error_head_; }
  // Bytes received but not yet returned as a response.
  std::size_t buffered() const { return buf_.size() - start_; }
  // Forget everything buffered (STARTTLS: bytes sent before the handshake must not be used).
  void reset();

 private:
  bool frame();  // advances scan state; true when [start_, end_) holds a whole response
  void fail(std::string message, std::size_t from);  // `from`: where that response starts

  ParserLimits limits_;
  std::string buf_;
  std::size_t start_ = 0;         // first byte of the current response
  std::size_t scan_ = 0;          // framing has looked at bytes before this
  std::size_t line_start_ = 0;    // start of the current line (for the literal marker)
  std::size_t literal_left_ = 0;  // literal bytes still to skip
  std::size_t text_bytes_ = 0;    // non-literal bytes in the current response
  std::size_t end_ = 0;           // one past the response's final LF, when framed
  std::optional<std::string> error_;
  std::string error_head_;
};

}  // namespace sb::email::imap
