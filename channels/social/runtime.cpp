#include "channels/social/runtime.hpp"

// GCC 12 false positive inside Asio's awaitable frame allocator (see imap_client.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <map>
#include <random>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/log.hpp"
#include "storage/async_pipeline.hpp"

namespace sb::social {

namespace asio = boost::asio;
using std::chrono::milliseconds;

asio::awaitable<void> sleep_for(asio::any_io_executor ex, milliseconds d) {
  if (d.count() <= 0) {
    co_return;
  }
  asio::steady_timer t(ex, d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

milliseconds bound_poll_wait(const Runtime& rt, const char* channel, const std::string& account,
                             std::chrono::duration<double> asked, std::string_view what,
                             milliseconds min) {
  return bound_provider_wait(asked, WaitBounds{min, rt.max_poll_wait}, "social", channel, account,
                             what);
}

net::HttpRequest to_request(const std::string& base_url, const HttpRequestSpec& spec) {
  net::HttpRequest r;
  r.method = spec.method.empty() ? "GET" : spec.method;
  std::string base = base_url;
  while (!base.empty() && base.back() == '/') {
    base.pop_back();
  }
  r.url = base + spec.target;
  r.headers = spec.headers;
  r.content_type = spec.content_type;
  r.body = spec.body;
  return r;
}

HeaderLookup lookup_in(const net::HttpResponse& r) {
  return [&r](std::string_view name) { return r.header(name); };
}

asio::awaitable<std::string> store_batch(Runtime& rt, const char* channel,
                                         const std::string& account, std::vector<Inbound>& items,
                                         std::optional<CursorUpdate>& cursor) {
  if (items.empty() && !cursor) {
    co_return std::string();
  }
  // Counted under each item's own channel: one Meta webhook carries messenger, instagram and
  // whatsapp items, and dashboards filter on the channel the interactions have.
  std::vector<std::string> item_channels;
  item_channels.reserve(items.size());
  for (const auto& in : items) {
    item_channels.push_back(in.channel.empty() ? channel : in.channel);
  }
  // Built outside the co_await expression: GCC 12 mishandles temporaries that live across a
  // suspension point inside one full expression.
  auto op = async_submit(rt.pipeline, std::move(items), std::move(cursor), asio::use_awaitable);
  auto out = co_await std::move(op);
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> counts;  // created, duplicates
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (!out[i].error.empty()) {
      co_return out[i].error;  // the whole transaction rolled back: the cursor did not move
    }
    auto& [created, dups] = counts[i < item_channels.size() ? item_channels[i] : channel];
    (out[i].duplicate ? dups : created) += 1;
  }
  for (const auto& [ch, n] : counts) {
    Labels labels{{"channel", ch}, {"account", account}};
    if (n.first > 0) {
      rt.metrics.inc("switchboard_interactions_total", labels, n.first);
    }
    if (n.second > 0) {
      rt.metrics.inc("switchboard_duplicates_total", labels, n.second);
    }
  }
  co_return std::string();
}

std::shared_ptr<Supervised> spawn_poller(Runtime& rt, std::shared_ptr<Poller> p,
                                         std::shared_ptr<std::atomic<bool>> stopped,
                                         SuperviseOptions restarts) {
  return Supervised::spawn(
      rt.ex,
      {"social", fmt::format("[{}:{}]", p->channel(), p->account()), "the poller", "social_poller"},
      [&rt, p, stopped]() -> asio::awaitable<void> {
        auto log = logger("social");
        // "[x:x]", or "[x:x] direct messages:" for an account's second poller.
        const std::string tag = fmt::format("[{}:{}]{}{}", p->channel(), p->account(),
                                            *p->what() != '\0' ? " " : "", p->what()) +
                                (*p->what() != '\0' ? ":" : "");
        Labels labels{{"channel", p->channel()}, {"account", p->account()}};
        std::mt19937 rng(std::random_device{}());
        milliseconds backoff{1000};
        const milliseconds max_backoff{5 * 60 * 1000};
        std::uint64_t failed = 0;  // polls failed in a row
        while (!stopped->load()) {
          PollResult r = co_await p->poll_once();
          rt.metrics.inc("switchboard_social_polls_total", labels);
          milliseconds wait = r.next;
          if (r.ok) {
            backoff = milliseconds(1000);
            // Each failure had its line (the back-off spaces them); the end of an episode has
            // one too, or the last word in the log would be that the account is failing.
            if (failed > 0) {
              log->info("{} polling again after {} failed poll{}", tag, failed,
                        failed == 1 ? "" : "s");
              failed = 0;
            }
          } else {
            ++failed;
            rt.metrics.inc("switchboard_channel_errors_total", labels);
            // Jitter (+-25 %) keeps accounts that failed together from retrying in lockstep.
            std::uniform_real_distribution<double> jitter(0.75, 1.25);
            wait = milliseconds(static_cast<long long>(backoff.count() * jitter(rng)));
            log->warn("{} poll failed: {}; retrying in {} ms", tag, r.error, wait.count());
            backoff = std::min(backoff * 2, max_backoff);
          }
          co_await sleep_for(rt.ex, wait);
        }
      },
      {}, restarts);
}

}  // namespace sb::social
