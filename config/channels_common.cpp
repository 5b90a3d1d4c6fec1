#include "config/channels_common.hpp"

#include <algorithm>
#include <map>

#include <boost/url/parse.hpp>

#include "config/validate.hpp"
#include "core/time.hpp"

namespace sb::config::detail {

void ChannelNames::read(TableReader& r, std::string_view kind, std::string& name) {
  if (!r.str("name", name, true)) {
    return;
  }
  const int line = r.line_of_key("name");
  if (!is_simple_name(name)) {
    // The name is a path segment of /webhooks/{provider}/{name} and a metrics label.
    r.ctx().add(line, r.dotted("name") + " must be letters, digits, '.', '_' or '-' (got \"" +
                          name + "\")");
    return;
  }
  uses_.push_back(Use{name, std::string(kind), line});
}

bool ChannelNames::has_imap(const std::string& name) const {
  return std::any_of(uses_.begin(), uses_.end(),
                     [&](const Use& u) { return u.kind == "imap" && u.name == name; });
}

void ChannelNames::report_duplicates(Context& ctx) const {
  std::vector<Use> in_file_order = uses_;
  std::stable_sort(in_file_order.begin(), in_file_order.end(),
                   [](const Use& a, const Use& b) { return a.line < b.line; });
  std::map<std::string, const Use*, std::less<>> first;
  for (const Use& use : in_file_order) {
    auto [it, fresh] = first.emplace(use.name, &use);
    if (!fresh) {
      ctx.add(use.line, "duplicate channel name \"" + use.name + "\" (already used by channels." +
                            it->second->kind + " at line " + std::to_string(it->second->line) +
                            "); names must be unique across all channels");
    }
  }
}

bool read_url(TableReader& r, std::string_view key, std::string& out, bool required) {
  std::string url;
  if (!r.str(key, url, required)) {
    return false;
  }
  if (!is_http_url(url)) {
    r.ctx().add(r.line_of_key(key),
                r.dotted(key) + " must be an http:// or https:// URL (got \"" + url + "\")");
    return false;
  }
  while (url.size() > 1 && url.back() == '/') {
    url.pop_back();
  }
  out = std::move(url);
  return true;
}

bool read_api_url(TableReader& r, std::string_view key, std::string& out, bool required) {
  std::string url;
  if (!read_url(r, key, url, required)) {
    return false;
  }
  if (url.empty()) {
    return true;  // not given: the provider's own https URL
  }
  // The account's token goes with every request (Telegram's in the URL's path): plain HTTP only
  // to this machine (a test fake, a local proxy that does the TLS), as tls = "none" for mail.
  if (auto parsed = boost::urls::parse_absolute_uri(url);
      parsed->scheme() == "http" && !is_loopback(parsed->host_address())) {
    r.ctx().add(r.line_of_key(key),
                r.dotted(key) +
                    " must be https:// for a host other than loopback (127.0.0.0/8, ::1, "
                    "localhost), not \"" +
                    url + "\": the account's token would cross the network in clear");
    return false;
  }
  out = std::move(url);
  return true;
}

void check_plaintext(TableReader& r, const std::string& host, const std::string& tls) {
  if (tls == "none" && !host.empty() && !is_loopback(host)) {
    r.ctx().add(r.line_of_key("tls"),
                r.dotted("tls") +
                    " = \"none\" is allowed only to a loopback host (127.0.0.0/8, "
                    "::1, localhost), not \"" +
                    host + "\"");
  }
}

// backfill = "24h" (a look-back: any duration, "0s" included), "none" (= "0s") or "all".
void read_backfill(TableReader& r, std::optional<milliseconds>& out) {
  std::string text;
  if (!r.str("backfill", text)) {
    return;
  }
  if (text == "all") {
    out = std::nullopt;
    return;
  }
  if (text == "none") {
    out = milliseconds(0);
    return;
  }
  if (auto d = sb::parse_duration(text)) {
    out = *d;
    return;
  }
  r.ctx().add(r.line_of_key("backfill"),
              r.dotted("backfill") + ": invalid value \"" + text +
                  "\" (use a duration such as \"24h\" or \"30m\", \"none\" or \"all\")");
}

}  // namespace sb::config::detail
