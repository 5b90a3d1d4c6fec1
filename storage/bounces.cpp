#include "storage/bounces.hpp"

#include <algorithm>
#include <boost/json.hpp>

#include "storage/reply_failure.hpp"

namespace sb::storage {

std::string record_bounce(Db& db, const Inbound& in, const std::string& report_id,
                          std::int64_t now) {
  const auto& r = in.report;
  if (r.message_id.empty() ||
      std::find(in.flags.begin(), in.flags.end(), "bounce") == in.flags.end()) {
    return {};
  }
  // provider_id, not planned_id: a report follows a send the server took, which records the
  // Message-ID it went out with there (also for replies stored before planned_id existed), and
  // sends_by_provider serves the lookup.
  auto find = db.prepare(
      "SELECT interaction_id, state FROM sends WHERE channel=?1 AND account=?2 AND provider_id=?3");
  find.bind(1, in.channel).bind(2, in.account).bind(3, r.message_id);
  if (!find.step()) {
    return {};
  }
  std::string reply_id = find.text(0);
  std::string state = find.text(1);
  find.reset();
  std::string error;
  for (const std::string* part : {&r.status, &r.diagnostic}) {
    if (!part->empty()) {
      error += (error.empty() ? "" : " ") + *part;
    }
  }
  if (!r.recipient.empty()) {
    error += (error.empty() ? "" : " ") + ("(" + r.recipient + ")");
  }
  // Only a report of failure fails the send: "delayed" (still trying), "delivered", "relayed"
  // and "expanded" are news about a message that may yet arrive (RFC 3464 2.3.3).
  if (r.action == "failed" && state == "sent") {
    const std::string why = "bounced" + (error.empty() ? "" : ": " + error);
    // The parent is told, and back to work when finished (a repeated report finds the send
    // failed, this branch not taken).
    tell_parent_of_failure(db, reply_id, why, now);
    auto fail = db.prepare(
        "UPDATE sends SET state='failed', last_error=?2, updated_at=?3 WHERE interaction_id=?1");
    fail.bind(1, reply_id).bind(2, why).bind(3, now);
    fail.run();
  }
  boost::json::object detail{{"status", r.action.empty() ? "unknown" : r.action},
                             {"report_id", report_id}};
  if (!error.empty()) {
    detail["error"] = error;
  }
  auto event = db.prepare(
      "INSERT OR IGNORE INTO events(interaction_id, at, actor, type, detail) "
      "VALUES (?1, ?2, ?3, 'provider_status', ?4)");
  event.bind(1, reply_id).bind(2, now).bind(3, in.channel);
  event.bind(4, boost::json::serialize(detail)).run();
  return reply_id;
}

}  // namespace sb::storage
