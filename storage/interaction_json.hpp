#pragma once
// The interaction JSON of SPEC section 5, built once when an interaction is stored and kept in
// interactions.payload; the Redis `payload` field and the API answers are that text.
#include <boost/json/object.hpp>

#include "core/interaction.hpp"

namespace sb::storage {

struct StoredMeta {
  std::string id;
  std::string conversation_id;
  std::string customer_id;  // "" for withheld callers
  std::string customer_name;
  std::string customer_tier;
  bool customer_is_new = false;
  std::int64_t received_at_ms = 0;
  std::string queue;
  std::string priority;
};

boost::json::object interaction_json(const Inbound& in, const StoredMeta& m);
boost::json::object call_json(const CallInfo& c);

}  // namespace sb::storage
