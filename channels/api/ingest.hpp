#pragma once
// POST /v1/interactions (SPEC section 3, "Ingest"): the generic ingest API.
#include <optional>
#include <string>
#include <vector>

#include "core/interaction.hpp"
#include "http/metrics.hpp"
#include "http/router.hpp"
#include "storage/pipeline.hpp"

namespace sb::api {

struct ParsedIngest {
  std::optional<Inbound> inbound;
  std::string error_code;  // invalid_json | invalid_field
  std::string error;       // a sentence naming the field
};

// Validates a request body and normalises it into an Inbound of channel "api", account = the
// `source`. Identities are canonicalised (phones with `default_region`).
ParsedIngest parse_ingest(std::string_view body, std::string_view default_region);

struct IngestRoutes {
  Pipeline& pipeline;
  Metrics& metrics;
  const http::TokenSet& tokens;  // [api] tokens, as reloaded
  std::string default_region;
};

void add_routes(http::Router& router, IngestRoutes& deps);

}  // namespace sb::api
