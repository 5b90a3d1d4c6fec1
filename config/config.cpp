// The public face of the config layer: load, resolve the path, defaults, problem text.
#include "config/config.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <type_traits>

#include "config/reader.hpp"
#include "config/sections.hpp"

namespace sb::config {

std::string Problem::to_string() const {
  if (line > 0) {
    return path + ":" + std::to_string(line) + ": " + message;
  }
  return path + ": " + message;
}

Config defaults() {
  return Config{};
}

LoadResult load_string(std::string_view toml_text, const std::string& path_for_messages,
                       const LoadOptions& options) {
  detail::Context ctx{path_for_messages, {}, {}, options.require_env_secrets};
  toml::table root;
  try {
    root = toml::parse(toml_text, std::string_view(path_for_messages));
  } catch (const toml::parse_error& e) {
    // A syntax error stops the parser, so it is the one problem of this file.
    ctx.add(static_cast<int>(e.source().begin.line), std::string(e.description()));
    return LoadResult{std::nullopt, std::move(ctx.problems), {}};
  }

  Config config = defaults();
  config.source_path = path_for_messages;
  detail::TableReader r(ctx, root, "");
  detail::read_server(r, config.server);
  detail::read_storage(r, config.storage);
  detail::read_redis(r, config.redis);
  detail::read_api(r, config.api);
  detail::read_matching(r, config.matching);
  detail::read_routing(r, config.routing);
  detail::read_agents(r, config.agents);
  detail::read_channels(r, config.channels);
  r.finish();

  if (!ctx.problems.empty()) {
    // Sections are read in a fixed order; present the problems in file order.
    std::stable_sort(ctx.problems.begin(), ctx.problems.end(),
                     [](const Problem& a, const Problem& b) { return a.line < b.line; });
    return LoadResult{std::nullopt, std::move(ctx.problems), {}};
  }
  std::stable_sort(ctx.warnings.begin(), ctx.warnings.end(),
                   [](const Problem& a, const Problem& b) { return a.line < b.line; });
  return LoadResult{std::move(config), {}, std::move(ctx.warnings)};
}

LoadResult load_file(const std::string& path, const LoadOptions& options) {
  std::string text;
  // A regular file only (a directory is refused by the read, with EISDIR): a FIFO with no writer
  // would block the open, at start-up and on every SIGHUP.
  if (struct stat st{};
      ::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    return LoadResult{
        std::nullopt, {Problem{path, 0, "cannot read the file: not a regular file"}}, {}};
  }
  if (const int err = detail::read_whole_file(path, text); err != 0) {
    return LoadResult{
        std::nullopt,
        {Problem{path, 0, std::string("cannot read the file: ") + std::strerror(err)}},
        {}};
  }
  return load_string(text, path, options);
}

namespace {

// An account with its webhook signing secrets blanked, to compare what else changed. The kinds
// without a webhook come back as they are.
template <class Account>
Account without_webhook_secrets(Account a) {
  if constexpr (std::is_same_v<Account, Twilio>) {
    a.auth_token.clear();
  } else if constexpr (std::is_same_v<Account, Telnyx>) {
    a.public_key.clear();
  } else if constexpr (std::is_same_v<Account, CallWebhook>) {
    a.secret.clear();
  } else if constexpr (std::is_same_v<Account, Meta>) {
    a.app_secret.clear();
    a.verify_token.clear();
  }
  return a;
}

template <class Account>
const Account* named(const std::vector<Account>& list, const std::string& name) {
  auto it = std::find_if(list.begin(), list.end(), [&](const auto& c) { return c.name == name; });
  return it == list.end() ? nullptr : &*it;
}

}  // namespace

std::vector<std::string> take_webhook_secrets(Channels& running, const Channels& fresh) {
  std::vector<std::string> taken;
  auto take = [&taken](const char* kind, auto& was, const auto& now) {
    for (auto& c : was) {
      const auto* next = named(now, c.name);
      if (next != nullptr && !(*next == c) &&
          without_webhook_secrets(*next) == without_webhook_secrets(c)) {
        c = *next;
        taken.push_back(std::string(kind) + " " + c.name);
      }
    }
  };
  take("twilio", running.twilio, fresh.twilio);
  take("telnyx", running.telnyx, fresh.telnyx);
  take("call_webhook", running.call_webhook, fresh.call_webhook);
  take("meta", running.meta, fresh.meta);
  return taken;
}

std::vector<std::string> changes_needing_restart(const Config& running, const Config& fresh) {
  std::vector<std::string> out;
  auto shown = [&](const char* key, const std::string& was, const std::string& now) {
    if (was != now) {
      out.push_back(std::string(key) + " (" + was + " -> " + now + ")");
    }
  };
  auto ms = [](milliseconds d) {
    return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + "s"
                                 : std::to_string(d.count()) + "ms";
  };
  // The claim sweep and the dead-letter limit are set when the agents' queues start.
  shown("routing.claim_timeout", ms(running.routing.claim_timeout),
        ms(fresh.routing.claim_timeout));
  shown("routing.max_deliveries", std::to_string(running.routing.max_deliveries),
        std::to_string(fresh.routing.max_deliveries));
  shown("server.listen", running.server.listen, fresh.server.listen);
  shown("server.max_body_bytes", std::to_string(running.server.max_body_bytes),
        std::to_string(fresh.server.max_body_bytes));
  shown("server.max_connections", std::to_string(running.server.max_connections),
        std::to_string(fresh.server.max_connections));
  shown("server.max_body_bytes_in_flight", std::to_string(running.server.max_body_bytes_in_flight),
        std::to_string(fresh.server.max_body_bytes_in_flight));
  shown("routing.max_waiting_claims_per_agent",
        std::to_string(running.routing.max_waiting_claims_per_agent),
        std::to_string(fresh.routing.max_waiting_claims_per_agent));
  shown("storage.path", running.storage.path, fresh.storage.path);
  shown("storage.synchronous", running.storage.synchronous, fresh.storage.synchronous);
  shown("redis.prefix", running.redis.prefix, fresh.redis.prefix);
  shown("matching.default_region", running.matching.default_region, fresh.matching.default_region);
  if (running.redis.url != fresh.redis.url || running.redis.password != fresh.redis.password) {
    out.emplace_back("redis.url or redis.password");
  }
  // Channels are set up at start: a new account, or a changed one, waits for a restart (a
  // webhook secret alone is applied: take_webhook_secrets). Named by kind and account, never
  // with a value (most of them hold secrets).
  auto accounts = [&out](const char* kind, const auto& was, const auto& now) {
    for (const auto& c : now) {
      const auto* before = named(was, c.name);
      if (before == nullptr) {
        out.push_back(std::string("channels.") + kind + " " + c.name + " (added)");
      } else if (!(without_webhook_secrets(*before) == without_webhook_secrets(c))) {
        out.push_back(std::string("channels.") + kind + " " + c.name + " (changed)");
      }
    }
    for (const auto& c : was) {
      if (named(now, c.name) == nullptr) {
        out.push_back(std::string("channels.") + kind + " " + c.name + " (removed)");
      }
    }
  };
  const auto& a = running.channels;
  const auto& b = fresh.channels;
  accounts("imap", a.imap, b.imap);
  accounts("smtp", a.smtp, b.smtp);
  accounts("twilio", a.twilio, b.twilio);
  accounts("telnyx", a.telnyx, b.telnyx);
  accounts("call_webhook", a.call_webhook, b.call_webhook);
  accounts("mastodon", a.mastodon, b.mastodon);
  accounts("x", a.x, b.x);
  accounts("meta", a.meta, b.meta);
  accounts("telegram", a.telegram, b.telegram);
  return out;
}

std::string resolve_path(const std::optional<std::string>& flag) {
  if (flag) {
    return *flag;
  }
  // Empty counts as unset, as for most variables: `SWITCHBOARD_CONFIG= switchboard run`.
  if (const char* env = std::getenv("SWITCHBOARD_CONFIG"); env != nullptr && *env != '\0') {
    return env;
  }
  // Anything by that name, not only a regular file: a directory or a broken symlink there was
  // skipped, and the daemon ran on the built-in defaults (no tokens, no agents: 401 for
  // everyone). load_file refuses it, naming it.
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::symlink_status("switchboard.toml", ec))) {
    return "switchboard.toml";
  }
  return "";
}

}  // namespace sb::config
