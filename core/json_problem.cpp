#include "core/json_problem.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/parser.hpp>
#include <charconv>

namespace sb {
namespace json = boost::json;

namespace {

// The surrogate (D800-DFFF) of a \u escape at `i`, or 0.
unsigned surrogate_at(std::string_view body, std::size_t i) {
  if (body.size() < i + 6 || body.substr(i, 2) != "\\u") {
    return 0;
  }
  unsigned v = 0;
  auto [p, err] = std::from_chars(body.data() + i + 2, body.data() + i + 6, v, 16);
  return err == std::errc{} && p == body.data() + i + 6 && v >= 0xD800 && v <= 0xDFFF ? v : 0;
}

// Whether an unpaired surrogate escape stands just before `at`, where parsing stopped. Boost.JSON
// reports a high surrogate without its low half as "syntax error", which reads as a broken
// document when the JSON text is well formed: the string holds half of a character.
bool unpaired_surrogate_near(std::string_view body, std::size_t at) {
  for (std::size_t i = body.find("\\u"); i != std::string_view::npos && i <= at;
       i = body.find("\\u", i + 2)) {
    unsigned v = surrogate_at(body, i);
    if (v >= 0xD800 && v <= 0xDBFF && surrogate_at(body, i + 6) >= 0xDC00) {
      i += 6;  // a pair: one character
    } else if (v != 0 && i + 12 >= at) {
      return true;
    }
  }
  return false;
}

}  // namespace

// Boost.JSON reports invalid UTF-8 as "syntax error", the same words as a missing brace. On the
// error path only, parse again to find the byte where it stopped, and once more allowing invalid
// UTF-8 to tell whether that byte is the problem. A body cut short stops at its end with
// "incomplete JSON" (parser::write reports it, as json::parse does).
std::string json_problem(std::string_view body) {
  json::error_code ec;
  json::parser strict;
  auto at = strict.write(body.data(), body.size(), ec);
  if (unpaired_surrogate_near(body, at)) {
    return "a \\u escape is an unpaired UTF-16 surrogate (\\uD800-\\uDFFF come in high-low "
           "pairs) at byte offset " +
           std::to_string(at);
  }
  json::parse_options opts;
  opts.allow_invalid_utf8 = true;
  json::parser lenient(json::storage_ptr(), opts);
  json::error_code lenient_ec;
  auto lenient_at = lenient.write(body.data(), body.size(), lenient_ec);
  bool utf8 = !lenient_ec || lenient_at > at;
  return (utf8 ? std::string("invalid UTF-8") : ec.message()) + " at byte offset " +
         std::to_string(at);
}

std::optional<json::object> parse_json_object(std::string_view body, std::string& error) {
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    error = "the body is not valid JSON: " + json_problem(body);
    return std::nullopt;
  }
  if (!v.is_object()) {
    error = "the body must be a JSON object";
    return std::nullopt;
  }
  return std::move(v.as_object());
}

}  // namespace sb
