#pragma once
// Internal to config/: one reader per top-level section of the file. Each reads its table from
// the root, fills its part of Config and records problems in the root's Context.
#include "config/config.hpp"

namespace sb::config::detail {

class TableReader;

void read_server(TableReader& root, Server& out);
void read_storage(TableReader& root, Storage& out);
void read_redis(TableReader& root, Redis& out);
void read_api(TableReader& root, Api& out);
void read_matching(TableReader& root, Matching& out);
void read_routing(TableReader& root, Routing& out);
void read_agents(TableReader& root, const Api& api, std::vector<Agent>& out);
void read_channels(TableReader& root, Channels& out);

}  // namespace sb::config::detail
