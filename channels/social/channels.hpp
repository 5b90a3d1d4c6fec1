#pragma once
// The social channels at run time, built from [[channels.mastodon|x|meta|telegram]]: a poller per
// polling account, a Sender per (channel, account), and the Meta webhook routes
// (GET/POST /webhooks/meta/{name}). App owns one SocialChannels and calls start() once its io
// thread runs and stop() before it stops the io_context.
#include <atomic>
#include <memory>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "channels/social/runtime.hpp"
#include "config/config.hpp"
#include "core/sender.hpp"
#include "http/router.hpp"

namespace sb::social {

struct SocialOptions {
  int telegram_long_poll_s = 25;                           // tests shorten it
  std::chrono::milliseconds max_poll_wait = kMaxPollWait;  // Runtime::max_poll_wait
  // How often at most the WhatsApp-without-access_token warning is repeated; tests shorten it.
  std::chrono::milliseconds whatsapp_warning_every = std::chrono::hours(1);
};

class SocialChannels {
 public:
  SocialChannels(boost::asio::io_context& io, Pipeline& pipeline, Metrics& metrics,
                 const config::Config& cfg, SocialOptions options = {});
  ~SocialChannels();

  void add_routes(http::Router& router);
  void register_senders(SenderRegistry& senders);
  void start();  // spawns the pollers on the io_context
  void stop();   // pollers end at their next wake-up; nothing more is submitted after io stops
  // A reload's new secrets of an account whose secrets alone changed (config::take_secrets):
  // Meta's app_secret and verify_token, and the access tokens the pollers and senders use. On
  // the io thread, which serves the Meta route and runs every poller and send: they read their
  // account in channels_ (never a copy) at each request, so the next one carries the new value.
  void take_secrets(const config::Channels& fresh);

 private:
  std::unique_ptr<net::HttpClient> http_;
  Runtime rt_;
  // Read in place by the pollers and senders (make_*_poller, make_*_sender): its vectors are
  // never resized after the constructor, and a reload changes only their secrets, on the io
  // thread.
  config::Channels channels_;
  SocialOptions options_;
  std::vector<std::shared_ptr<Poller>> pollers_;
  std::vector<std::shared_ptr<Supervised>> running_;  // their loops, once started
};

}  // namespace sb::social
