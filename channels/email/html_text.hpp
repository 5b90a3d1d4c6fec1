#pragma once
// HTML mail to readable plain text. Why our own: Debian 12 packages no C/C++ library that does
// this (html2text and w3m are programs, libxml2's HTML parser gives a DOM but no text
// rendering, gumbo-parser is a parser only), and what agents need is modest: the words in
// reading order with paragraph breaks, not a layout engine.
#include <string>
#include <string_view>

namespace sb::email {

// `html` must be UTF-8. Drops <script>, <style>, <title>, comments and tags; block elements
// and <br> become line breaks, <li> becomes "- ", table cells are separated by a space;
// whitespace collapses except inside <pre>; character references (&amp; &#233; &#x4E2D;
// and the common named ones) are decoded; links keep their text. Output is trimmed and has
// at most one blank line in a row.
std::string html_to_text(std::string_view html);

}  // namespace sb::email
