// [server], [storage], [redis], [api], [matching] and [[agents]].
#include <algorithm>
#include <cctype>
#include <limits>
#include <map>

#include "config/reader.hpp"
#include "config/sections.hpp"
#include "config/validate.hpp"
#include "routing/identity.hpp"

namespace sb::config::detail {

void read_server(TableReader& root, Server& out) {
  const toml::table* table = root.table("server");
  if (table == nullptr) {
    return;
  }
  TableReader r(root.ctx(), *table, "server");
  std::string listen;
  if (r.str("listen", listen)) {
    auto hp = split_host_port(listen);
    if (hp && is_ip_literal(hp->host)) {
      out.listen = listen;
      out.host = hp->host;
      out.port = hp->port;
    } else if (hp) {
      r.ctx().add(r.line_of_key("listen"),
                  "server.listen must be an IP address and a port, e.g. \"127.0.0.1:8080\", "
                  "\"0.0.0.0:8080\" or \"[::1]:8080\"; a host name is not resolved (got \"" +
                      listen + "\")");
    } else {
      r.ctx().add(
          r.line_of_key("listen"),
          "server.listen must be host:port, e.g. \"127.0.0.1:8080\" (got \"" + listen + "\")");
    }
  }
  std::int64_t max_body = 0;
  if (r.integer("max_body_bytes", max_body, 1, std::numeric_limits<std::int64_t>::max())) {
    out.max_body_bytes = static_cast<std::size_t>(max_body);
  }
  std::int64_t max_connections = 0;
  if (r.integer("max_connections", max_connections, 1, 1 << 24)) {
    out.max_connections = static_cast<std::size_t>(max_connections);
  }
  std::int64_t in_flight = 0;
  if (r.integer("max_body_bytes_in_flight", in_flight, 1,
                std::numeric_limits<std::int64_t>::max())) {
    if (static_cast<std::size_t>(in_flight) < out.max_body_bytes) {
      // One body of max_body_bytes could never be taken in.
      r.ctx().add(r.line_of_key("max_body_bytes_in_flight"),
                  "server.max_body_bytes_in_flight must be at least server.max_body_bytes (" +
                      std::to_string(out.max_body_bytes) + "), got " + std::to_string(in_flight));
    } else {
      out.max_body_bytes_in_flight = static_cast<std::size_t>(in_flight);
    }
  }
  r.finish();
}

void read_storage(TableReader& root, Storage& out) {
  const toml::table* table = root.table("storage");
  if (table == nullptr) {
    return;
  }
  TableReader r(root.ctx(), *table, "storage");
  std::string path;
  if (r.str("path", path)) {
    if (path.empty()) {
      r.ctx().add(r.line_of_key("path"), "storage.path must not be empty");
    } else {
      out.path = path;
    }
  }
  r.one_of("synchronous", out.synchronous, {"normal", "full"});
  r.finish();
}

void read_redis(TableReader& root, Redis& out) {
  const toml::table* table = root.table("redis");
  if (table == nullptr) {
    return;
  }
  TableReader r(root.ctx(), *table, "redis");
  // The password may come from the environment (password_env) instead of the url, which is
  // otherwise a secret written into the file; the url may then name the ACL user alone.
  const bool password_key = r.has("password") || r.has("password_env");
  std::string password;
  const bool has_password = r.secret("password", password, false);
  std::string url;
  if (r.str("url", url)) {
    if (auto reason = parse_redis_url(url, out, password_key)) {
      r.ctx().add(r.line_of_key("url"),
                  "redis.url " + *reason + "; expected redis://[[user]:password@]host[:port][/db]");
    } else if (password_key && !out.password.empty()) {
      const std::string key = r.has("password") ? "password" : "password_env";
      r.ctx().add(r.line_of_key(key),
                  "give the Redis password in redis.url or in redis." + key + ", not both");
    }
  }
  if (has_password) {
    out.password = password;  // AUTH [user] password on every connection (Redis::auth_command)
  }
  std::string prefix;
  if (r.str("prefix", prefix)) {
    if (is_simple_name(prefix)) {
      out.prefix = prefix;
    } else {
      r.ctx().add(r.line_of_key("prefix"),
                  "redis.prefix must be letters, digits, '.', '_' or '-' (got \"" + prefix + "\")");
    }
  }
  r.finish();
}

void read_api(TableReader& root, Api& out) {
  const toml::table* table = root.table("api");
  if (table == nullptr) {
    return;
  }
  TableReader r(root.ctx(), *table, "api");
  std::vector<std::string> tokens;
  if (r.strings("tokens", tokens)) {
    if (std::find(tokens.begin(), tokens.end(), std::string()) != tokens.end()) {
      r.ctx().add(r.line_of_key("tokens"), "api.tokens must not contain an empty token");
    }
  }
  // tokens_env = ["VAR1", "VAR2"]: one token per variable, so that each client's token can be
  // kept out of the file and rotated alone; they add to the inline ones.
  r.env_secrets("tokens_env", tokens);
  if (r.has("tokens") || r.has("tokens_env")) {
    out.tokens = std::move(tokens);
  }
  r.finish();
}

void read_matching(TableReader& root, Matching& out) {
  const toml::table* table = root.table("matching");
  if (table == nullptr) {
    return;
  }
  TableReader r(root.ctx(), *table, "matching");
  std::string region;
  if (r.str("default_region", region)) {
    const bool two_capitals = region.size() == 2 &&
                              std::isupper(static_cast<unsigned char>(region[0])) &&
                              std::isupper(static_cast<unsigned char>(region[1]));
    if (!two_capitals) {
      r.ctx().add(r.line_of_key("default_region"),
                  "matching.default_region must be a two-letter country code such as \"US\" (got "
                  "\"" +
                      region + "\")");
    } else if (!is_phone_region(region)) {
      // Two capitals are not enough: libphonenumber reads no national number in a region it
      // has no data for, so every phone written without +country would be refused. "UK" is
      // the usual slip (ISO 3166 and libphonenumber say GB).
      std::string message = "matching.default_region \"" + region +
                            "\" is not a region code libphonenumber knows (ISO 3166-1 alpha-2, "
                            "such as \"US\" or \"DE\")";
      if (region == "UK") {
        message += "; the United Kingdom is \"GB\"";
      }
      r.ctx().add(r.line_of_key("default_region"), std::move(message));
    } else {
      out.default_region = region;
    }
  }
  r.finish();
}

void read_agents(TableReader& root, const Api& api, std::vector<Agent>& out) {
  struct Seen {
    std::string id;
    int line;
  };
  std::map<std::string, Seen> ids;     // id -> first declaration
  std::map<std::string, Seen> tokens;  // token -> agent holding it (never printed)
  for (const toml::table* table : root.tables("agents")) {
    TableReader r(root.ctx(), *table, "agents");
    Agent agent;
    const bool has_id = r.str("id", agent.id, true);
    const bool has_token = r.secret("token", agent.token);
    if (r.strings("queues", agent.queues, true, true)) {
      for (const std::string& queue : agent.queues) {
        if (!is_simple_name(queue)) {
          r.ctx().add(r.line_of_key("queues"), "agents.queues: invalid queue name \"" + queue +
                                                   "\" (letters, digits, '.', '_' or '-')");
        }
      }
    }
    r.finish();
    // The agents API parks released items in Redis under these consumer names
    // (agents/scripts.hpp): `_released:<agent>` for what an agent released, `_released` for what
    // earlier versions released. An agent of such a name would hold those items, and could ack or
    // answer them.
    if (has_id && agent.id == "_released") {
      r.ctx().add(r.line_of_key("id"),
                  "agent id \"_released\" is reserved: it is the Redis consumer that holds "
                  "released items");
    } else if (has_id && agent.id.starts_with("_released:")) {
      r.ctx().add(r.line_of_key("id"),
                  "agent id \"" + agent.id +
                      "\" is reserved: names beginning with \"_released:\" are the Redis "
                      "consumers that hold released items");
    } else if (has_id && agent.id.find('|') != std::string::npos) {
      // A transfer's once-only marker in Redis is "<agent> <target>|<new id>|<dead entry id>",
      // read back by splitting at the first '|' (agents/scripts.cpp, kTransferBody): a '|' in
      // the agent's id would cut it there, and its lost transfer replies would not be known as
      // its own.
      r.ctx().add(r.line_of_key("id"), "agent id \"" + agent.id +
                                           "\" contains '|', which the agents API uses as a "
                                           "separator in Redis");
    }
    if (has_id) {
      auto [it, fresh] = ids.emplace(agent.id, Seen{agent.id, r.line_of_key("id")});
      if (!fresh) {
        r.ctx().add(r.line_of_key("id"), "duplicate agent id \"" + agent.id + "\" (first at line " +
                                             std::to_string(it->second.line) + ")");
      }
    }
    if (has_token) {
      const int line = r.has("token") ? r.line_of_key("token") : r.line_of_key("token_env");
      auto [it, fresh] = tokens.emplace(agent.token, Seen{agent.id, line});
      if (!fresh) {
        r.ctx().add(line, "agent \"" + agent.id + "\" has the same token as agent \"" +
                              it->second.id + "\" (line " + std::to_string(it->second.line) +
                              "); agent tokens must be unique");
      }
      // An [api] token posts interactions and reads every customer; an agent's token acts as
      // that agent. One string that is both would let every API client act as the agent (and
      // the agent post interactions), so the two sets must not meet.
      if (!agent.token.empty() &&
          std::find(api.tokens.begin(), api.tokens.end(), agent.token) != api.tokens.end()) {
        r.ctx().add(line, "agent \"" + agent.id +
                              "\" has the same token as one of api.tokens; an agent token must "
                              "differ from every API token");
      }
    }
    out.push_back(std::move(agent));
  }
}

}  // namespace sb::config::detail
