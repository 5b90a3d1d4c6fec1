#pragma once
// The daemon's side of one database, for the storage tests: messages stored by the real data
// path (Writer + Store), which makes a customer for an unknown sender, while `customers import`
// or the test itself works on another connection.
#include <doctest/doctest.h>

#include <future>
#include <string>
#include <vector>

#include "routing/rules.hpp"
#include "storage/sqlite.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/support/harness.hpp"

namespace sb::test {

struct Inbox {
  TempDir dir;
  std::string path = dir.file("sb.db");
  storage::Writer writer{path};  // migrates
  storage::Store store{writer, Rules::compile(config::Routing{})};
  storage::Db db{path};

  Inbox() { writer.start(); }

  // Stores a direct message from `from`, as the X, Telegram and WhatsApp channels fill it in
  // (the platform's user id or number, with the username or wa_id as handle); returns the id
  // of the customer it was matched to. `also`: the sender's other identities, as the ingest API
  // fills them in (Inbound::also_from).
  std::string receive(const std::string& channel, Identity from, std::vector<Identity> also = {}) {
    static int n = 0;
    Inbound in;
    in.channel = channel;
    in.account = channel;
    in.kind = "direct_message";
    in.external_id = "m" + std::to_string(++n);
    in.from = std::move(from);
    in.also_from = std::move(also);
    in.text = "hello";
    std::promise<std::vector<IngestOutcome>> p;
    store.submit({in}, std::nullopt, [&](std::vector<IngestOutcome> out) { p.set_value(out); });
    auto out = p.get_future().get();
    REQUIRE(out.at(0).error == "");
    auto st = db.prepare("SELECT customer_id FROM interactions WHERE id = ?1");
    st.bind(1, out.at(0).id);
    REQUIRE(st.step());
    return st.text(0);
  }

  // external_id|name|tier, and the identities, of customer `id`.
  std::string customer(const std::string& id) {
    auto st = db.prepare(
        "SELECT coalesce(external_id, '-') || '|' || name || '|' || tier FROM customers "
        "WHERE id = ?1");
    st.bind(1, id);
    return st.step() ? st.text(0) : "<no customer>";
  }
  std::string identities(const std::string& id) {
    auto st = db.prepare(
        "SELECT group_concat(type || ':' || value, ' ') FROM (SELECT type, value FROM identities "
        "WHERE customer_id = ?1 ORDER BY type, value)");
    st.bind(1, id);
    return st.step() ? st.text(0) : "<none>";
  }
  // The first column of the first row of `sql`.
  std::string count(const std::string& sql) {
    auto st = db.prepare(sql);
    return st.step() ? st.text(0) : "<no row>";
  }
};

}  // namespace sb::test
