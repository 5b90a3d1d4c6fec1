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
#include <set>
#include <type_traits>
#include <utility>
#include <vector>

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

namespace {

// Queues that load but do not meet: a typo in a rule's queue or an agent's queues
// ("biling") routes work nowhere anyone claims, or leaves an agent waiting on a queue nothing
// fills (only a transfer could). Warnings, not problems: a queue that only transfers feed, or
// one staffed later by a reload, is legitimate. Not said without agents: `run` warns of that.
void warn_unworked_queues(detail::Context& ctx, const Config& config) {
  if (config.agents.empty()) {
    return;
  }
  std::set<std::string> fed{config.routing.default_queue}, worked;
  for (const Rule& rule : config.routing.rules) {
    fed.insert(rule.queue);
  }
  for (const Agent& agent : config.agents) {
    worked.insert(agent.queues.begin(), agent.queues.end());
  }
  std::set<std::string> said;
  for (const Agent& agent : config.agents) {
    for (const std::string& queue : agent.queues) {
      if (!fed.contains(queue) && said.insert(queue).second) {
        ctx.warn(0, "agents: queue \"" + queue + "\" (agent " + agent.id +
                        ") is fed by no rule and is not routing.default_queue: only transfers "
                        "put work there");
      }
    }
  }
  for (const Rule& rule : config.routing.rules) {
    if (!worked.contains(rule.queue) && said.insert(rule.queue).second) {
      ctx.warn(0, "routing.rules: queue \"" + rule.queue + "\" (rule " + rule.name +
                      ") is worked by no agent: what the rule routes there waits unclaimed");
    }
  }
}

}  // namespace

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
  detail::read_agents(r, config.api, config.agents);
  detail::read_channels(r, config.channels);
  r.finish();

  if (!ctx.problems.empty()) {
    // Sections are read in a fixed order; present the problems in file order.
    std::stable_sort(ctx.problems.begin(), ctx.problems.end(),
                     [](const Problem& a, const Problem& b) { return a.line < b.line; });
    return LoadResult{std::nullopt, std::move(ctx.problems), {}};
  }
  warn_unworked_queues(ctx, config);
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

// The secrets of an account that a reload applies when nothing else about the account changed
// (take_secrets), each with its key for the log line: the webhook signing secrets a provider's
// callbacks are checked with, and the credentials Switchboard logs in, polls and sends with.
// Always in the same order, so two accounts equal but for these pair them up one by one. The
// IMAP token_file is not one: it is a path, and the file is read at each login anyway.
template <class Account>
std::vector<std::pair<const char*, std::string*>> secrets_of(Account& a) {
  if constexpr (std::is_same_v<Account, Imap>) {
    return {{"password", &a.password}, {"token", &a.token}};
  } else if constexpr (std::is_same_v<Account, Smtp>) {
    return {{"password", &a.password}};
  } else if constexpr (std::is_same_v<Account, Twilio>) {
    return {{"auth_token", &a.auth_token}};
  } else if constexpr (std::is_same_v<Account, Telnyx>) {
    return {{"public_key", &a.public_key}};
  } else if constexpr (std::is_same_v<Account, CallWebhook>) {
    return {{"secret", &a.secret}};
  } else if constexpr (std::is_same_v<Account, Mastodon>) {
    return {{"access_token", &a.access_token}};
  } else if constexpr (std::is_same_v<Account, X>) {
    std::vector<std::pair<const char*, std::string*>> out{{"bearer_token", &a.bearer_token}};
    // Its presence is not a secret: user context added or removed waits for a restart.
    if (a.user_context) {
      out.insert(out.end(), {{"consumer_key", &a.user_context->consumer_key},
                             {"consumer_secret", &a.user_context->consumer_secret},
                             {"access_token", &a.user_context->access_token},
                             {"access_token_secret", &a.user_context->access_token_secret}});
    }
    return out;
  } else if constexpr (std::is_same_v<Account, Meta>) {
    std::vector<std::pair<const char*, std::string*>> out{{"app_secret", &a.app_secret},
                                                          {"verify_token", &a.verify_token},
                                                          {"access_token", &a.access_token}};
    for (MetaPage& p : a.pages) {  // the Page ids are not: a Page added or removed waits
      out.emplace_back("pages access_token", &p.access_token);
    }
    return out;
  } else {
    static_assert(std::is_same_v<Account, Telegram>);
    // All of it, its bot id (the part before ':') too: a token of another bot is applied like
    // a new token of the same one. The poller's offset names the bot it counts update_ids for,
    // and is dropped for another bot's (channels/social/telegram.hpp).
    return {{"bot_token", &a.bot_token}};
  }
}

// An account with its secrets blanked, to compare what else changed.
template <class Account>
Account without_secrets(Account a) {
  for (auto& [key, value] : secrets_of(a)) {
    value->clear();
  }
  return a;
}

template <class Account>
const Account* named(const std::vector<Account>& list, const std::string& name) {
  auto it = std::find_if(list.begin(), list.end(), [&](const auto& c) { return c.name == name; });
  return it == list.end() ? nullptr : &*it;
}

}  // namespace

template <class Account>
std::vector<std::string> take_secrets(Account& running, const std::vector<Account>& fresh) {
  const Account* next = named(fresh, running.name);
  if (next == nullptr || *next == running ||
      !(without_secrets(*next) == without_secrets(running))) {
    return {};
  }
  // Member by member, not the whole account: the pollers and senders that read it in place
  // (on the io thread) keep references to it and to its other members across their waits.
  Account copy = *next;
  auto to = secrets_of(running);
  auto from = secrets_of(copy);
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < to.size(); ++i) {
    if (*to[i].second != *from[i].second) {
      *to[i].second = std::move(*from[i].second);
      if (std::find(keys.begin(), keys.end(), to[i].first) == keys.end()) {
        keys.emplace_back(to[i].first);
      }
    }
  }
  return keys;
}

template std::vector<std::string> take_secrets(Imap&, const std::vector<Imap>&);
template std::vector<std::string> take_secrets(Smtp&, const std::vector<Smtp>&);
template std::vector<std::string> take_secrets(Twilio&, const std::vector<Twilio>&);
template std::vector<std::string> take_secrets(Telnyx&, const std::vector<Telnyx>&);
template std::vector<std::string> take_secrets(CallWebhook&, const std::vector<CallWebhook>&);
template std::vector<std::string> take_secrets(Mastodon&, const std::vector<Mastodon>&);
template std::vector<std::string> take_secrets(X&, const std::vector<X>&);
template std::vector<std::string> take_secrets(Meta&, const std::vector<Meta>&);
template std::vector<std::string> take_secrets(Telegram&, const std::vector<Telegram>&);

std::vector<std::string> take_secrets(Channels& running, const Channels& fresh) {
  std::vector<std::string> taken;
  auto take = [&taken](const char* kind, auto& was, const auto& now) {
    for (auto& c : was) {
      auto keys = take_secrets(c, now);
      if (keys.empty()) {
        continue;
      }
      std::string line = std::string(kind) + " " + c.name + ": ";
      for (std::size_t i = 0; i < keys.size(); ++i) {
        line += (i > 0 ? ", " : "") + keys[i];
      }
      taken.push_back(std::move(line));
    }
  };
  take("imap", running.imap, fresh.imap);
  take("smtp", running.smtp, fresh.smtp);
  take("twilio", running.twilio, fresh.twilio);
  take("telnyx", running.telnyx, fresh.telnyx);
  take("call_webhook", running.call_webhook, fresh.call_webhook);
  take("mastodon", running.mastodon, fresh.mastodon);
  take("x", running.x, fresh.x);
  take("meta", running.meta, fresh.meta);
  take("telegram", running.telegram, fresh.telegram);
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
  // Channels are set up at start: a new account, or a changed one, waits for a restart (its
  // secrets alone changed are applied: take_secrets). Named by kind and account, never with a
  // value (most of them hold secrets).
  auto accounts = [&out](const char* kind, const auto& was, const auto& now) {
    for (const auto& c : now) {
      const auto* before = named(was, c.name);
      if (before == nullptr) {
        out.push_back(std::string("channels.") + kind + " " + c.name + " (added)");
      } else if (!(without_secrets(*before) == without_secrets(c))) {
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
