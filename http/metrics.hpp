#pragma once
// A small Prometheus registry: labelled counters, one histogram family, and gauges read at
// scrape time. Counter lookups are by the full series name under a mutex; callers on hot paths
// keep the returned pointer (series live as long as the registry).
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace sb {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  Metrics();
  std::atomic<std::uint64_t>& counter(const std::string& name, const Labels& labels = {});
  void inc(const std::string& name, const Labels& labels = {}, std::uint64_t n = 1) {
    counter(name, labels).fetch_add(n, std::memory_order_relaxed);
  }
  // Histogram of seconds; buckets fixed at construction of the family.
  void observe(const std::string& name, double seconds);
  // A gauge family evaluated at scrape time: returns (labels, value) samples.
  using GaugeFn = std::function<std::vector<std::pair<Labels, double>>()>;
  void gauge(const std::string& name, const std::string& help, GaugeFn fn);
  // The same for a count kept elsewhere that only grows (a `_total`): typed counter, so that
  // rate() and the exposition format's checkers take it as one.
  void sampled_counter(const std::string& name, const std::string& help, GaugeFn fn);
  void describe(const std::string& name, const std::string& type, const std::string& help);

  std::string render() const;  // text exposition format 0.0.4

 private:
  struct Family {
    std::string type, help;
    std::map<std::string, std::unique_ptr<std::atomic<std::uint64_t>>> series;  // key: {labels}
  };
  struct Histogram {
    std::vector<double> bounds;
    std::vector<std::atomic<std::uint64_t>> buckets;
    std::atomic<std::uint64_t> count{0};
    std::atomic<std::uint64_t> sum_us{0};
    explicit Histogram(std::vector<double> b) : bounds(std::move(b)), buckets(bounds.size()) {}
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
  std::map<std::string, std::unique_ptr<Histogram>> histograms_;
  struct Sampled {
    std::string type, help;
    GaugeFn fn;
  };
  std::map<std::string, Sampled> gauges_;
};

std::string render_labels(const Labels& labels);

// The series of one counter family by their label values, each looked up in the registry once
// and then kept: counting on a hot path (every request) without building Labels, rendering them
// and searching the registry, which cost about 4k instructions a count.
//
// A label whose values come from clients (an ingest request's `source`) would add a series per
// value, for the life of the process, and each makes every scrape longer. `max_series` (0: no
// cap) bounds them: once that many exist, values not seen yet are counted with their last label
// (the client-given one) set to "_other", and that is logged once.
class CounterCache {
 public:
  CounterCache(Metrics& metrics, std::string name, std::vector<std::string> label_names,
               std::size_t max_series = 0)
      : metrics_(metrics),
        name_(std::move(name)),
        label_names_(std::move(label_names)),
        max_series_(max_series) {}
  // `values` in the order of the label names.
  void inc(std::initializer_list<std::string_view> values, std::uint64_t n = 1);

 private:
  Metrics& metrics_;
  const std::string name_;
  const std::vector<std::string> label_names_;
  const std::size_t max_series_;
  std::mutex mu_;
  std::map<std::string, std::atomic<std::uint64_t>*, std::less<>> series_;  // values, \x1f-joined
  bool capped_ = false;  // the cap was reached (and logged)
};

}  // namespace sb
