#pragma once
// application/x-www-form-urlencoded decoding (WHATWG URL "application/x-www-form-urlencoded
// parser"): pairs split on '&', name and value on the first '=', '+' is a space, then
// percent-decoding. Repeated names are kept, in order: Twilio signs every value.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sb {

using FormParams = std::vector<std::pair<std::string, std::string>>;

// Never fails: a '%' not followed by two hex digits is kept literally, as browsers do.
std::string form_decode(std::string_view s);
FormParams parse_form(std::string_view body);

// The first value of `name`, if any.
std::optional<std::string_view> form_get(const FormParams& params, std::string_view name);

// The query string of a request target ("" when none) and one decoded query parameter.
std::string_view query_of(std::string_view target);
std::optional<std::string> query_param(std::string_view target, std::string_view name);

}  // namespace sb
