// channels/social/runtime: a poller whose poll throws (a bug in it: an unexpected JSON shape that
// a parser did not take as a value) is started again, with a line and a count, and the account
// goes on polling. The poller is a stand-in: what is tested is the runner every poller runs in.
#include <doctest/doctest.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <stdexcept>
#include <thread>

#include "channels/social/runtime.hpp"
#include "core/supervise.hpp"
#include "tests/support/harness.hpp"
#include "tests/support/log_capture.hpp"

using namespace sb;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace poller_restart_test {

// Polls nothing; the first poll throws.
class ThrowsOnce : public social::Poller {
 public:
  const char* channel() const override { return "mastodon"; }
  const std::string& account() const override { return account_; }
  asio::awaitable<social::PollResult> poll_once() override {
    if (++polls == 1) {
      throw std::runtime_error("unexpected JSON shape");
    }
    co_return social::PollResult::again_in(10ms);
  }
  std::atomic<int> polls{0};

 private:
  std::string account_ = "main";
};

// Nothing is stored: the stand-in poller never submits.
class NoPipeline : public Pipeline {
 public:
  void submit(std::vector<Inbound>, std::optional<CursorUpdate>, Done done) override { done({}); }
  void submit_call_event(CallEventInput, Done done) override { done({}); }
  void submit_provider_statuses(std::vector<ProviderStatus>, Done done) override { done({}); }
  std::optional<std::string> cursor(const std::string&, const std::string&) override {
    return std::nullopt;
  }
  std::optional<std::int64_t> cursor_written_at(const std::string&, const std::string&) override {
    return std::nullopt;
  }
  std::vector<std::string> sent_here(const std::vector<std::string>&) override { return {}; }
};

}  // namespace poller_restart_test

TEST_CASE("a social poller stopped by an exception is started again and polls on") {
  using namespace poller_restart_test;
  test::LogCapture log("social");
  asio::io_context io;
  NoPipeline pipeline;
  Metrics metrics;
  net::HttpClient http(io.get_executor());
  social::Runtime rt{io.get_executor(), pipeline, metrics, http, "DE"};
  auto work = asio::make_work_guard(io);
  std::atomic<bool> io_done{false};
  std::thread t([&] {
    io.run();
    io_done = true;
  });
  struct Join {  // before what the io thread uses goes, also when a REQUIRE ends the test early
    asio::io_context& io;
    std::thread& t;
    ~Join() {
      io.stop();
      t.join();
    }
  } join{io, t};
  auto p = std::make_shared<ThrowsOnce>();
  SuperviseOptions restarts;
  restarts.first_backoff = 10ms;
  auto before = task_restarts("social_poller");
  auto task = social::spawn_poller(rt, p, rt.stopped, restarts);

  CHECK(test::eventually([&] { return p->polls.load() >= 3; }, 5s));
  CHECK(task_restarts("social_poller") == before + 1);
  auto lines = log.lines_with("restarting");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0] ==
        "error [mastodon:main] the poller stopped by an exception: unexpected JSON shape; "
        "restarting it in 0.01 s");

  // As SocialChannels::stop(): the loop ends at its next wake-up, and the io thread runs out.
  rt.stopped->store(true);
  task->stop();
  work.reset();
  CHECK(test::eventually([&] { return io_done.load(); }, 5s));
}
