#include "channels/voice/routes.hpp"

// GCC 12 false positive inside Asio's awaitable frame allocator (see imap_client.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <boost/asio/use_awaitable.hpp>
#include <chrono>

#include "channels/voice/call_state.hpp"
#include "channels/voice/webhook.hpp"
#include "core/log.hpp"
#include "core/log_gate.hpp"
#include "core/time.hpp"
#include "routing/identity.hpp"
#include "storage/async_pipeline.hpp"

namespace sb::voice {
namespace asio = boost::asio;

storage::CallFolder call_folder() {
  return [](const std::optional<CallInfo>& stored, std::int64_t stored_order, const CallInfo& event,
            std::int64_t event_order) {
    std::optional<StoredCall> s;
    if (stored) {
      s = StoredCall{*stored, stored_order};
    }
    FoldResult f = fold_call(s, event, event_order);
    return storage::CallFold{f.call.info,
                             f.call.order_key,
                             f.changed,
                             f.became_final,
                             is_final(f.call.info.status),
                             missed_by_legs(f.call.info)};
  };
}

namespace {

using Handle = std::function<WebhookResult(const WebhookRequest&)>;

// The voice channel's counters by account, kept (see CounterCache), and its log gate: a
// refused request is logged the first time, then at most once a minute per account and error
// code (anyone can post unsigned requests, as fast as they like); the count says the rest.
struct Counted {
  explicit Counted(Metrics& m)
      : stored(m, "switchboard_interactions_total", {"channel", "account"}),
        duplicates(m, "switchboard_duplicates_total", {"channel", "account"}),
        errors(m, "switchboard_channel_errors_total", {"channel", "account"}) {}
  CounterCache stored, duplicates, errors;
  LogGate refused{std::chrono::minutes(1)};
};

// " for call CA123" when the request named one; at most 64 characters of it (it is not
// verified, and may be anything).
std::string for_call(const std::string& id) {
  if (id.empty()) {
    return "";
  }
  return " for call " + (id.size() > 64 ? id.substr(0, 64) + "..." : id);
}

template <typename Cfg>
const Cfg* find(const std::vector<Cfg>& list, const std::string& name) {
  for (const auto& c : list) {
    if (c.name == name) {
      return &c;
    }
  }
  return nullptr;
}

// The common body of the three routes: verify + parse (provider-specific), then store.
asio::awaitable<http::Response> serve(VoiceRoutes& d, Counted& counted, http::Request& r,
                                      const char* provider, const std::string& account,
                                      const Handle& handle) {
  auto start = std::chrono::steady_clock::now();
  WebhookRequest req{r.method, r.target, r.header("content-type"),
                     r.body,   r.header, now_ms() / 1000};
  WebhookResult res = handle(req);
  if (res.status >= 400) {
    counted.errors.inc({"voice", account});
    if (auto left_out =
            counted.refused.pass(std::string(provider) + ":" + account + " " + res.error_code)) {
      logger("voice")->warn("[{}:{}] rejected webhook{}: {} ({}); answered {}, nothing stored{}",
                            provider, account, for_call(res.call_id), res.error_message,
                            res.error_code, res.status, LogGate::left_out_note(*left_out));
    }
    co_return http::error(res.status, res.error_code, res.error_message);
  }
  if (res.event) {
    std::string call_id = res.event->call.external_id;
    auto out = co_await async_submit_call(d.pipeline, std::move(*res.event), asio::use_awaitable);
    const auto& o = out.at(0);
    if (!o.error.empty()) {
      // 503 makes the provider retry later; nothing was half-stored (the job rolled back).
      logger("voice")->error("[{}:{}] event of call {} not stored: {}; answered 503 for a retry",
                             provider, account, call_id, o.error);
      co_return http::error(503, "storage_unavailable",
                            "the call event could not be stored: " + o.error);
    }
    d.metrics.observe(
        "switchboard_ingest_seconds",
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (o.created) {
      counted.stored.inc({"voice", account});
    } else if (o.duplicate) {
      counted.duplicates.inc({"voice", account});
    }
  }
  co_return http::Response{200, res.response_content_type, std::move(res.response_body), {}};
}

asio::awaitable<http::Response> unknown(const char* kind, const std::string& name) {
  co_return http::error(404, "unknown_channel",
                        std::string("no [[channels.") + kind + "]] is named \"" + name + "\"");
}

}  // namespace

void add_routes(http::Router& router, VoiceRoutes& d) {
  auto counted = std::make_shared<Counted>(d.metrics);
  auto canon = [](std::string_view raw, std::string_view region) -> std::optional<std::string> {
    auto c = canonicalize("phone", raw, region);
    return c.ok() ? std::optional<std::string>(c.value) : std::nullopt;
  };
  router.add("POST", "/webhooks/twilio/{name}",
             [&d, canon, counted](http::Request& r) -> asio::awaitable<http::Response> {
               const std::string& name = r.params["name"];
               const auto* cfg = find(d.channels.twilio, name);
               if (!cfg) {
                 co_return co_await unknown("twilio", name);
               }
               co_return co_await serve(d, *counted, r, "twilio", name,
                                        [&](const WebhookRequest& q) {
                                          return handle_twilio(*cfg, q, d.default_region, canon);
                                        });
             });
  router.add("POST", "/webhooks/telnyx/{name}",
             [&d, canon, counted](http::Request& r) -> asio::awaitable<http::Response> {
               const std::string& name = r.params["name"];
               const auto* cfg = find(d.channels.telnyx, name);
               if (!cfg) {
                 co_return co_await unknown("telnyx", name);
               }
               co_return co_await serve(d, *counted, r, "telnyx", name,
                                        [&](const WebhookRequest& q) {
                                          return handle_telnyx(*cfg, q, d.default_region, canon);
                                        });
             });
  router.add("POST", "/webhooks/calls/{name}",
             [&d, canon, counted](http::Request& r) -> asio::awaitable<http::Response> {
               const std::string& name = r.params["name"];
               const auto* cfg = find(d.channels.call_webhook, name);
               if (!cfg) {
                 co_return co_await unknown("call_webhook", name);
               }
               co_return co_await serve(d, *counted, r, "pbx", name, [&](const WebhookRequest& q) {
                 return handle_pbx(*cfg, q, d.default_region, canon);
               });
             });
}

}  // namespace sb::voice
