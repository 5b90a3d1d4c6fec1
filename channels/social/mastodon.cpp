#include "channels/social/mastodon.hpp"

#include <algorithm>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "channels/social/html_text.hpp"
#include "core/time.hpp"

namespace sb::social {

namespace json = boost::json;

std::string mastodon_notifications_target(std::string_view min_id, int limit) {
  // types[] is sent percent-encoded ("types%5B%5D"): Rails reads both, and the encoded form is
  // what URL libraries produce, so a fake or proxy sees one spelling.
  std::string t = "/api/v1/notifications?types%5B%5D=mention&limit=" + std::to_string(limit);
  // Without min_id Mastodon answers the *newest* page, and paging forward from it would skip
  // everything older: a first start (no cursor yet) reads the whole history from min_id=0.
  t += "&min_id=" + (min_id.empty() ? std::string("0") : std::string(min_id));
  // Mastodon 4.3+ files notifications that the account's notification policy filters (by
  // default: private mentions from people it does not follow, that is a customer's first DM)
  // as `filtered`, and leaves them out of this list unless include_filtered=true. Without it
  // such a DM is never read, and the cursor moves past it for good once a later mention
  // arrives. Older servers ignore the parameter.
  t += "&include_filtered=true";
  return t;
}

std::string mastodon_backfill_target(std::string_view max_id, int limit) {
  std::string t = "/api/v1/notifications?types%5B%5D=mention&limit=" + std::to_string(limit);
  if (!max_id.empty()) {
    t += "&max_id=" + std::string(max_id);
  }
  return t + "&include_filtered=true";  // as above: a customer's first DM is filtered
}

MastodonCursor parse_mastodon_cursor(std::string_view value) {
  // Ids are digits on Mastodon, letters and digits on Pleroma, Akkoma and GoToSocial: never a
  // ':', which the instance key may hold (a port).
  std::size_t colon = value.find(':');
  if (colon == std::string_view::npos) {
    return {std::string(value), ""};
  }
  return {std::string(value.substr(0, colon)), std::string(value.substr(colon + 1))};
}

std::string format_mastodon_cursor(const MastodonCursor& c) {
  return c.min_id + ":" + c.instance;
}

std::string mastodon_instance_key(std::string_view base_url) {
  auto url = parse_base_url(base_url);
  if (!url) {
    return std::string(base_url);
  }
  std::string key = url->host;
  if (url->port != (url->scheme == "https" ? 443 : 80)) {
    key += ":" + std::to_string(url->port);
  }
  return key + url->path;
}

std::string mastodon_thread_key(const config::Mastodon& cfg, std::string_view status_id,
                                std::string_view customer) {
  return "mastodon:" + cfg.name + ":" + std::string(status_id) + ":" + ascii_lower(customer);
}

std::string mastodon_instance_domain(std::string_view base_url) {
  auto url = parse_base_url(base_url);
  return url ? url->host : std::string();
}

std::string parse_mastodon_instance_domain(std::string_view body) {
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object()) {
    return {};
  }
  // v2 (Mastodon 4.0+) names it `domain`; v1 `uri` (docs.joinmastodon.org entities/Instance and
  // entities/V1_Instance; both serialise the server's local_domain).
  std::string domain = str_at(root.get_object(), "domain");
  if (domain.empty()) {
    domain = str_at(root.get_object(), "uri");
  }
  if (domain.find("://") != std::string::npos) {
    auto url = parse_base_url(domain);
    return url ? url->host : std::string();
  }
  if (domain.find_first_of("/@ ") != std::string::npos) {
    return {};
  }
  return ascii_lower(domain);
}

std::string mastodon_media_type(std::string_view type) {
  // MediaAttachment `type` is unknown | image | gifv | video | audio, never a MIME type; gifv is
  // a looping soundless video (MP4).
  if (type == "image" || type == "video" || type == "audio") {
    return std::string(type) + "/*";
  }
  if (type == "gifv") {
    return "video/*";
  }
  return "application/octet-stream";
}

namespace {

std::optional<Inbound> mention_to_inbound(const config::Mastodon& cfg, std::string_view domain,
                                          const json::object& status) {
  const json::object* account = obj_at(status, "account");
  std::string status_id = str_at(status, "id");
  if (account == nullptr || status_id.empty()) {
    return std::nullopt;
  }
  std::string acct = str_at(*account, "acct");
  if (acct.empty()) {
    return std::nullopt;
  }
  Inbound in;
  in.channel = "mastodon";
  in.account = cfg.name;
  std::string visibility = str_at(status, "visibility");
  in.kind = visibility == "direct" ? "direct_message" : "mention";
  in.external_id = status_id;
  // acct is "user" for accounts of this instance and "user@domain" for remote ones; the
  // canonical identity is always user@domain, with the instance's own domain for local ones.
  std::string value = acct.find('@') == std::string::npos ? acct + "@" + std::string(domain) : acct;
  in.from = Identity{"mastodon", ascii_lower(value), str_at(*account, "display_name"), "@" + acct};

  const json::array* mentions = arr_at(status, "mentions");
  MentionResolver resolve = [mentions](std::string_view href) -> std::optional<std::string> {
    if (mentions == nullptr) {
      return std::nullopt;
    }
    for (const json::value& m : *mentions) {
      const json::object* mo = m.if_object();
      if (mo != nullptr && str_at(*mo, "url") == href) {
        return str_at(*mo, "acct");
      }
    }
    return std::nullopt;
  };
  in.text = html_to_text(str_at(status, "content"), resolve);
  std::string spoiler = str_at(status, "spoiler_text");
  if (!spoiler.empty()) {
    in.subject = spoiler;  // the content warning reads like a subject line
  }
  if (auto at = parse_rfc3339(str_at(status, "created_at"))) {
    in.occurred_at_ms = *at;
  }
  if (const json::array* media = arr_at(status, "media_attachments")) {
    for (const json::value& mv : *media) {
      if (const json::object* m = mv.if_object()) {
        // docs.joinmastodon.org entities/MediaAttachment: `url` is the file on this instance
        // (null while a remote file is not cached yet: then `remote_url`, the original).
        std::string url = str_at(*m, "url");
        if (url.empty()) {
          url = str_at(*m, "remote_url");
        }
        Attachment a{url_file_name(url), mastodon_media_type(str_at(*m, "type")), 0};
        a.url = std::move(url);
        in.attachments.push_back(std::move(a));
      }
    }
  }
  std::string parent = str_at(status, "in_reply_to_id");
  if (!parent.empty()) {
    in.in_reply_to = parent;
    in.thread_lookup.push_back(mastodon_thread_key(cfg, parent, in.from->value));
  }
  in.thread_record.push_back(mastodon_thread_key(cfg, status_id, in.from->value));
  in.flags.push_back("visibility:" + (visibility.empty() ? std::string("public") : visibility));
  return in;
}

}  // namespace

MastodonPage parse_mastodon_notifications(const config::Mastodon& cfg, std::string_view body,
                                          std::string_view local_domain) {
  MastodonPage page;
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_array()) {
    page.error = "the notifications response is not a JSON array";
    return page;
  }
  std::string domain =
      local_domain.empty() ? mastodon_instance_domain(cfg.base_url) : std::string(local_domain);
  std::vector<std::pair<std::string, Inbound>> found;  // notification id, item
  for (const json::value& v : root.get_array()) {
    const json::object* n = v.if_object();
    if (n == nullptr) {
      continue;
    }
    std::string id = str_at(*n, "id");
    if (id.empty()) {
      continue;
    }
    ++page.notifications;
    if (page.newest_id.empty() || id_less(page.newest_id, id)) {
      page.newest_id = id;
    }
    if (page.oldest_id.empty() || id_less(id, page.oldest_id)) {
      page.oldest_id = id;
    }
    if (auto at = parse_rfc3339(str_at(*n, "created_at"))) {
      if (page.oldest_at_ms == 0 || *at < page.oldest_at_ms) {
        page.oldest_at_ms = *at;
      }
    }
    // Other types still move the cursor (an old server may ignore types[]); a mention whose
    // status was deleted meanwhile arrives with status null and is skipped.
    const json::object* status = obj_at(*n, "status");
    if (str_at(*n, "type") != "mention" || status == nullptr) {
      continue;
    }
    if (auto in = mention_to_inbound(cfg, domain, *status)) {
      found.emplace_back(id, std::move(*in));
    }
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return id_less(a.first, b.first); });
  for (auto& [id, in] : found) {
    page.items.push_back(std::move(in));
  }
  page.ok = true;
  return page;
}

std::string mastodon_visibility(const std::vector<std::string>& flags, std::string_view kind) {
  for (const std::string& f : flags) {
    if (f.size() > 11 && f.rfind("visibility:", 0) == 0) {
      // "private" is followers-only: the customer's followers saw the mention, but a reply of
      // ours so marked goes to *our* followers (and the accounts it mentions). Only "direct"
      // keeps it to the customer, who is mentioned in it.
      std::string v = f.substr(11);
      return v == "private" ? "direct" : v;
    }
  }
  return kind == "direct_message" ? "direct" : "public";
}

HttpRequestSpec mastodon_reply(const config::Mastodon& cfg, const MastodonReply& reply) {
  std::string acct = reply.acct;
  if (!acct.empty() && acct.front() == '@') {
    acct.erase(0, 1);
  }
  json::object body;
  body["status"] = "@" + acct + " " + reply.text;
  body["in_reply_to_id"] = reply.in_reply_to_id;
  body["visibility"] = reply.visibility.empty() ? "public" : reply.visibility;
  HttpRequestSpec r;
  r.method = "POST";
  r.target = "/api/v1/statuses";
  r.content_type = "application/json";
  r.body = json::serialize(body);
  r.headers.emplace_back("Authorization", "Bearer " + cfg.access_token);
  r.headers.emplace_back("Idempotency-Key", reply.idempotency_key);
  return r;
}

std::string parse_mastodon_status_id(std::string_view body) {
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object()) {
    return {};
  }
  return str_at(root.get_object(), "id");
}

}  // namespace sb::social
