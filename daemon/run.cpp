// `switchboard run`: start the App, then wait for signals on the main thread. The signals are
// blocked before any thread starts, so every thread inherits the mask and only sigwait() here
// sees them.
#include <pthread.h>

#include <csignal>
#include <filesystem>

#include "core/log.hpp"
#include "daemon/app.hpp"
#include "daemon/commands.hpp"

namespace sb {

int run_daemon(const config::Config& cfg) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto log = logger("daemon");
  // The config in force, first: a daemon on the built-in defaults (no file found where it was
  // looked for) answers 401 to everyone, and nothing else in the log said why.
  if (cfg.source_path.empty()) {
    log->info("[daemon] config: built-in defaults (no config file: give --config PATH)");
  } else {
    std::error_code ec;
    auto abs = std::filesystem::absolute(cfg.source_path, ec);
    log->info("[daemon] config: {}", ec ? cfg.source_path : abs.lexically_normal().string());
  }
  if (cfg.api.tokens.empty()) {
    log->warn("[daemon] [api] tokens is empty: POST /v1/interactions will answer 401 to everyone");
  }
  if (cfg.agents.empty()) {
    log->warn(
        "[daemon] no [[agents]] are configured: the agent API (/v1/agent/...) will answer 401 to "
        "everyone");
  }
  App app(cfg);
  app.start();
  for (;;) {
    int sig = 0;
    sigwait(&set, &sig);
    if (sig == SIGHUP) {
      if (cfg.source_path.empty()) {
        log->warn("[daemon] SIGHUP: running on built-in defaults, nothing to reload");
        continue;
      }
      auto r = config::load_file(cfg.source_path);
      if (!r.config) {
        log->error("[daemon] SIGHUP: {} rejected, the old rules and agents stay in force:",
                   cfg.source_path);
        for (const auto& p : r.problems) {
          log->error("[daemon]   {}", p.to_string());
        }
        continue;
      }
      for (const auto& e : app.reload(*r.config)) {
        log->error("[daemon] SIGHUP: {}", e);
      }
      continue;
    }
    log->info("[daemon] {} received", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    break;
  }
  app.stop();
  return 0;
}

}  // namespace sb
