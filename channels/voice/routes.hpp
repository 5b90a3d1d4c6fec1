#pragma once
// The three telephony webhook routes (SPEC section 3): the HTTP side of channels/voice.
//   POST /webhooks/twilio/{name}   POST /webhooks/telnyx/{name}   POST /webhooks/calls/{name}
// Each verifies the signature before anything is parsed or stored, folds the event into the
// call's one interaction, and answers only after the commit.
#include <string>

#include "config/config.hpp"
#include "http/metrics.hpp"
#include "http/router.hpp"
#include "storage/pipeline.hpp"
#include "storage/store.hpp"

namespace sb::voice {

struct VoiceRoutes {
  Pipeline& pipeline;
  Metrics& metrics;
  config::Channels channels;  // twilio, telnyx, call_webhook are read
  std::string default_region;
};

void add_routes(http::Router& router, VoiceRoutes& deps);

// The storage-side fold (storage::CallFolder) backed by fold_call().
storage::CallFolder call_folder();

}  // namespace sb::voice
