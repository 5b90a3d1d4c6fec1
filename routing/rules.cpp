#include "routing/rules.hpp"

#include <algorithm>

#include "core/log.hpp"

namespace sb {

bool is_priority(std::string_view p) {
  return std::find(std::begin(kPriorities), std::end(kPriorities), p) != std::end(kPriorities);
}

std::shared_ptr<const Rules> Rules::compile(const config::Routing& routing,
                                            const std::vector<config::Agent>& agents) {
  auto r = std::make_shared<Rules>();
  r->default_queue_ = routing.default_queue;
  auto add = [&r](const std::string& q) {
    if (std::find(r->queues_.begin(), r->queues_.end(), q) == r->queues_.end()) {
      r->queues_.push_back(q);
    }
  };
  add(routing.default_queue);
  for (const auto& rule : routing.rules) {
    Compiled c{rule, std::nullopt, std::nullopt};
    if (rule.when.subject_matches) {
      c.subject_re.emplace(*rule.when.subject_matches);
    }
    if (rule.when.text_matches) {
      c.text_re.emplace(*rule.when.text_matches);
    }
    r->rules_.push_back(std::move(c));
    add(rule.queue);
  }
  for (const auto& a : agents) {
    for (const auto& q : a.queues) {
      add(q);
    }
  }
  return r;
}

bool Rules::matches(const Compiled& c, const RuleSubject& s) {
  const auto& w = c.rule.when;
  const Inbound& in = s.interaction;
  if (w.channel && *w.channel != in.channel) {
    return false;
  }
  if (w.account && *w.account != in.account) {
    return false;
  }
  if (w.kind && *w.kind != in.kind) {
    return false;
  }
  if (w.customer_tier && *w.customer_tier != s.customer_tier) {
    return false;
  }
  if (w.customer_tag && std::find(s.customer_tags.begin(), s.customer_tags.end(),
                                  *w.customer_tag) == s.customer_tags.end()) {
    return false;
  }
  if (w.is_new_customer && *w.is_new_customer != s.is_new_customer) {
    return false;
  }
  if (!w.call_status.empty()) {
    if (!in.call || std::find(w.call_status.begin(), w.call_status.end(), in.call->status) ==
                        w.call_status.end()) {
      return false;
    }
  }
  if (!w.flags.empty()) {
    bool any = std::any_of(w.flags.begin(), w.flags.end(), [&](const std::string& f) {
      return (!s.added_flag.empty() && f == s.added_flag) ||
             std::find(in.flags.begin(), in.flags.end(), f) != in.flags.end();
    });
    if (!any) {
      return false;
    }
  }
  if (c.subject_re && !regex_matches(c, *c.subject_re, in.subject, in)) {
    return false;
  }
  if (c.text_re && !regex_matches(c, *c.text_re, in.text, in)) {
    return false;
  }
  return true;
}

// A pattern that gives up on this text (the match or heap limit of a pathological pattern) does
// not match: the interaction goes on to the next rule, and the log says which rule could not
// decide.
bool Rules::regex_matches(const Compiled& c, const Regex& re, std::string_view text,
                          const Inbound& in) {
  std::string why;
  auto m = re.search(text, &why);
  if (!m) {
    logger("routing")->warn(
        "[rules] rule \"{}\": the regex \"{}\" gave up on {} bytes of {} {} {} ({}); taken "
        "as no match",
        c.rule.name, re.pattern(), text.size(), in.channel, in.account, in.external_id, why);
  }
  return m.value_or(false);
}

Route Rules::decide(const RuleSubject& s) const {
  for (const auto& c : rules_) {
    if (matches(c, s)) {
      return Route{c.rule.queue, c.rule.priority, c.rule.name, c.rule.override_sticky};
    }
  }
  return Route{default_queue_, "normal", "", false};
}

bool Rules::configured(std::string_view queue) const {
  return std::find(queues_.begin(), queues_.end(), queue) != queues_.end();
}

}  // namespace sb
