#include "channels/email/imap_parser.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <chrono>

namespace sb::email::imap {
namespace {

std::string upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

bool all_digits(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
}

// Recursive descent over one framed response. Framing already guaranteed that each literal's
// bytes are present, so a disagreement here is a protocol error, not "need more".
class cursor {
 public:
  cursor(std::string_view s, const ParserLimits& limits) : s_(s), limits_(limits) {}

  std::optional<std::string> error;

  bool eol() const { return pos_ >= s_.size() || s_[pos_] == '\r' || s_[pos_] == '\n'; }
  bool peek(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  void skip_sp() {
    while (peek(' ')) {
      ++pos_;
    }
  }
  void advance() { ++pos_; }

  std::string rest_of_line() {
    std::size_t e = pos_;
    while (e < s_.size() && s_[e] != '\r' && s_[e] != '\n') {
      ++e;
    }
    std::string out(s_.substr(pos_, e - pos_));
    pos_ = e;
    return out;
  }

  // atom, including bracketed section text: BODY[HEADER.FIELDS (FROM TO)]<0>
  std::optional<std::string> atom(bool in_code) {
    std::size_t b = pos_;
    int brackets = 0;
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == '\r' || c == '\n') {
        break;
      }
      if (brackets > 0) {
        if (c == '[') {
          if (++brackets > limits_.max_depth) {
            return fail("nesting too deep");
          }
        } else if (c == ']') {
          --brackets;
        }
        ++pos_;
        continue;
      }
      if (c == ' ' || c == '(' || c == ')' || c == '"' || (in_code && c == ']')) {
        break;
      }
      if (c == '[') {
        ++brackets;
      }
      ++pos_;
    }
    if (pos_ == b) {
      return fail("expected an atom");
    }
    return std::string(s_.substr(b, pos_ - b));
  }

  std::optional<Value> value(int depth, bool in_code) {
    if (pos_ >= s_.size()) {
      return fail("unexpected end of response");
    }
    char c = s_[pos_];
    if (c == '(') {
      if (depth + 1 > limits_.max_depth) {
        return fail("nesting too deep");
      }
      ++pos_;
      Value list;
      list.kind = Value::Kind::list;
      while (true) {
        skip_sp();
        if (peek(')')) {
          ++pos_;
          return list;
        }
        if (eol()) {
          return fail("unterminated list");
        }
        auto v = value(depth + 1, in_code);
        if (!v) {
          return std::nullopt;
        }
        list.items.push_back(std::move(*v));
      }
    }
    if (c == '"') {
      return quoted();
    }
    if (c == '{' || (c == '~' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '{')) {
      return literal();
    }
    auto a = atom(in_code);
    if (!a) {
      return std::nullopt;
    }
    Value v;
    if (upper(*a) == "NIL") {
      v.kind = Value::Kind::nil;
    } else if (all_digits(*a) && a->size() <= 19) {
      v.kind = Value::Kind::number;
      v.number = std::stoull(*a);
    } else {
      v.kind = Value::Kind::atom;
    }
    v.text = std::move(*a);
    return v;
  }

 private:
  std::optional<Value> quoted() {
    ++pos_;
    Value v;
    v.kind = Value::Kind::string;
    while (pos_ < s_.size()) {
      char c = s_[pos_++];
      if (c == '"') {
        return v;
      }
      if (c == '\r' || c == '\n') {
        break;
      }
      if (c == '\\' && pos_ < s_.size()) {
        c = s_[pos_++];
      }
      v.text += c;
    }
    return fail("unterminated quoted string");
  }

  std::optional<Value> literal() {
    if (s_[pos_] == '~') {
      ++pos_;
    }
    std::size_t close = s_.find('}', pos_);
    if (close == std::string_view::npos) {
      return fail("bad literal");
    }
    std::string_view count = s_.substr(pos_ + 1, close - pos_ - 1);
    if (!count.empty() && count.back() == '+') {
      count.remove_suffix(1);
    }
    if (!all_digits(count) || count.size() > 19) {
      return fail("bad literal length");
    }
    std::size_t n = std::stoull(std::string(count));
    pos_ = close + 1;
    if (peek('\r')) {
      ++pos_;
    }
    if (!peek('\n')) {
      return fail("literal not at end of line");
    }
    ++pos_;
    if (n > s_.size() - pos_) {
      return fail("literal longer than framed");
    }
    Value v;
    v.kind = Value::Kind::string;
    v.text = std::string(s_.substr(pos_, n));
    pos_ += n;
    return v;
  }

  template <typename T = Value>
  std::nullopt_t fail(const char* message) {
    if (!error) {
      error = message;
    }
    return std::nullopt;
  }

  std::string_view s_;
  const ParserLimits& limits_;
  std::size_t pos_ = 0;
};

bool status_name(const std::string& n) {
  return n == "OK" || n == "NO" || n == "BAD" || n == "PREAUTH" || n == "BYE";
}

// resp-text = ["[" resp-text-code "]" SP] text
bool resp_text(cursor& c, Response& r) {
  c.skip_sp();
  if (c.peek('[')) {
    c.advance();
    auto code = c.atom(true);
    if (!code) {
      return false;
    }
    r.code = upper(*code);
    while (true) {
      c.skip_sp();
      if (c.peek(']')) {
        c.advance();
        break;
      }
      if (c.eol()) {
        c.error = "unterminated response code";
        return false;
      }
      auto v = c.value(1, true);
      if (!v) {
        return false;
      }
      r.code_args.push_back(std::move(*v));
    }
    c.skip_sp();
  }
  r.text = c.rest_of_line();
  return true;
}

std::optional<Response> parse_response(std::string_view s, const ParserLimits& limits,
                                       std::string& error) {
  cursor c(s, limits);
  Response r;
  auto failed = [&]() -> std::optional<Response> {
    error = c.error.value_or("malformed response");
    return std::nullopt;
  };
  if (c.peek('+')) {
    r.type = ResponseType::continuation;
    c.advance();
    if (c.peek(' ')) {
      c.advance();
    }
    r.text = c.rest_of_line();
    return r;
  }
  if (c.peek('*')) {
    r.type = ResponseType::untagged;
    c.advance();
  } else {
    r.type = ResponseType::tagged;
    auto tag = c.atom(false);
    if (!tag) {
      return failed();
    }
    r.tag = std::move(*tag);
  }
  if (!c.peek(' ')) {
    c.error = "expected a space";
    return failed();
  }
  c.skip_sp();
  auto first = c.atom(false);
  if (!first) {
    return failed();
  }
  if (r.type == ResponseType::untagged && all_digits(*first) && first->size() <= 19) {
    r.number = std::stoull(*first);
    c.skip_sp();
    auto name = c.atom(false);
    if (!name) {
      return failed();
    }
    r.name = upper(*name);
  } else {
    r.name = upper(*first);
  }
  if (status_name(r.name)) {
    if (!resp_text(c, r)) {
      return failed();
    }
    return r;
  }
  if (r.type == ResponseType::tagged) {
    c.error = "tagged response without status";
    return failed();
  }
  while (true) {
    c.skip_sp();
    if (c.eol()) {
      break;
    }
    auto v = c.value(0, false);
    if (!v) {
      return failed();
    }
    r.data.push_back(std::move(*v));
  }
  return r;
}

}  // namespace

bool Response::is_status() const {
  return status_name(name);
}

namespace {

bool body_key(const std::string& upper_key) {
  return upper_key == "BODY[]" || upper_key == "BINARY[]" || upper_key == "RFC822" ||
         upper_key.rfind("BODY[]<", 0) == 0;
}

// `take_body`: the caller owns `r` (an rvalue): the body is moved out instead of copied.
std::optional<FetchData> fetch_data(const Response& r, bool take_body) {
  if (r.type != ResponseType::untagged || r.name != "FETCH" || !r.number || r.data.empty() ||
      r.data[0].kind != Value::Kind::list) {
    return std::nullopt;
  }
  FetchData f;
  f.seq = *r.number;
  const auto& items = r.data[0].items;
  for (std::size_t i = 0; i + 1 < items.size(); i += 2) {
    std::string key = upper(items[i].text);
    const Value& v = items[i + 1];
    if (key == "UID" && v.kind == Value::Kind::number) {
      f.uid = v.number;
    } else if (key == "RFC822.SIZE" && v.kind == Value::Kind::number) {
      f.rfc822_size = v.number;
    } else if (key == "FLAGS" && v.kind == Value::Kind::list) {
      std::vector<std::string> flags;
      for (const auto& x : v.items) {
        flags.push_back(x.text);
      }
      f.flags = std::move(flags);
    } else if (key == "INTERNALDATE") {
      f.internal_date = v.text;
    } else if (body_key(key)) {
      if (v.kind == Value::Kind::nil) {
        f.body = std::string();
        f.body_nil = true;
      } else if (take_body) {
        f.body = std::move(const_cast<Value&>(v).text);
      } else {
        f.body = v.text;
      }
    }
  }
  return f;
}

}  // namespace

std::optional<FetchData> as_fetch(const Response& r) {
  return fetch_data(r, false);
}

std::optional<FetchData> as_fetch(Response&& r) {
  return fetch_data(r, true);
}

bool carries_body(const Response& r) {
  if (r.type != ResponseType::untagged || r.name != "FETCH" || r.data.empty() ||
      r.data[0].kind != Value::Kind::list) {
    return false;
  }
  const auto& items = r.data[0].items;
  for (std::size_t i = 0; i + 1 < items.size(); i += 2) {
    if (body_key(upper(items[i].text)) && items[i + 1].kind != Value::Kind::nil) {
      return true;
    }
  }
  return false;
}

std::vector<std::string> capabilities(const Response& r) {
  std::vector<std::string> out;
  const auto& src = r.code == "CAPABILITY" ? r.code_args : r.data;
  if (r.code == "CAPABILITY" || r.name == "CAPABILITY") {
    for (const auto& v : src) {
      out.push_back(upper(v.text));
    }
  }
  return out;
}

ResponseParser::ResponseParser(ParserLimits limits) : limits_(limits) {
  if (limits_.max_response == 0) {
    limits_.max_response = limits_.max_literal + limits_.max_line;
  }
}

void ResponseParser::feed(std::string_view bytes) {
  if (!error_) {
    buf_.append(bytes);
  }
}

void ResponseParser::reset() {
  buf_.clear();
  start_ = scan_ = line_start_ = literal_left_ = text_bytes_ = end_ = 0;
  error_.reset();
  error_head_.clear();
}

void ResponseParser::fail(std::string message, std::size_t from) {
  error_ = std::move(message);
  std::string_view head = std::string_view(buf_).substr(std::min(from, buf_.size()), 200);
  error_head_ = std::string(head.substr(0, head.find_first_of("\r\n")));
  buf_.clear();
  start_ = scan_ = line_start_ = literal_left_ = text_bytes_ = end_ = 0;
}

bool ResponseParser::frame() {
  while (scan_ < buf_.size()) {
    if (literal_left_ > 0) {
      std::size_t take = std::min(literal_left_, buf_.size() - scan_);
      scan_ += take;
      literal_left_ -= take;
      if (literal_left_ > 0) {
        return false;
      }
      line_start_ = scan_;
      continue;
    }
    std::size_t lf = buf_.find('\n', scan_);
    std::size_t upto = lf == std::string::npos ? buf_.size() : lf + 1;
    text_bytes_ += upto - scan_;
    scan_ = upto;
    if (text_bytes_ > limits_.max_line) {
      fail("response line longer than " + std::to_string(limits_.max_line) + " bytes", start_);
      return false;
    }
    if (lf == std::string::npos) {
      return false;
    }
    // A line ending in {n} or {n+} (or ~{n}) announces n bytes of literal before the response
    // continues (RFC 3501 4.3, RFC 7888).
    std::size_t e = lf;
    if (e > line_start_ && buf_[e - 1] == '\r') {
      --e;
    }
    if (e > line_start_ && buf_[e - 1] == '}') {
      // The '{' is looked for over the count's digits only (and LITERAL+'s '+'): a search for
      // any '{' went back to the start of the buffer on every line such as "* X}" a server
      // may stream, quadratic in what the buffer holds.
      std::size_t open = e - 1;
      if (open > line_start_ && buf_[open - 1] == '+') {
        --open;
      }
      while (open > line_start_ && buf_[open - 1] >= '0' && buf_[open - 1] <= '9') {
        --open;
      }
      open = open > line_start_ && buf_[open - 1] == '{' ? open - 1 : std::string::npos;
      if (open != std::string::npos) {
        std::string_view count(buf_.data() + open + 1, e - 1 - open - 1);
        if (!count.empty() && count.back() == '+') {
          count.remove_suffix(1);
        }
        if (all_digits(count)) {
          if (count.size() > 19 || std::stoull(std::string(count)) > limits_.max_literal) {
            fail("literal larger than " + std::to_string(limits_.max_literal) + " bytes", start_);
            return false;
          }
          literal_left_ = std::stoull(std::string(count));
          // Refused at the announcement, before its bytes are buffered.
          if (scan_ - start_ + literal_left_ > limits_.max_response) {
            fail("response larger than " + std::to_string(limits_.max_response) + " bytes", start_);
            return false;
          }
          line_start_ = scan_;
          continue;
        }
      }
    }
    end_ = scan_;
    return true;
  }
  return false;
}

std::optional<Response> ResponseParser::next() {
  if (error_ || !frame()) {
    return std::nullopt;
  }
  std::string message;
  auto r = parse_response(std::string_view(buf_).substr(start_, end_ - start_), limits_, message);
  if (!r) {
    fail(message, start_);
    return std::nullopt;
  }
  start_ = end_;
  line_start_ = start_;
  text_bytes_ = 0;
  // Compact once the consumed prefix dominates, keeping appends amortised O(1).
  if (start_ == buf_.size()) {
    buf_.clear();
    start_ = scan_ = line_start_ = end_ = 0;
  } else if (start_ > (64u << 10) && start_ > buf_.size() / 2) {
    buf_.erase(0, start_);
    scan_ -= start_;
    line_start_ -= start_;
    end_ -= start_;
    start_ = 0;
  }
  return r;
}

namespace {

constexpr std::array<std::string_view, 12> kMonths{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// The digits of s[at, at + n) as a number; nullopt unless all n are digits.
std::optional<int> digits(std::string_view s, std::size_t at, std::size_t n) {
  if (at + n > s.size() || !all_digits(s.substr(at, n))) {
    return std::nullopt;
  }
  int v = 0;
  std::from_chars(s.data() + at, s.data() + at + n, v);
  return v;
}

}  // namespace

std::optional<std::int64_t> parse_internal_date(std::string_view s) {
  using namespace std::chrono;
  // date-day-fixed: (SP DIGIT) / 2DIGIT; servers also send a single digit unpadded.
  while (!s.empty() && s.front() == ' ') {
    s.remove_prefix(1);
  }
  std::size_t dash = s.find('-');
  if (dash == 0 || dash > 2) {
    return std::nullopt;
  }
  auto day = digits(s, 0, dash);
  s.remove_prefix(dash + 1);
  // "Jul-1996 02:44:25 -0700"
  if (!day || s.size() != 23 || s[3] != '-' || s[8] != ' ' || s[11] != ':' || s[14] != ':' ||
      s[17] != ' ' || (s[18] != '+' && s[18] != '-')) {
    return std::nullopt;
  }
  auto month = std::find_if(kMonths.begin(), kMonths.end(), [&](std::string_view m) {
    return std::equal(m.begin(), m.end(), s.begin(), [](char a, char b) {
      return std::tolower(static_cast<unsigned char>(a)) ==
             std::tolower(static_cast<unsigned char>(b));
    });
  });
  auto year = digits(s, 4, 4);
  auto hour = digits(s, 9, 2);
  auto minute = digits(s, 12, 2);
  auto second = digits(s, 15, 2);
  auto zone_h = digits(s, 19, 2);
  auto zone_m = digits(s, 21, 2);
  if (month == kMonths.end() || !year || !hour || !minute || !second || !zone_h || !zone_m ||
      *hour > 23 || *minute > 59 || *second > 60 || *zone_m > 59) {
    return std::nullopt;
  }
  year_month_day ymd{std::chrono::year(*year),
                     std::chrono::month(static_cast<unsigned>(month - kMonths.begin() + 1)),
                     std::chrono::day(static_cast<unsigned>(*day))};
  if (!ymd.ok()) {
    return std::nullopt;
  }
  seconds local =
      sys_days(ymd).time_since_epoch() + hours(*hour) + minutes(*minute) + seconds(*second);
  seconds offset = hours(*zone_h) + minutes(*zone_m);
  // "-0700" is seven hours behind UTC: UTC = local + 7 h.
  seconds utc = s[18] == '-' ? local + offset : local - offset;
  return duration_cast<milliseconds>(utc).count();
}

std::string search_date(std::int64_t unix_ms) {
  using namespace std::chrono;
  year_month_day ymd{floor<days>(sys_time<milliseconds>(milliseconds(unix_ms)))};
  return std::to_string(static_cast<unsigned>(ymd.day())) + "-" +
         std::string(kMonths[static_cast<unsigned>(ymd.month()) - 1]) + "-" +
         std::to_string(static_cast<int>(ymd.year()));
}

}  // namespace sb::email::imap
