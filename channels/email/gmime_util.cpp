#include "channels/email/gmime_util.hpp"

#include <mutex>

namespace sb::email {

void ensure_gmime_initialised() {
  static std::once_flag once;
  // GMime keeps global charset and iconv caches behind its own locks once initialised; only the
  // initialisation itself must not race.
  std::call_once(once, [] { g_mime_init(); });
}

}  // namespace sb::email
