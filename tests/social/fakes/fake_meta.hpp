#pragma once
// A fake Meta Graph API for replies: POST /me/messages (Messenger/Instagram Send API) and
// POST /{phone_number_id}/messages (WhatsApp Cloud API) and POST /{ig-comment-id}/replies
// (an Instagram comment reply, `message` form-encoded), answering the documented success
// bodies, or the documented error for a reply outside the 24-hour window when asked to. A
// WhatsApp reply names a phone number as `to` or a business-scoped user id as `recipient`; a
// `to` that is no number, or neither field, is refused (error 100). Answers can be lost on
// demand: the message is delivered and the connection closes without an answer.
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/social/fakes/fake_http.hpp"

namespace sb::test {

class FakeMetaGraph {
 public:
  struct Sent {
    std::string path, body;
    std::string token;  // the access token it came with (Authorization: Bearer)
  };
  explicit FakeMetaGraph(std::string token = "meta-token");
  // Another token the fake accepts: a Page's own access token (config::MetaPage).
  void accept_token(std::string token);
  void start(std::uint16_t port = 0) { server_.start(port); }
  void stop() { server_.stop(); }
  std::string base_url() const { return server_.base_url(); }
  void outside_window_next();  // the next send fails with the 24-hour window error
  // The next send is answered with `status` and `body` (a Graph API error) and `headers`, not
  // delivered.
  void error_next(int status, std::string body,
                  std::vector<std::pair<std::string, std::string>> headers = {});
  // Sends asked for (POST .../messages or .../replies), delivered or refused.
  int requests() const;
  // The next `n` sends are delivered (in sent()), and their answers lost.
  void lose_next_answers(int n);
  // The next send is delivered (in sent()) and answered with this status and body (a 5xx from
  // a gateway that had passed the request on).
  void answer_next_send(int status, std::string body);
  std::vector<Sent> sent() const;

 private:
  std::string token_;
  mutable std::mutex mu_;
  std::vector<std::string> page_tokens_;
  std::vector<Sent> sent_;
  bool outside_window_ = false;
  int error_status_ = 0;
  std::string error_body_;
  std::vector<std::pair<std::string, std::string>> error_headers_;
  int requests_ = 0;
  int lose_answers_ = 0;
  std::optional<std::pair<int, std::string>> answer_;
  int next_ = 1;
  FakeHttpServer server_;
};

}  // namespace sb::test
