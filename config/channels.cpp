// [channels]: walks each [[channels.<kind>]] list in a fixed order (imap before smtp, so that
// smtp's `for` can be checked against every imap account).
#include "config/channels_common.hpp"
#include "config/sections.hpp"

namespace sb::config::detail {

namespace {

template <typename T>
void read_kind(TableReader& channels, ChannelNames& names, std::string_view kind,
               std::vector<T>& out, void (*read_one)(TableReader&, ChannelNames&, T&)) {
  const std::string prefix = "channels." + std::string(kind);
  for (const toml::table* table : channels.tables(kind)) {
    TableReader r(channels.ctx(), *table, prefix);
    T channel;
    read_one(r, names, channel);
    out.push_back(std::move(channel));
  }
}

}  // namespace

void read_channels(TableReader& root, Channels& out) {
  const toml::table* table = root.table("channels");
  if (table == nullptr) {
    return;
  }
  TableReader r(root.ctx(), *table, "channels");
  ChannelNames names;
  read_kind(r, names, "imap", out.imap, read_imap);
  read_kind(r, names, "smtp", out.smtp, read_smtp);
  read_kind(r, names, "twilio", out.twilio, read_twilio);
  read_kind(r, names, "telnyx", out.telnyx, read_telnyx);
  read_kind(r, names, "call_webhook", out.call_webhook, read_call_webhook);
  read_kind(r, names, "mastodon", out.mastodon, read_mastodon);
  read_kind(r, names, "x", out.x, read_x);
  read_kind(r, names, "meta", out.meta, read_meta);
  read_kind(r, names, "telegram", out.telegram, read_telegram);
  names.report_duplicates(r.ctx());
  r.finish();
}

}  // namespace sb::config::detail
