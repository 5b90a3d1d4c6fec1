// The pollers and senders hold their account by reference (pollers.hpp, senders.hpp): a
// temporary one must not compile, it would dangle once the make_* call returns.
#include <doctest/doctest.h>

#include "channels/social/pollers.hpp"
#include "channels/social/senders.hpp"

namespace {

using sb::social::Runtime;
namespace config = sb::config;

// Whether fn(rt, account) compiles for an account of type Cfg (an lvalue for Cfg&, a temporary
// for a plain Cfg). A variable template, so that a deleted overload makes it false rather than
// the program ill-formed.
#define SB_TAKES(name, fn)                                 \
  template <class Cfg>                                     \
  constexpr bool name = requires(Runtime & rt, Cfg && c) { \
    fn(rt, static_cast<Cfg&&>(c));                         \
  };

SB_TAKES(mastodon_poller, sb::social::make_mastodon_poller)
SB_TAKES(x_poller, sb::social::make_x_poller)
SB_TAKES(telegram_poller, sb::social::make_telegram_poller)
SB_TAKES(mastodon_sender, sb::social::make_mastodon_sender)
SB_TAKES(x_sender, sb::social::make_x_sender)
SB_TAKES(telegram_sender, sb::social::make_telegram_sender)
SB_TAKES(meta_sender, sb::social::make_meta_sender)
#undef SB_TAKES

}  // namespace

TEST_CASE(
    "Account references: a poller or sender takes an account that outlives it, no temporary") {
  // Checked at compile time; the CHECKs only name what this test is about in its output.
  static_assert(mastodon_poller<const config::Mastodon&> && !mastodon_poller<config::Mastodon>);
  static_assert(x_poller<const config::X&> && !x_poller<config::X>);
  static_assert(telegram_poller<const config::Telegram&> && !telegram_poller<config::Telegram>);
  static_assert(mastodon_sender<const config::Mastodon&> && !mastodon_sender<config::Mastodon>);
  static_assert(x_sender<const config::X&> && !x_sender<config::X>);
  static_assert(telegram_sender<const config::Telegram&> && !telegram_sender<config::Telegram>);
  static_assert(meta_sender<const config::Meta&> && !meta_sender<config::Meta>);
  CHECK(!x_poller<config::X>);
  CHECK(!meta_sender<config::Meta>);
}
