#pragma once
#include <string>

#include "config/config.hpp"

namespace sb {

// `switchboard run`: runs until SIGTERM/SIGINT; returns the exit status.
int run_daemon(const config::Config& cfg);
// `switchboard customers import FILE` and `switchboard customers show QUERY`.
int import_customers(const config::Config& cfg, const std::string& file);
int show_customer(const config::Config& cfg, const std::string& query);
// `switchboard backup [--force] DEST`: a consistent copy of the database (daemon/backup.cpp).
int backup_database(const config::Config& cfg, const std::string& dest, bool force);

// storage.path as the commands name it: absolute, and "(storage.path, relative to the working
// directory)" when it is relative, since run from another directory it names another file.
std::string database_named(const std::string& path);

}  // namespace sb
