#pragma once
// Routing rules (SPEC section 2, [[routing.rules]]): first match wins, in file order; no match
// goes to routing.default_queue at priority "normal". Regexes are compiled once, at load; a set
// of rules is immutable and swapped whole on SIGHUP (std::shared_ptr<const Rules>).
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/interaction.hpp"
#include "core/regex.hpp"

namespace sb {

struct RuleSubject {
  const Inbound& interaction;
  std::string_view customer_tier;
  const std::vector<std::string>& customer_tags;
  bool is_new_customer = false;
  // A flag the store gives the payload beside the interaction's own (reply_to_differs, found
  // only against the database); rules match it as one of `interaction.flags`. "" for none.
  std::string_view added_flag = {};
};

struct Route {
  std::string queue;
  std::string priority;
  std::string rule;  // the matching rule's name, "" for the default
  bool override_sticky = false;
};

class Rules {
 public:
  // Throws std::invalid_argument on a bad regex (config validation reports it before this).
  // `agents`: their queues are configured queues too (see queues()).
  static std::shared_ptr<const Rules> compile(const config::Routing& routing,
                                              const std::vector<config::Agent>& agents = {});

  Route decide(const RuleSubject& s) const;
  const std::string& default_queue() const { return default_queue_; }
  // The configured queues: the default queue, every rule's and every agent's, in that order.
  // They get streams and consumer groups; a transfer may move an item into them only, and a
  // conversation stays (sticky) in one of them only. Held here, with the rules, so that a
  // reload changes both at once.
  const std::vector<std::string>& queues() const { return queues_; }
  bool configured(std::string_view queue) const;

 private:
  struct Compiled {
    config::Rule rule;
    std::optional<Regex> subject_re;
    std::optional<Regex> text_re;
  };
  static bool matches(const Compiled& c, const RuleSubject& s);
  static bool regex_matches(const Compiled& c, const Regex& re, std::string_view text,
                            const Inbound& in);

  std::string default_queue_;
  std::vector<Compiled> rules_;
  std::vector<std::string> queues_;
};

// The order of priorities, most urgent first, as used for stream names.
inline constexpr const char* kPriorities[] = {"urgent", "high", "normal", "low"};
bool is_priority(std::string_view p);

}  // namespace sb
