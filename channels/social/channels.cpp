#include "channels/social/channels.hpp"

#include <algorithm>
#include <boost/asio/use_awaitable.hpp>

#include "channels/social/meta.hpp"
#include "channels/social/pollers.hpp"
#include "channels/social/senders.hpp"
#include "core/log.hpp"
#include "core/log_gate.hpp"
#include "routing/identity.hpp"
#include "storage/async_pipeline.hpp"

namespace sb::social {

namespace asio = boost::asio;

SocialChannels::SocialChannels(asio::io_context& io, Pipeline& pipeline, Metrics& metrics,
                               const config::Config& cfg, SocialOptions options)
    : http_(std::make_unique<net::HttpClient>(io.get_executor())),
      rt_{io.get_executor(), pipeline, metrics, *http_, cfg.matching.default_region},
      channels_(cfg.channels),
      options_(options) {
  rt_.max_poll_wait = options_.max_poll_wait;
  for (const auto& c : channels_.mastodon) {
    pollers_.push_back(make_mastodon_poller(rt_, c));
  }
  for (const auto& c : channels_.x) {
    pollers_.push_back(make_x_poller(rt_, c));
    // X gives DMs in user context only; whether an account has it waits for a restart (a
    // reload changes its keys only), so the DM poller is there from the start or not at all.
    // `direct_messages = false` leaves them unread (an app without DM permission).
    if (c.reads_direct_messages()) {
      pollers_.push_back(make_x_dm_poller(rt_, c));
    }
  }
  for (const auto& c : channels_.telegram) {
    pollers_.push_back(make_telegram_poller(rt_, c, options_.telegram_long_poll_s));
  }
  if (!rt_.paused.empty()) {
    metrics.gauge("switchboard_social_paused",
                  "1 while a social account is paused (X usage cap reached), else 0.",
                  [this]() -> std::vector<std::pair<Labels, double>> {
                    std::vector<std::pair<Labels, double>> out;
                    for (const auto& [labels, flag] : rt_.paused) {
                      out.emplace_back(labels, flag->load() ? 1.0 : 0.0);
                    }
                    return out;
                  });
  }
}

SocialChannels::~SocialChannels() {
  stop();
}

void SocialChannels::register_senders(SenderRegistry& senders) {
  for (const auto& c : channels_.mastodon) {
    senders.add("mastodon", c.name, make_mastodon_sender(rt_, c));
  }
  for (const auto& c : channels_.x) {
    senders.add("x", c.name, make_x_sender(rt_, c));
  }
  for (const auto& c : channels_.telegram) {
    senders.add("telegram", c.name, make_telegram_sender(rt_, c));
  }
  for (const auto& c : channels_.meta) {
    auto s = make_meta_sender(rt_, c);
    for (const char* ch : {"messenger", "instagram", "whatsapp"}) {
      senders.add(ch, c.name, s);
    }
  }
}

void SocialChannels::start() {
  for (const auto& p : pollers_) {
    logger("social")->info("[{}:{}] polling{}{}", p->channel(), p->account(),
                           *p->what() != '\0' ? " " : "", p->what());
    running_.push_back(spawn_poller(rt_, p, rt_.stopped));
  }
  for (const auto& c : channels_.x) {
    if (!c.user_context) {
      logger("social")->info(
          "[x:{}] direct messages are not read: X gives them in user context only (set "
          "consumer_key_env, consumer_secret_env, access_token_env and access_token_secret_env "
          "in [[channels.x]]); reading mentions only",
          c.name);
    } else if (!c.reads_direct_messages()) {
      logger("social")->info(
          "[x:{}] direct messages are not read (direct_messages = false); reading mentions only",
          c.name);
    }
  }
}

void SocialChannels::stop() {
  rt_.stopped->store(true);
  for (const auto& t : running_) {
    t->stop();  // a restart's back-off ends now
  }
  running_.clear();  // stopped once: the destructor's stop() has nothing left to do
}

void SocialChannels::take_secrets(const config::Channels& fresh) {
  config::take_secrets(channels_, fresh);
}

void SocialChannels::add_routes(http::Router& router) {
  // A refused request is logged the first time, then at most once a minute per account and
  // error code: anyone can post unsigned requests to the route, as fast as they like.
  auto refused = std::make_shared<LogGate>(std::chrono::minutes(1));
  // Events left unstored on purpose (standby, edits, unsends) come with every message of a
  // Page whose Inbox took the thread: one line a minute per account and kind says so.
  auto ignored = std::make_shared<LogGate>(std::chrono::minutes(1));
  // WhatsApp messages that cannot be answered (below): said at the first, then once an hour.
  auto unanswerable = std::make_shared<LogGate>(options_.whatsapp_warning_every);
  auto serve = [this, refused, ignored,
                unanswerable](http::Request& r) -> asio::awaitable<http::Response> {
    const auto start = std::chrono::steady_clock::now();
    const std::string& name = r.params["name"];
    const config::Meta* cfg = nullptr;
    for (const auto& c : channels_.meta) {
      if (c.name == name) {
        cfg = &c;
      }
    }
    if (cfg == nullptr) {
      co_return http::error(404, "unknown_channel",
                            "no [[channels.meta]] is named \"" + name + "\"");
    }
    auto phone = [](std::string_view raw, std::string_view region) -> std::optional<std::string> {
      auto c = canonicalize("phone", raw, region);
      return c.ok() ? std::optional<std::string>(c.value) : std::nullopt;
    };
    HeaderLookup header = [&r](std::string_view n) -> std::optional<std::string> {
      auto v = r.header(n);
      return v.empty() ? std::nullopt : std::optional<std::string>(v);
    };
    // The signature is checked over the raw body inside handle_meta before anything is parsed.
    MetaResult res =
        handle_meta(*cfg, r.method, r.target, r.body, header, phone, rt_.default_region);
    // A refused request names no item: its errors count under "meta" (what the URL names).
    Labels labels{{"channel", "meta"}, {"account", name}};
    if (res.status >= 400) {
      rt_.metrics.inc("switchboard_channel_errors_total", labels);
      if (auto left_out = refused->pass(name + " " + res.error_code)) {
        logger("social")->warn("[meta:{}] rejected webhook: {} ({}); answered {}, nothing stored{}",
                               name, res.error_message, res.error_code, res.status,
                               LogGate::left_out_note(*left_out));
      }
      co_return http::error(res.status, res.error_code, res.error_message);
    }
    const bool carries_data = !res.items.empty() || !res.statuses.empty();
    // A WhatsApp reply has no Page whose token it could take: it always goes with the account's
    // access_token, which may be left out once [[channels.meta.pages]] are given. No key says
    // whether the app receives WhatsApp, so this is said when a WhatsApp message arrives (and
    // is stored as usual), not at start, where a Messenger-only account would be warned for
    // good.
    const auto whatsapp = std::ranges::count_if(
        res.items, [](const Inbound& in) { return in.channel == "whatsapp"; });
    if (whatsapp > 0 && cfg->access_token.empty()) {
      // Counted by message, not by request: one webhook may carry several.
      if (auto left_out = unanswerable->pass(name, static_cast<std::uint64_t>(whatsapp))) {
        logger("social")->warn(
            "[meta:{}] a WhatsApp message arrived, but the account has no access_token: replies "
            "to it will fail (a WhatsApp reply goes with the account's token, never a Page's); "
            "set channels.meta.access_token_env (or access_token or access_token_file){}",
            name,
            *left_out == 0 ? std::string()
                           : " (" + std::to_string(*left_out) +
                                 " more WhatsApp messages came since the last line; at most "
                                 "one line an hour)");
      }
    }
    if (!res.items.empty()) {
      // Meta retries anything but 200: answer only after the commit (a 2xx means committed).
      std::optional<CursorUpdate> none;
      std::size_t n = res.items.size();  // store_batch empties the list
      std::string err = co_await store_batch(rt_, "meta", name, res.items, none);
      if (!err.empty()) {
        // Meta delivers it again later: nothing was half-stored (the transaction rolled back).
        logger("social")->error("[meta:{}] {} messages not stored: {}; answered 503 for a retry",
                                name, n, err);
        co_return http::error(503, "storage_unavailable",
                              "the messages could not be stored: " + err);
      }
    }
    // Stored, but not read whole (a message naming no sender, or without a mid): said once it
    // is in.
    for (const auto& p : res.problems) {
      rt_.metrics.inc("switchboard_channel_errors_total",
                      {{"channel", p.channel}, {"account", name}});
      logger("social")->warn("[meta:{}] {} {}", name, p.channel, p.message);
    }
    if (!res.statuses.empty()) {
      // WhatsApp reports on our own messages: the send state and the outbound interaction's
      // timeline follow. Also committed before the 2xx.
      std::vector<ProviderStatus> reports;
      for (const auto& s : res.statuses) {
        rt_.metrics.inc("switchboard_social_send_statuses_total",
                        {{"channel", s.channel}, {"account", name}, {"status", s.status}});
        logger("social")->info("[meta:{}] {} message {} is {}{}", name, s.channel, s.external_id,
                               s.status, s.error_message.empty() ? "" : ": " + s.error_message);
        reports.push_back(ProviderStatus{s.channel, name, s.external_id, s.status, s.error_message,
                                         s.occurred_at_ms});
      }
      auto op = async_submit_statuses(rt_.pipeline, std::move(reports), asio::use_awaitable);
      auto out = co_await std::move(op);
      for (const auto& o : out) {
        if (!o.error.empty() && o.error.starts_with("unknown message")) {
          continue;  // not sent by us (or by another system on the same number)
        }
        if (!o.error.empty()) {
          co_return http::error(503, "storage_unavailable",
                                "the message statuses could not be stored: " + o.error);
        }
      }
    }
    // Counted once the request is answered 200, so a retry after a 503 does not count twice.
    for (const auto& i : res.ignored) {
      rt_.metrics.inc("switchboard_social_events_ignored_total",
                      {{"account", name}, {"kind", i.kind}});
      if (auto left_out = ignored->pass(name + " " + i.kind)) {
        logger("social")->warn("[meta:{}] {}: {}{}", name, i.channel, i.why,
                               LogGate::left_out_note(*left_out, "ignored the same way"));
      }
    }
    if (carries_data) {
      rt_.metrics.observe(
          "switchboard_ingest_seconds",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    co_return http::Response{res.status,
                             res.content_type.empty() ? "application/json" : res.content_type,
                             std::move(res.response_body),
                             {}};
  };
  router.add("GET", "/webhooks/meta/{name}", serve);
  router.add("POST", "/webhooks/meta/{name}", serve);
}

}  // namespace sb::social
