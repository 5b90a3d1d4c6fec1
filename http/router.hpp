#pragma once
// Routes and the request/response types handlers see. Kept free of Beast so that handlers
// (channels, agents, ops) compile fast; http/server.cpp is the only Beast user.
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sb::http {

struct Request {
  std::string_view method;  // "GET", "POST", ...
  std::string_view target;  // path + query, as received
  std::string_view path;
  std::string_view query;  // without '?'
  std::string_view body;
  std::function<std::string_view(std::string_view)> header;  // case-insensitive, "" if absent
  std::map<std::string, std::string> params;                 // {name} segments of the route
  // Whether the client has closed its end (or reset) while the handler runs; null when not
  // known. For long-polls: an answer nobody will read must not take work with it.
  std::function<bool()> peer_gone;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

// SPEC section 3: every error is {"error":{"code":"<snake_case>","message":"<sentence>"}}.
Response error(int status, std::string_view code, std::string_view message);
// 401 "unauthorized" with the Bearer challenge: a missing or unknown API or agent token.
Response unauthorized(std::string_view message);
Response json(int status, std::string body);

using Handler = std::function<boost::asio::awaitable<Response>(Request&)>;
// A check of the request line and header fields alone, run before the body is read when it did
// not come with the header: the answer to send instead (a 401 for a missing or unknown bearer
// token), or nullopt to read the body and call the handler. The handler still checks for
// itself; a gate only spares the server the body of a request it would refuse anyway (and
// spares the client sending it: no 100 Continue). `body` is empty here.
using Gate = std::function<std::optional<Response>(const Request&)>;

class Router {
 public:
  // pattern: "/v1/agent/interactions/{id}/ack"; `{name}` matches one non-empty segment.
  // `label` names the route in metrics (the pattern itself by default).
  // `gate`: see Gate; routes authenticated by a bearer token have one, signed webhooks cannot
  // (the signature covers the body).
  void add(std::string method, std::string pattern, Handler h, Gate gate = nullptr);

  struct Match {
    const Handler* handler = nullptr;
    const Gate* gate = nullptr;  // with handler, when the route has one
    std::string label;           // for metrics: the pattern, or "unmatched"
    bool path_known = false;     // the path matched some route, but not with this method (405)
    std::string allow;           // with path_known: the path's methods, for the 405's Allow
  };
  Match find(std::string_view method, std::string_view path,
             std::map<std::string, std::string>& params) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
    Gate gate;
  };
  std::vector<Route> routes_;
};

// Authorization: Bearer <token> -> token, "" when absent or malformed.
std::string_view bearer_token(const Request& r);
// Constant-time comparison (CRYPTO_memcmp) of a presented secret with a known one.
bool secret_equals(std::string_view presented, std::string_view known);

// The [api] tokens: read by every request, replaced by a reload (SIGHUP), so that a leaked
// token is revoked without a restart. A presented token is compared with each, in constant time.
class TokenSet {
 public:
  explicit TokenSet(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}
  bool contains(std::string_view presented) const;
  void replace(std::vector<std::string> tokens);

 private:
  mutable std::mutex mu_;
  std::vector<std::string> tokens_;
};

}  // namespace sb::http
