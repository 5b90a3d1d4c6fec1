#include "tests/integration/agent_api.hpp"

#include <doctest/doctest.h>

namespace sb::test {
namespace json = boost::json;

json::object parse_object(const std::string& body) {
  json::error_code ec;
  auto v = json::parse(body, ec);
  REQUIRE_MESSAGE((!ec && v.is_object()), "not a JSON object: " << body);
  return v.as_object();
}

std::string s(const json::value& v) {
  return v.is_string() ? std::string(v.as_string()) : "";
}

json::object AgentClient::claim(const std::string& queue, int wait_ms) {
  json::object o{{"queue", queue}, {"wait_ms", wait_ms}};
  auto r = http.post_json("/v1/agent/claim", json::serialize(o), token);
  REQUIRE_MESSAGE(r.status == 200, "claim answered " << r.status << " " << r.body);
  return parse_object(r.body).at("interaction").as_object();
}

HttpResponse AgentClient::act(const std::string& id, const std::string& action,
                              const std::string& body) {
  return http.post_json("/v1/agent/interactions/" + id + "/" + action, body, token);
}

std::string AgentClient::reply(const std::string& id, const std::string& text) {
  auto r = act(id, "reply", json::serialize(json::object{{"text", text}}));
  REQUIRE_MESSAGE(r.status == 202, "reply answered " << r.status << " " << r.body);
  auto o = parse_object(r.body);
  CHECK(s(o.at("in_reply_to")) == id);
  return s(o.at("id"));
}

json::array AgentClient::timeline(const std::string& customer_id) {
  auto r = http.request("GET", "/v1/customers/" + customer_id + "/interactions", "",
                        {{"Authorization", "Bearer " + token}});
  REQUIRE_MESSAGE(r.status == 200, "timeline answered " << r.status << " " << r.body);
  return parse_object(r.body).at("interactions").as_array();
}

json::object AgentClient::outbound_when(const std::string& customer_id, const std::string& id,
                                        const std::string& state, int attempts,
                                        std::chrono::milliseconds limit) {
  json::object found;
  bool ok = eventually(
      [&] {
        for (const auto& i : timeline(customer_id)) {
          const auto& o = i.as_object();
          if (s(o.at("id")) == id && o.contains("send") && s(o.at("send").at("state")) == state &&
              (attempts <= 0 || o.at("send").at("attempts").as_int64() == attempts)) {
            found = o;
            return true;
          }
        }
        return false;
      },
      limit);
  REQUIRE_MESSAGE(ok, "outbound " << id << " never reached send state " << state << ": "
                                  << json::serialize(timeline(customer_id)));
  return found;
}

}  // namespace sb::test
