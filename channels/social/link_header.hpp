#pragma once
// RFC 8288 Link headers as Mastodon sends them for pagination:
//   Link: <https://m.example/api/v1/notifications?max_id=10>; rel="next",
//         <https://m.example/api/v1/notifications?min_id=20>; rel="prev"
// "next" pages to older items (max_id), "prev" to newer ones (min_id).
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace sb::social {

// rel -> URL, for every link in the header (a link with several rels is listed under each).
std::map<std::string, std::string> parse_link_header(std::string_view header);

// A decoded query parameter of a URL (absolute or origin-form), e.g. "min_id".
std::optional<std::string> query_param(std::string_view url, std::string_view name);

}  // namespace sb::social
