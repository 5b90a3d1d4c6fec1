#pragma once
// What is wrong with a request body that should be JSON, and where: shared by every route that
// takes JSON (the ingest API, the agent routes, the call and Meta webhooks), so that a sender
// is told "invalid UTF-8 at byte offset 72" or "incomplete JSON at byte offset 30" rather than
// Boost.JSON's "syntax error" for all of them.
#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace sb {

// Why `body` does not parse as JSON, ending with the byte offset where parsing stopped: "syntax
// error at byte offset 30", "invalid UTF-8 at byte offset 72", "incomplete JSON at byte offset
// 6" (cut short), or an unpaired \u surrogate. For the error path only: it parses again.
std::string json_problem(std::string_view body);

// `body` parsed as a JSON object; nullopt, with `error` set, when it is not JSON ("the body is
// not valid JSON: " + json_problem) or not an object ("the body must be a JSON object").
std::optional<boost::json::object> parse_json_object(std::string_view body, std::string& error);

}  // namespace sb
