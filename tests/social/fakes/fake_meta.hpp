#pragma once
// A fake Meta Graph API for replies: POST /me/messages (Messenger/Instagram Send API) and
// POST /{phone_number_id}/messages (WhatsApp Cloud API), answering the documented success
// bodies, or the documented error for a reply outside the 24-hour window when asked to. A
// WhatsApp reply names a phone number as `to` or a business-scoped user id as `recipient`; a
// `to` that is no number, or neither field, is refused (error 100).
#include <mutex>
#include <string>
#include <vector>

#include "tests/social/fakes/fake_http.hpp"

namespace sb::test {

class FakeMetaGraph {
 public:
  struct Sent {
    std::string path, body;
  };
  explicit FakeMetaGraph(std::string token = "meta-token");
  void start() { server_.start(); }
  void stop() { server_.stop(); }
  std::string base_url() const { return server_.base_url(); }
  void outside_window_next();  // the next send fails with the 24-hour window error
  std::vector<Sent> sent() const;

 private:
  std::string token_;
  mutable std::mutex mu_;
  std::vector<Sent> sent_;
  bool outside_window_ = false;
  int next_ = 1;
  FakeHttpServer server_;
};

}  // namespace sb::test
