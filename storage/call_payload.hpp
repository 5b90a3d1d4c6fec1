#pragma once
// A stored call's payload, read and rewritten without rebuilding it: every event of a call
// (three or more a call) changes its "call" object, and at the end its "queue" and "priority".
// simdjson finds the byte ranges of those values; the new payload is the old text with them
// replaced. A full parse and serialise with boost::json cost ~26k instructions an event.
#include <optional>
#include <string>
#include <string_view>

#include "core/interaction.hpp"

namespace sb::storage {

struct CallPayload {
  CallInfo call;  // as stored
  std::string queue, priority, conversation_id;
  std::string customer_id, customer_tier;
  std::string from_value;  // "from"."value": the caller's number, "" when none yet
  bool customer_is_new = false;
  // Byte ranges of the raw values in the payload text.
  struct Range {
    std::size_t at = 0, size = 0;
  };
  Range call_range, queue_range, priority_range;
};

// nullopt when the text is not a payload with a "call" object, "queue" and "priority".
std::optional<CallPayload> read_call_payload(std::string_view payload);

// The payload with its "call" object (and, when given, "queue" and "priority") replaced.
std::string rewrite_call_payload(std::string_view payload, const CallPayload& where,
                                 const CallInfo& call, const std::string* queue,
                                 const std::string* priority);

// The payload with its "from" and "customer" values replaced, and "to" and "direction" when
// the direction is known (a call stored before any event named its caller, or with a caller
// taken for the wrong party). Rare: a full parse and serialise.
std::string with_caller(std::string_view payload, const Identity& from, const std::string& id,
                        const std::string& name, const std::string& tier, bool is_new,
                        const std::optional<Identity>& line = std::nullopt,
                        std::string_view direction = {});

// The payload with "from" set to the caller as sent, without a customer: a call held back
// because nothing told its direction yet (Store::apply_call_event). Rare: a full parse.
std::string with_unmatched_from(std::string_view payload, const Identity& from);

}  // namespace sb::storage
