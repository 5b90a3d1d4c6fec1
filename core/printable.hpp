#pragma once
// Untrusted text (customer names, subjects, handles, file cells) on an operator's terminal.
// A name such as "Ann\x1b]0;...\x07" must not retitle the window, clear the screen or forge
// output: every control character is replaced before it is printed.
#include <cstddef>
#include <string>
#include <string_view>

#include "core/utf8.hpp"  // is_valid_utf8, utf8_sequence_length

namespace sb {

// `text` safe to print: tab, CR and LF become a space (a timeline shows one line per item);
// the other C0 controls (ESC, BEL, ...), DEL, and the C1 controls U+0080-U+009F (a UTF-8
// terminal takes U+009B as CSI) become '?', as does each byte that is not valid UTF-8. At most
// `max_chars` code points are kept, cut between two code points, and "..." marks the cut.
std::string printable(std::string_view text, std::size_t max_chars = std::string_view::npos);

}  // namespace sb
