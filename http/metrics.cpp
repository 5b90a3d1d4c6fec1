#include "http/metrics.hpp"

#include <charconv>
#include <cstdio>

#include "core/log.hpp"

namespace sb {

std::string render_labels(const Labels& labels) {
  if (labels.empty()) {
    return "";
  }
  std::string out = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i) {
      out += ',';
    }
    out += labels[i].first;
    out += "=\"";
    for (char c : labels[i].second) {
      if (c == '\\' || c == '"') {
        out += '\\';
        out += c;
      } else if (c == '\n') {
        out += "\\n";
      } else {
        out += c;
      }
    }
    out += '"';
  }
  out += '}';
  return out;
}

void CounterCache::inc(std::initializer_list<std::string_view> values, std::uint64_t n) {
  std::string key;
  for (auto v : values) {
    key.append(v).push_back('\x1f');
  }
  std::atomic<std::uint64_t>* series = nullptr;
  {
    std::lock_guard lock(mu_);
    if (auto it = series_.find(key); it != series_.end()) {
      series = it->second;
    } else {
      Labels labels;
      std::size_t i = 0;
      for (auto v : values) {
        labels.emplace_back(i < label_names_.size() ? label_names_[i] : "", std::string(v));
        ++i;
      }
      // The "_other" series is made when the cap is reached, so it is the (max_series + 1)th.
      if (max_series_ > 0 && series_.size() >= max_series_ && !labels.empty()) {
        if (!capped_) {
          capped_ = true;
          logger("http")->warn(
              "[metrics] {}: {} distinct label values; further {} values are counted as \"_other\"",
              name_, max_series_, labels.back().first);
        }
        labels.back().second = "_other";
        key.resize(key.size() - (values.end() - 1)->size() - 1);
        key.append("_other").push_back('\x1f');
        if (auto it = series_.find(key); it != series_.end()) {
          series = it->second;
        } else {
          series = series_[key] = &metrics_.counter(name_, labels);
        }
      } else {
        series = series_[key] = &metrics_.counter(name_, labels);
      }
    }
  }
  series->fetch_add(n, std::memory_order_relaxed);
}

Metrics::Metrics() {
  describe("switchboard_interactions_total", "counter",
           "Interactions stored, by channel and account (duplicates excluded).");
  describe("switchboard_duplicates_total", "counter",
           "Deliveries recognised as already stored and answered without a new interaction.");
  describe("switchboard_channel_errors_total", "counter",
           "Failures of a channel account: bad signatures, provider errors, parse failures.");
  describe("switchboard_http_requests_total", "counter", "HTTP requests by route and status code.");
  // Every counter counted somewhere in the daemon has its help here, in one place: a family
  // first made by counter() would print an empty `# HELP` (tests/spine/metrics_doc_test.cpp).
  describe("switchboard_email_unfetchable_total", "counter",
           "Email messages the server would not hand over after repeated FETCH attempts, stored "
           "as malformed placeholders.");
  describe("switchboard_sends_unknown_total", "counter",
           "Agent replies given up on without knowing whether the customer got them (no "
           "answer to a request that went out, on a platform without an idempotency key): "
           "check the conversation. Each is also a failed switchboard_replies_total.");
  describe("switchboard_replies_total", "counter",
           "Agent replies' send attempts by outcome, counted when the result is committed: sent, "
           "failed (given up: a permanent refusal or the last attempt; the customer has no "
           "answer), retried (another attempt scheduled).");
  describe("switchboard_social_polls_total", "counter",
           "Polls of a social account, successful or not (failed ones are also channel errors).");
  describe("switchboard_social_rate_limited_total", "counter",
           "Polls of a social account answered 429; the poller waits for the provider's reset.");
  describe("switchboard_social_send_errors_total", "counter",
           "Attempts to send an agent reply to a social platform that did not succeed (retried "
           "or failed).");
  describe("switchboard_social_send_statuses_total", "counter",
           "Delivery status reports of sent replies (WhatsApp: sent, delivered, read, failed), "
           "by status.");
  describe("switchboard_social_events_ignored_total", "counter",
           "Meta events answered but not stored, by kind: standby (another app or the Page Inbox "
           "owns the thread), message_edit, unsend.");
  histograms_["switchboard_ingest_seconds"] = std::make_unique<Histogram>(
      std::vector<double>{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5});
  describe("switchboard_ingest_seconds", "histogram",
           "Time from receipt of an ingest or webhook request to the durable commit of its data.");
}

void Metrics::describe(const std::string& name, const std::string& type, const std::string& help) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  f.type = type;
  f.help = help;
}

std::atomic<std::uint64_t>& Metrics::counter(const std::string& name, const Labels& labels) {
  std::lock_guard lock(mu_);
  auto& f = families_[name];
  if (f.type.empty()) {
    f.type = "counter";
  }
  auto& s = f.series[render_labels(labels)];
  if (!s) {
    s = std::make_unique<std::atomic<std::uint64_t>>(0);
  }
  return *s;
}

void Metrics::observe(const std::string& name, double seconds) {
  Histogram* h;
  {
    std::lock_guard lock(mu_);
    auto it = histograms_.find(name);
    if (it == histograms_.end()) {
      return;
    }
    h = it->second.get();
  }
  for (std::size_t i = 0; i < h->bounds.size(); ++i) {
    if (seconds <= h->bounds[i]) {
      h->buckets[i].fetch_add(1, std::memory_order_relaxed);
    }
  }
  h->count.fetch_add(1, std::memory_order_relaxed);
  h->sum_us.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Metrics::gauge(const std::string& name, const std::string& help, GaugeFn fn) {
  std::lock_guard lock(mu_);
  gauges_[name] = {"gauge", help, std::move(fn)};
}

void Metrics::sampled_counter(const std::string& name, const std::string& help, GaugeFn fn) {
  std::lock_guard lock(mu_);
  gauges_[name] = {"counter", help, std::move(fn)};
}

std::string Metrics::render() const {
  std::string out;
  std::map<std::string, Sampled> gauges;
  {
    std::lock_guard lock(mu_);
    gauges = gauges_;
    for (const auto& [name, f] : families_) {
      out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n";
      if (auto h = histograms_.find(name); h != histograms_.end()) {
        const auto& hist = *h->second;
        char buf[64];
        for (std::size_t i = 0; i < hist.bounds.size(); ++i) {
          std::snprintf(buf, sizeof buf, "%g", hist.bounds[i]);
          out +=
              name + "_bucket{le=\"" + buf + "\"} " + std::to_string(hist.buckets[i].load()) + "\n";
        }
        out += name + "_bucket{le=\"+Inf\"} " + std::to_string(hist.count.load()) + "\n";
        std::snprintf(buf, sizeof buf, "%.6f", static_cast<double>(hist.sum_us.load()) / 1e6);
        out += name + "_sum " + buf + "\n";
        out += name + "_count " + std::to_string(hist.count.load()) + "\n";
        continue;
      }
      for (const auto& [labels, v] : f.series) {
        out += name + labels + " " + std::to_string(v->load()) + "\n";
      }
    }
  }
  for (const auto& [name, g] : gauges) {
    out += "# HELP " + name + " " + g.help + "\n# TYPE " + name + " " + g.type + "\n";
    for (const auto& [labels, v] : g.fn()) {
      // Shortest text that reads back as the same double: 18.858, not 18.858000000000001.
      char buf[64];
      auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
      out += name + render_labels(labels) + " ";
      out.append(buf, end);
      out += "\n";
    }
  }
  return out;
}

}  // namespace sb
