#pragma once
// A delivery status notification (RFC 3464) about a reply we sent: the agent sees on the
// reply's timeline that it bounced, instead of a send that reads "sent" for good.
#include <cstdint>
#include <string>

#include "core/interaction.hpp"
#include "storage/sqlite.hpp"

namespace sb::storage {

// `in` is a stored bounce (flag `bounce`) whose report names a message (Inbound::report), stored
// as interaction `report_id`. When that message is one of our replies through the same account
// (sends.provider_id, the Message-ID the send went out with; sends_by_provider), the reply gets
// a provider_status event {"status": the report's Action ("failed", "delayed", ...), "error":
// Status, Diagnostic-Code and Final-Recipient, "report_id"}, and a failed delivery turns a
// send in state "sent" to "failed" with last_error "bounced: ...". Returns the reply's id, ""
// when the report names none of ours. On the writer thread, in the bounce's transaction.
std::string record_bounce(Db& db, const Inbound& in, const std::string& report_id,
                          std::int64_t now);

}  // namespace sb::storage
