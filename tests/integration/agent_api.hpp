#pragma once
// An agent speaking the HTTP agent API to a daemon under test: claim, act, and read the
// customer timeline (GET /v1/customers/{id}/interactions).
#include <boost/json.hpp>
#include <cstdint>
#include <string>

#include "tests/support/harness.hpp"

namespace sb::test {

struct AgentClient {
  HttpClient http;
  std::string token;
  AgentClient(std::uint16_t port, std::string token_) : http(port), token(std::move(token_)) {}

  // POST /v1/agent/claim (waits up to wait_ms); REQUIREs a 200 and returns the interaction.
  boost::json::object claim(const std::string& queue, int wait_ms = 5000);
  // POST /v1/agent/interactions/{id}/<action>.
  HttpResponse act(const std::string& id, const std::string& action,
                   const std::string& body = "{}");
  // POST .../reply with `text`; REQUIREs a 202 and returns the outbound interaction id.
  std::string reply(const std::string& id, const std::string& text);
  // The customer's interactions, newest first.
  boost::json::array timeline(const std::string& customer_id);
  // The outbound interaction `id` of the customer's timeline once its send state is `state`
  // (after `attempts` attempts when > 0; waits up to `limit`); REQUIREs it gets there.
  boost::json::object outbound_when(const std::string& customer_id, const std::string& id,
                                    const std::string& state, int attempts = 0,
                                    std::chrono::milliseconds limit = std::chrono::seconds(15));
};

boost::json::object parse_object(const std::string& body);
std::string s(const boost::json::value& v);  // a JSON string's value

}  // namespace sb::test
