#include "core/provider_wait.hpp"

#include <cmath>

#include "core/log.hpp"

namespace sb {

std::chrono::milliseconds bound_provider_wait(std::chrono::duration<double> asked,
                                              WaitBounds bounds, const std::string& layer,
                                              std::string_view channel, std::string_view account,
                                              std::string_view what) {
  using std::chrono::milliseconds;
  const double s = asked.count();
  const double lo = std::chrono::duration<double>(bounds.min).count();
  const double hi = std::chrono::duration<double>(bounds.max).count();
  if (s >= lo && s <= hi) {  // false for NaN as well
    return milliseconds(static_cast<long long>(std::ceil(s * 1000)));
  }
  milliseconds out = s > hi ? bounds.max : bounds.min;
  logger(layer)->warn(
      "[{}:{}] {} asks for a wait of {:g} s; waiting {:g} s instead (bounds {:g} "
      "to {:g} s)",
      channel, account, what, s, out.count() / 1000.0, lo, hi);
  return out;
}

}  // namespace sb
