#pragma once
// One named spdlog logger per layer (STYLE 8). Lines carry a context prefix such as
// "[imap support]" written by the caller. Secrets are never passed to a logger.
//
// Lines name values from outside (a caller's number, a server's reply, a provider's error
// body): every line is escaped on its way to any sink (log_escape), so that such a value can
// never end the line and write one of its own, nor send a terminal its escape sequences.
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

namespace sb {

// Returns the logger of a layer ("http", "storage", "relay", "imap", ...), creating it on first
// use; all loggers write to stderr.
std::shared_ptr<spdlog::logger> logger(const std::string& layer);

// `text` as one log line shows it: LF, CR and tab as \n, \r and \t; the other C0 controls, DEL,
// the C1 controls (U+0080-U+009F, which a UTF-8 terminal may take as CSI) and each byte that is
// not valid UTF-8 as \xNN. Everything else, backslashes included, is kept as it is.
std::string log_escape(std::string_view text);

// Sets the level of every logger by its name, in any case: trace, debug, info, warn (or
// warning), error, critical, off; default info. Any other name sets info and returns false (the
// caller says so once).
bool set_log_level(const std::string& level);

}  // namespace sb
