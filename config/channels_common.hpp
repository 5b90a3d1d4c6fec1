#pragma once
// Internal to config/: what every [[channels.*]] reader shares — the channel name (unique across
// all kinds), URLs, and the table-of-kinds walk.
#include <optional>
#include <string>
#include <vector>

#include "config/reader.hpp"

namespace sb::config::detail {

class ChannelNames {
 public:
  // Reads the required `name` and checks its form.
  void read(TableReader& r, std::string_view kind, std::string& name);
  bool has_imap(const std::string& name) const;
  // Reports every name used by more than one channel, of any kind, against its first use in
  // the file (kinds are read one after another, so this waits until all are read).
  void report_duplicates(Context& ctx) const;

 private:
  struct Use {
    std::string name;
    std::string kind;
    int line;
  };
  std::vector<Use> uses_;
};

// An http(s) URL; a trailing '/' is dropped so that `base_url + "/path"` never doubles it (the
// Twilio signature covers the exact URL, so "https://h//webhooks/..." would never verify).
bool read_url(TableReader& r, std::string_view key, std::string& out, bool required);
// read_url for the URL of a provider's API, where the account's token goes with every request:
// https://, or http:// to a loopback host only.
bool read_api_url(TableReader& r, std::string_view key, std::string& out, bool required);

// host + tls: `tls = "none"` only to a loopback host (plaintext credentials otherwise).
void check_plaintext(TableReader& r, const std::string& host, const std::string& tls);

// `backfill` of a polled account (IMAP, Mastodon, X): "all" -> nullopt, "none" -> 0, else a
// duration ("24h"); anything else is an error at its line.
void read_backfill(TableReader& r, std::optional<milliseconds>& out);

// One entry of each kind; channels.cpp walks the [[channels.<kind>]] lists.
void read_imap(TableReader& r, ChannelNames& names, Imap& out);
void read_smtp(TableReader& r, ChannelNames& names, Smtp& out);
void read_twilio(TableReader& r, ChannelNames& names, Twilio& out);
void read_telnyx(TableReader& r, ChannelNames& names, Telnyx& out);
void read_call_webhook(TableReader& r, ChannelNames& names, CallWebhook& out);
void read_mastodon(TableReader& r, ChannelNames& names, Mastodon& out);
void read_x(TableReader& r, ChannelNames& names, X& out);
void read_meta(TableReader& r, ChannelNames& names, Meta& out);
void read_telegram(TableReader& r, ChannelNames& names, Telegram& out);

}  // namespace sb::config::detail
