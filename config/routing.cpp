// [routing] and its [[routing.rules]]: queues, priorities and the conditions of each rule.

#include "config/reader.hpp"
#include "config/sections.hpp"
#include "config/validate.hpp"
#include "core/regex.hpp"

namespace sb::config::detail {

namespace {

void check_queue(TableReader& r, std::string_view key, const std::string& queue) {
  // Queue names become Redis keys ({prefix}:q:{queue}:{priority}); a ':' would be ambiguous.
  if (!queue.empty() && !is_simple_name(queue)) {
    r.ctx().add(r.line_of_key(key), r.dotted(key) + ": invalid queue name \"" + queue +
                                        "\" (letters, digits, '.', '_' or '-')");
  }
}

// The routing layer compiles the same source with the same flags; compiling here means a broken
// regex is rejected by check-config and by a SIGHUP reload, with its line.
void check_regex(TableReader& r, std::string_view key, const std::optional<std::string>& source) {
  if (!source) {
    return;
  }
  try {
    Regex re(*source);
  } catch (const std::invalid_argument& e) {
    r.ctx().add(r.line_of_key(key),
                r.dotted(key) + ": invalid regex \"" + *source + "\": " + e.what());
  }
}

void check_vocabulary(TableReader& r, std::string_view key, const std::optional<std::string>& value,
                      bool (*valid)(std::string_view), std::string (*all)()) {
  if (value && !valid(*value)) {
    r.ctx().add(r.line_of_key(key),
                r.dotted(key) + " must be one of " + all() + " (got \"" + *value + "\")");
  }
}

void read_when(TableReader& rule, RuleWhen& when) {
  const toml::table* table = rule.table("when");
  if (table == nullptr) {
    return;  // no conditions: the rule matches everything
  }
  TableReader r(rule.ctx(), *table, "routing.rules.when");
  r.str("channel", when.channel);
  check_vocabulary(r, "channel", when.channel, is_interaction_channel, interaction_channels);
  r.str("account", when.account);
  r.str("kind", when.kind);
  check_vocabulary(r, "kind", when.kind, is_interaction_kind, interaction_kinds);
  r.str("customer_tier", when.customer_tier);
  r.str("customer_tag", when.customer_tag);
  r.str("subject_matches", when.subject_matches);
  check_regex(r, "subject_matches", when.subject_matches);
  r.str("text_matches", when.text_matches);
  check_regex(r, "text_matches", when.text_matches);
  if (r.strings("call_status", when.call_status)) {
    for (const std::string& status : when.call_status) {
      if (!is_call_status(status)) {
        r.ctx().add(r.line_of_key("call_status"),
                    "routing.rules.when.call_status: unknown call "
                    "status \"" +
                        status + "\" (one of " + call_statuses() + ")");
      }
    }
  }
  r.boolean("is_new_customer", when.is_new_customer);
  r.strings("flags", when.flags);
  r.finish();
}

}  // namespace

void read_routing(TableReader& root, Routing& out) {
  const toml::table* table = root.table("routing");
  if (table == nullptr) {
    return;
  }
  TableReader r(root.ctx(), *table, "routing");
  std::string default_queue;
  if (r.str("default_queue", default_queue)) {
    if (default_queue.empty()) {
      r.ctx().add(r.line_of_key("default_queue"), "routing.default_queue must not be empty");
    } else {
      check_queue(r, "default_queue", default_queue);
      out.default_queue = default_queue;
    }
  }
  std::chrono::milliseconds claim_timeout{};
  if (r.duration("claim_timeout", claim_timeout)) {
    // A release parks its entry idle ten years (agents/scripts.hpp kReleaseIdleMs) and a claim
    // tells it from a timed-out claim by that: claim_timeout must stay far below it. Thirty days
    // is longer than anyone holds a support item.
    if (claim_timeout > std::chrono::hours(720)) {
      r.ctx().add(r.line_of_key("claim_timeout"),
                  "routing.claim_timeout must be at most \"720h\" (30 days)");
    } else {
      out.claim_timeout = claim_timeout;
    }
  }
  std::int64_t max_deliveries = 0;
  if (r.integer("max_deliveries", max_deliveries, 1, 1000)) {
    out.max_deliveries = static_cast<int>(max_deliveries);
  }
  std::int64_t max_waiting = 0;
  if (r.integer("max_waiting_claims_per_agent", max_waiting, 1, 10000)) {
    out.max_waiting_claims_per_agent = static_cast<int>(max_waiting);
  }
  for (const toml::table* rule_table : r.tables("rules")) {
    TableReader rr(r.ctx(), *rule_table, "routing.rules");
    Rule rule;
    rule.line = rr.line();
    if (!rr.str("name", rule.name)) {
      rule.name = "rule at line " + std::to_string(rule.line);
    }
    if (rr.str("queue", rule.queue, true)) {
      check_queue(rr, "queue", rule.queue);
    }
    rr.one_of("priority", rule.priority, {"urgent", "high", "normal", "low"});
    rr.boolean("override_sticky", rule.override_sticky);
    read_when(rr, rule.when);
    rr.finish();
    out.rules.push_back(std::move(rule));
  }
  r.finish();
}

}  // namespace sb::config::detail
