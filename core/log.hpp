#pragma once
// One named spdlog logger per layer (STYLE 8). Lines carry a context prefix such as
// "[imap support]" written by the caller. Secrets are never passed to a logger.
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace sb {

// Returns the logger of a layer ("http", "storage", "relay", "imap", ...), creating it on first
// use; all loggers write to stderr.
std::shared_ptr<spdlog::logger> logger(const std::string& layer);

// Sets the level of every logger by its name, in any case: trace, debug, info, warn (or
// warning), error, critical, off; default info. Any other name sets info and returns false (the
// caller says so once).
bool set_log_level(const std::string& level);

}  // namespace sb
