#include "channels/email/imap_error.hpp"

#include <string>

namespace sb::email::imap {
namespace {

class category : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "imap"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::protocol:
        return "IMAP protocol error";
      case errc::rejected:
        return "command rejected (NO)";
      case errc::bad_command:
        return "command refused as invalid (BAD)";
      case errc::server_bye:
        return "server closed the session (BYE)";
      case errc::auth_failed:
        return "authentication failed";
      case errc::tls_required:
        return "tls = \"none\" is only allowed to loopback addresses";
      case errc::capability_missing:
        return "server lacks a required capability";
      case errc::body_unavailable:
        return "the server answered a message's content as NIL";
      case errc::too_much_data:
        return "the server sent more for one command than the client keeps in memory";
      case errc::message_missing:
        return "the server answered the UID FETCH with OK but left out a message it still lists";
    }
    return "unknown IMAP error";
  }
};

}  // namespace

const boost::system::error_category& imap_category() {
  static const category c;
  return c;
}

boost::system::error_code make_error_code(errc e) {
  return {static_cast<int>(e), imap_category()};
}

bool retryable(const boost::system::error_code& ec) {
  if (ec.category() == imap_category()) {
    auto e = static_cast<errc>(ec.value());
    return e == errc::protocol || e == errc::server_bye || e == errc::rejected ||
           e == errc::body_unavailable || e == errc::too_much_data || e == errc::message_missing;
  }
  return true;  // network and TLS-transport errors: try again with back-off
}

}  // namespace sb::email::imap
