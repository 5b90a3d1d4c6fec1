#pragma once
// Mastodon status HTML to readable plain text. Mastodon emits a small, sanitised subset
// (p, br, a, span; see Mastodon's Sanitize::Config::MASTODON_STRICT), so a scanner is enough:
// paragraphs become blank lines, <br> a newline, tags vanish, entities are decoded, and mention
// links become "@acct".
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace sb::social {

// Given a mention link's href, returns the acct to render ("user" or "user@domain"), or nullopt
// to keep the link's own text.
using MentionResolver = std::function<std::optional<std::string>(std::string_view href)>;

std::string html_to_text(std::string_view html, const MentionResolver& resolve_mention = {});

// Decodes the HTML character references Mastodon emits (&amp; &lt; &gt; &quot; &#39; &nbsp;
// numeric &#NNN; &#xHH;, and the other names of core/html_entities) into UTF-8, &nbsp; as a
// plain space; unknown references are kept as written.
std::string decode_entities(std::string_view s);

}  // namespace sb::social
