// switchboard_task_restarts_total (core/supervise.hpp): each long-running task the daemon runs
// has its series from start-up, at 0, so that an alert on any increase has something to compare.
#include <doctest/doctest.h>

#include "tests/agents/fixture.hpp"

using namespace sb;
using namespace sb::test;

TEST_CASE("task restarts: /metrics has a counter series for each task the daemon runs") {
  AgentDaemon d;
  auto metrics = d.http->request("GET", "/metrics");
  REQUIRE(metrics.status == 200);
  CHECK(metrics.body.find("# TYPE switchboard_task_restarts_total counter") != std::string::npos);
  for (const char* task : {"send_loop", "sweeps", "io_watch", "queue_sweeps"}) {
    CHECK(metrics.body.find(std::string("switchboard_task_restarts_total{task=\"") + task +
                            "\"} 0\n") != std::string::npos);
  }
}
