#pragma once
// A Pipeline that hands everything to the real Store: tests derive from it and override submit()
// to watch or disturb the batches the email poller stores, the rest passing through unchanged.
#include <optional>
#include <string>
#include <vector>

#include "storage/pipeline.hpp"
#include "storage/store.hpp"

namespace sb::test {

class StoreForwarder : public Pipeline {
 public:
  explicit StoreForwarder(storage::Store& s) : store_(s) {}
  void submit(std::vector<Inbound> items, std::optional<CursorUpdate> cursor, Done done) override {
    store_.submit(std::move(items), std::move(cursor), std::move(done));
  }
  void submit_call_event(CallEventInput e, Done d) override {
    store_.submit_call_event(std::move(e), std::move(d));
  }
  void submit_provider_statuses(std::vector<ProviderStatus> s, Done d) override {
    store_.submit_provider_statuses(std::move(s), std::move(d));
  }
  std::optional<std::string> cursor(const std::string& a, const std::string& s) override {
    return store_.cursor(a, s);
  }
  std::optional<std::int64_t> cursor_written_at(const std::string& a,
                                                const std::string& s) override {
    return store_.cursor_written_at(a, s);
  }
  std::vector<std::string> sent_here(const std::vector<std::string>& ids) override {
    return store_.sent_here(ids);
  }

 protected:
  storage::Store& store_;
};

}  // namespace sb::test
