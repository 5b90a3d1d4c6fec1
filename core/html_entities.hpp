#pragma once
// HTML character references (&amp; &#233; &#x4E2D; &eacute; ...) to UTF-8, for the two channels
// that turn HTML into plain text: email's HTML parts and Mastodon's status HTML. Only the
// references mail and Mastodon actually carry are named (the HTML 5 list has 2,231); an unknown
// one stays as written, as a browser shows it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sb {

// Decodes the reference starting at s[i] == '&' into `out`; returns the bytes it took (with its
// ';'), or 0 when s[i] starts none that is known (the '&' is then text). Looks no further than
// the longest reference (linear over a text of '&'s). `nbsp` is what &nbsp; becomes: U+00A0
// keeps a run of them from collapsing, a plain ' ' reads better where nothing collapses.
std::size_t decode_html_entity(std::string_view s, std::size_t i, std::string& out,
                               std::uint32_t nbsp = 0xA0);

}  // namespace sb
