#pragma once
// A real Writer + Store on a temporary SQLite database, without a server (shared by the call
// store tests): submit call events, run the 4-hour sweep and the release of held calls, read
// back with SQL.
#include <future>
#include <memory>
#include <string>

#include "channels/voice/routes.hpp"
#include "routing/rules.hpp"
#include "storage/sqlite.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/support/harness.hpp"

namespace sb::voice::test {

struct CallStore {
  ::sb::test::TempDir dir;
  std::string path = dir.file("calls.db");
  std::unique_ptr<storage::Writer> writer;
  std::unique_ptr<storage::Store> store;

  explicit CallStore(config::Routing routing = {}) {
    writer = std::make_unique<storage::Writer>(path);
    store = std::make_unique<storage::Store>(*writer, Rules::compile(routing));
    store->set_call_folder(voice::call_folder());
  }
  void start() { writer->start(); }

  IngestOutcome event(const std::string& call_id, const std::string& status, std::int64_t order_key,
                      const std::string& from = "", const std::string& recording_url = "") {
    CallEventInput ev;
    ev.call.channel = "voice";
    ev.call.account = "voice";
    ev.call.kind = "call";
    ev.call.direction = "inbound";
    ev.call.external_id = call_id;
    if (!from.empty()) {
      ev.call.from = Identity{"phone", from, "", ""};
    }
    ev.call.call = CallInfo{status, "inbound", -1, recording_url};
    ev.order_key = order_key;
    return submit(std::move(ev));
  }

  IngestOutcome submit(CallEventInput ev) {
    std::promise<IngestOutcome> p;
    store->submit_call_event(std::move(ev),
                             [&](std::vector<IngestOutcome> out) { p.set_value(out.at(0)); });
    return p.get_future().get();
  }

  // Stores anything but a call (a WhatsApp message, an ingest API post) as the channels do.
  IngestOutcome message(Inbound in) {
    std::promise<IngestOutcome> p;
    std::vector<Inbound> items;
    items.push_back(std::move(in));
    store->submit(std::move(items), std::nullopt,
                  [&](std::vector<IngestOutcome> out) { p.set_value(out.at(0)); });
    return p.get_future().get();
  }

  void exec(const std::string& sql) {
    storage::Db db(path);
    db.exec(sql);
  }

  storage::StaleSweep sweep_report(std::int64_t older_than_ms) {
    std::promise<storage::StaleSweep> p;
    store->close_stale_calls(older_than_ms, [&](const storage::StaleSweep& r) { p.set_value(r); });
    return p.get_future().get();
  }
  int sweep(std::int64_t older_than_ms) { return sweep_report(older_than_ms).closed; }
  // Queues the calls held because they ended with no direction known (Store::release_held_calls).
  storage::HeldRelease release_report(std::int64_t older_than_ms = 0) {
    std::promise<storage::HeldRelease> p;
    store->release_held_calls(older_than_ms,
                              [&](const storage::HeldRelease& r) { p.set_value(r); });
    return p.get_future().get();
  }
  int release(std::int64_t older_than_ms = 0) { return release_report(older_than_ms).released; }

  std::string text(const std::string& sql) {
    storage::Db db(path, true);
    auto st = db.prepare(sql);
    return st.step() ? st.text(0) : "<no row>";
  }
};

}  // namespace sb::voice::test
