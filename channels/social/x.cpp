#include "channels/social/x.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "channels/social/html_text.hpp"
#include "channels/social/oauth1.hpp"
#include "core/time.hpp"

namespace sb::social {

namespace json = boost::json;

std::string x_mentions_target(const config::X& cfg, std::string_view since_id,
                              std::string_view pagination_token, std::string_view start_time) {
  // referenced_tweets gives the parent tweet id (in_reply_to); user.fields default to
  // id, name, username, which is all we need from includes.users.
  std::string t = "/2/users/" + cfg.user_id +
                  "/mentions?max_results=100&expansions=author_id"
                  "&tweet.fields=created_at,conversation_id,in_reply_to_user_id,referenced_tweets,"
                  "note_tweet,edit_history_tweet_ids";
  if (!since_id.empty()) {
    t += "&since_id=" + std::string(since_id);
  }
  if (!start_time.empty()) {
    t += "&start_time=" + std::string(start_time);  // [0-9T:Z-] only: nothing to escape
  }
  if (!pagination_token.empty()) {
    t += "&pagination_token=" + std::string(pagination_token);
  }
  return t;
}

XMentionsPage parse_x_mentions(const config::X& cfg, std::string_view body) {
  XMentionsPage page;
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object()) {
    page.error = "the mentions response is not a JSON object";
    return page;
  }
  const json::object& obj = root.get_object();
  if (const json::object* meta = obj_at(obj, "meta")) {
    page.newest_id = str_at(*meta, "newest_id");
    page.oldest_id = str_at(*meta, "oldest_id");
    page.next_token = str_at(*meta, "next_token");
    page.result_count = static_cast<int>(int_at(*meta, "result_count").value_or(0));
  }
  const json::array* users = nullptr;
  if (const json::object* includes = obj_at(obj, "includes")) {
    users = arr_at(*includes, "users");
  }
  auto user_of = [users](const std::string& id) -> const json::object* {
    if (users == nullptr) {
      return nullptr;
    }
    for (const json::value& u : *users) {
      const json::object* uo = u.if_object();
      if (uo != nullptr && str_at(*uo, "id") == id) {
        return uo;
      }
    }
    return nullptr;
  };
  if (const json::array* data = arr_at(obj, "data")) {
    for (const json::value& tv : *data) {
      const json::object* t = tv.if_object();
      if (t == nullptr) {
        continue;
      }
      std::string id = str_at(*t, "id");
      std::string author = str_at(*t, "author_id");
      if (id.empty() || author.empty()) {
        continue;
      }
      // Our own posts show up too (a reply in a thread of ours mentions us): they are not a
      // customer's mention. meta.newest_id still covers them, so the cursor moves past.
      if (author == cfg.user_id) {
        continue;
      }
      Inbound in;
      in.channel = "x";
      in.account = cfg.name;
      in.kind = "mention";
      in.external_id = id;
      // Each edit is a new post id; the timeline returns the latest version only, with the
      // chain in edit_history_tweet_ids, oldest (the original) first (docs.x.com "Edit posts").
      // The original is the dedupe key: an edit of a mention already stored is a duplicate.
      // Replies go to the version seen (flag x_post_id), which is the one X shows.
      if (const json::array* edits = arr_at(*t, "edit_history_tweet_ids");
          edits != nullptr && !edits->empty() && edits->front().is_string()) {
        std::string original(edits->front().get_string());
        if (!original.empty() && original != id) {
          in.external_id = original;
          in.flags.push_back("x_post_id:" + id);
        }
      }
      Identity from{"x", author, "", ""};
      if (const json::object* u = user_of(author)) {
        from.name = str_at(*u, "name");
        from.handle = str_at(*u, "username");
      }
      in.from = std::move(from);
      // X escapes '&', '<' and '>' in post text as HTML entities (every '&', so one decoding
      // pass restores what the customer wrote).
      // Posts longer than 280 characters come truncated in `text`, whole in note_tweet.text.
      std::string text = str_at(*t, "text");
      if (const json::object* note = obj_at(*t, "note_tweet")) {
        if (std::string full = str_at(*note, "text"); !full.empty()) {
          text = std::move(full);
        }
      }
      in.text = decode_entities(text);
      if (auto at = parse_rfc3339(str_at(*t, "created_at"))) {
        in.occurred_at_ms = *at;
      }
      if (const json::array* refs = arr_at(*t, "referenced_tweets")) {
        for (const json::value& rv : *refs) {
          const json::object* r = rv.if_object();
          if (r != nullptr && str_at(*r, "type") == "replied_to") {
            in.in_reply_to = str_at(*r, "id");
          }
        }
      }
      std::string conversation = str_at(*t, "conversation_id");
      if (conversation.empty()) {
        conversation = in.external_id;  // a post that starts a conversation is its own
      }
      // One conversation per customer in a thread: many customers answer a post of ours, and
      // all their replies share its conversation_id.
      std::string key = "x:" + cfg.name + ":conv:" + conversation + ":" + author;
      in.thread_lookup.push_back(key);
      in.thread_record.push_back(key);
      page.items.push_back(std::move(in));
    }
  }
  std::stable_sort(page.items.begin(), page.items.end(), [](const Inbound& a, const Inbound& b) {
    return id_less(a.external_id, b.external_id);
  });
  page.ok = true;
  return page;
}

namespace {

// X's 24-hour limits on posting. Besides the 15-minute window of every endpoint
// (x-rate-limit-*), POST /2/tweets is counted over 24 hours: docs.x.com "X API Rate Limits",
// "Manage posts", lists 10,000 / 24 h per app; the "Rate limits" guide of X's xdk-python lists
// 100 / 24 h per user on Basic (50 on Free). X reports these in headers its rate-limit page does
// not list, each the limit, what is left and the reset in Unix seconds: x-user-limit-24hour-limit /
// -remaining / -reset and x-app-limit-24hour-limit / -remaining / -reset (clients read them so,
// e.g. the header list of the twapi-v2 crate; a 429 with the user's 24-hour remaining at 0 while
// the 15-minute window had room is described in "The X API Rate Limit That Doesn't Exist in the
// Docs", nabbilkhan.com, 2026). Such a 429 lasts until that reset, hours away: retrying at the
// 15-minute x-rate-limit-reset only spends another request on the same refusal.
// Both used up: the later reset (a reply waits until both have reset).
std::optional<XError::DailyCap> daily_cap(const HeaderLookup& header) {
  std::optional<XError::DailyCap> out;
  for (const char* scope : {"user", "app"}) {
    const std::string prefix = std::string("x-") + scope + "-limit-24hour-";
    auto remaining = header(prefix + "remaining");
    long long left = 0;
    if (!remaining ||
        std::from_chars(remaining->data(), remaining->data() + remaining->size(), left).ptr !=
            remaining->data() + remaining->size() ||
        remaining->empty() || left > 0) {
      continue;
    }
    XError::DailyCap cap{scope, std::nullopt, prefix + "reset"};
    if (auto reset = header(prefix + "reset")) {
      cap.reset = parse_unix_seconds_reset(*reset);
      cap.reset_header += " \"" + reset->substr(0, 40) + "\"";
    } else {
      cap.reset_header += " (absent)";
    }
    if (!out || (cap.reset && (!out->reset || *cap.reset > *out->reset))) {
      out = std::move(cap);
    }
  }
  return out;
}

}  // namespace

XError classify_x_response(int http_status, std::string_view body, const HeaderLookup& header) {
  XError e;
  if (http_status >= 200 && http_status < 300) {
    return e;
  }
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  std::string type;
  if (!ec && root.is_object()) {
    const json::object& o = root.get_object();
    e.title = str_at(o, "title");
    e.detail = str_at(o, "detail");
    type = str_at(o, "type");
  }
  if (header) {
    if (auto reset = header("x-rate-limit-reset")) {
      e.reset = parse_unix_seconds_reset(*reset);
    }
  }
  constexpr std::string_view capped = "/problems/usage-capped";
  if (type.size() >= capped.size() &&
      type.compare(type.size() - capped.size(), capped.size(), capped) == 0) {
    e.kind = XError::Kind::usage_capped;  // arrives as a 429 too: check it first
  } else if (http_status == 429) {
    e.kind = XError::Kind::rate_limited;
    if (header) {
      e.daily_cap = daily_cap(header);
    }
  } else if (http_status == 401 || http_status == 403) {
    e.kind = XError::Kind::unauthorized;
    // POST /2/tweets refuses a text the account posted recently with a 403 whose problem body
    // is the generic one of any 403 (no access to the endpoint, a suspended app):
    //   {"detail":"You are not allowed to create a Tweet with duplicate content.",
    //    "type":"about:blank","title":"Forbidden","status":403}
    // (as X answers it since v2; v1.1 had error code 187 "Status is a duplicate."). "type" and
    // "title" do not tell it apart, so the detail is the marker, matched without case.
    e.duplicate_content =
        http_status == 403 && ascii_lower(e.detail).find("duplicate content") != std::string::npos;
  } else if (http_status >= 500 || http_status == 0) {
    e.kind = XError::Kind::server;
  } else {
    e.kind = XError::Kind::other;
  }
  if (e.title.empty()) {
    e.title = "HTTP " + std::to_string(http_status);
  }
  return e;
}

XMentionsPager::XMentionsPager(std::string since_id, std::size_t max_items, std::int64_t since_ms)
    : since_id_(std::move(since_id)), max_items_(max_items) {
  if (since_id_.empty() && since_ms > 0) {
    since_ms_ = since_ms;
    // X takes whole seconds, inclusive: rounding down keeps the look-back's first second in.
    start_time_ = format_rfc3339(since_ms / 1000 * 1000);
  }
}

std::string XMentionsPager::next_target(const config::X& cfg) const {
  return x_mentions_target(cfg, request_since_.empty() ? since_id_ : request_since_, next_token_,
                           start_time_);
}

bool XMentionsPager::add(XMentionsPage page) {
  if (done_) {
    return true;
  }
  if (newest_id_.empty()) {
    newest_id_ = page.newest_id;  // the first page holds the newest tweets
  }
  bool past_look_back = false;
  if (since_ms_ > 0) {
    // Items are oldest first: drop those before the look-back (a mention without a date stays).
    auto first_inside = std::find_if(page.items.begin(), page.items.end(), [&](const Inbound& in) {
      return in.occurred_at_ms == 0 || in.occurred_at_ms >= since_ms_;
    });
    past_look_back = first_inside != page.items.begin();
    for (auto it = page.items.begin(); it != first_inside; ++it) {
      skipped_.push_back(it->external_id);
      for (const std::string& f : it->flags) {
        if (f.rfind("x_post_id:", 0) == 0) {
          skipped_.push_back(f.substr(10));
        }
      }
    }
    page.items.erase(page.items.begin(), first_inside);
  }
  count_ += page.items.size();
  next_token_ = page.next_token;
  pages_.push_back(std::move(page.items));
  done_ = next_token_.empty() || count_ >= max_items_ || past_look_back;
  return done_;
}

std::vector<Inbound> XMentionsPager::take_items() {
  std::vector<Inbound> out;
  out.reserve(count_);
  for (auto it = pages_.rbegin(); it != pages_.rend(); ++it) {
    for (Inbound& in : *it) {
      out.push_back(std::move(in));
    }
  }
  pages_.clear();
  return out;
}

std::optional<std::string> XMentionsPager::cursor() const {
  if (newest_id_.empty() || (!since_id_.empty() && !id_less(since_id_, newest_id_))) {
    return std::nullopt;
  }
  return newest_id_;
}

std::string x_dm_events_target(std::string_view pagination_token) {
  // sender_id expands to includes.users (id, name, username: the defaults); attachments'
  // media_keys to includes.media, whose url (photos) or preview_image_url (videos, GIFs) is the
  // attachment's link.
  std::string t =
      "/2/dm_events?max_results=100&event_types=MessageCreate"
      "&dm_event.fields=id,text,event_type,created_at,sender_id,dm_conversation_id,"
      "participant_ids,attachments"
      "&expansions=sender_id,attachments.media_keys&media.fields=type,url,preview_image_url";
  if (!pagination_token.empty()) {
    // Opaque to clients; X's are [0-9A-Za-z], but a token is never trusted into a URL as is.
    t += "&pagination_token=";
    for (unsigned char c : pagination_token) {
      if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
        t += static_cast<char>(c);
      } else {
        static constexpr char kHex[] = "0123456789ABCDEF";
        t += '%';
        t += kHex[c >> 4];
        t += kHex[c & 0xF];
      }
    }
  }
  return t;
}

namespace {

// The X media type (photo | video | animated_gif) as a MIME family; a GIF is a looping video.
std::string x_media_type(std::string_view type) {
  if (type == "photo") {
    return "image/*";
  }
  if (type == "video" || type == "animated_gif") {
    return "video/*";
  }
  return "application/octet-stream";
}

const json::object* find_by(const json::array* list, std::string_view key, std::string_view id) {
  if (list == nullptr) {
    return nullptr;
  }
  for (const json::value& v : *list) {
    const json::object* o = v.if_object();
    if (o != nullptr && str_at(*o, key) == id) {
      return o;
    }
  }
  return nullptr;
}

}  // namespace

XDmPage parse_x_dm_events(const config::X& cfg, std::string_view body) {
  XDmPage page;
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object()) {
    page.error = "the dm_events response is not a JSON object";
    return page;
  }
  const json::object& obj = root.get_object();
  if (const json::object* meta = obj_at(obj, "meta")) {
    page.next_token = str_at(*meta, "next_token");
  }
  const json::array* users = nullptr;
  const json::array* media = nullptr;
  if (const json::object* includes = obj_at(obj, "includes")) {
    users = arr_at(*includes, "users");
    media = arr_at(*includes, "media");
  }
  const json::array* data = arr_at(obj, "data");
  if (data == nullptr) {
    page.ok = true;  // {"meta":{"result_count":0}}: nothing (yet)
    return page;
  }
  for (const json::value& ev : *data) {
    const json::object* e = ev.if_object();
    if (e == nullptr) {
      continue;
    }
    XDmEvent event;
    event.id = str_at(*e, "id");
    if (event.id.empty() || event.id.find_first_not_of("0123456789") != std::string::npos) {
      continue;  // not an id the cursor can be compared with
    }
    if (auto at = parse_rfc3339(str_at(*e, "created_at"))) {
      event.created_at_ms = *at;
    }
    const std::string sender = str_at(*e, "sender_id");
    // Only MessageCreate is asked for; a ParticipantsJoin/Leave all the same moves the cursor
    // only. So does our own message: it is the account's answer, not a customer's.
    if (str_at(*e, "event_type") == "MessageCreate" && !sender.empty() && sender != cfg.user_id) {
      Inbound in;
      in.channel = "x";
      in.account = cfg.name;
      in.kind = "direct_message";
      in.external_id = std::string(kXDmPrefix) + event.id;
      Identity from{"x", sender, "", ""};
      if (const json::object* u = find_by(users, "id", sender)) {
        from.name = str_at(*u, "name");
        from.handle = str_at(*u, "username");
      }
      in.from = std::move(from);
      // Unlike post text, DM text is not HTML-escaped by X: taken as it is.
      in.text = str_at(*e, "text");
      in.occurred_at_ms = event.created_at_ms;
      std::string conversation = str_at(*e, "dm_conversation_id");
      if (!conversation.empty()) {
        in.flags.push_back("dm_conversation_id:" + conversation);
      } else {
        // Not given: X names a one-to-one conversation "<lower user id>-<higher user id>"
        // (a reply then goes to the sender by user id).
        conversation =
            id_less(sender, cfg.user_id) ? sender + "-" + cfg.user_id : cfg.user_id + "-" + sender;
      }
      std::string key = "x:" + cfg.name + ":dm:" + conversation;
      in.thread_lookup.push_back(key);
      in.thread_record.push_back(key);
      if (const json::object* att = obj_at(*e, "attachments")) {
        if (const json::array* keys = arr_at(*att, "media_keys")) {
          for (const json::value& k : *keys) {
            if (!k.is_string()) {
              continue;
            }
            const json::object* m = find_by(media, "media_key", k.get_string());
            std::string url = m == nullptr ? "" : str_at(*m, "url");
            if (url.empty() && m != nullptr) {
              url = str_at(*m, "preview_image_url");
            }
            Attachment a{url.empty() ? std::string(k.get_string()) : url_file_name(url),
                         x_media_type(m == nullptr ? "" : str_at(*m, "type")), 0};
            a.url = std::move(url);
            in.attachments.push_back(std::move(a));
          }
        }
      }
      event.in = std::move(in);
    }
    page.events.push_back(std::move(event));
  }
  page.ok = true;
  return page;
}

XDmPager::XDmPager(std::string cursor, std::int64_t since_ms) : cursor_(std::move(cursor)) {
  if (cursor_.empty()) {
    since_ms_ = since_ms;  // the look-back is a first start's only
  }
}

bool XDmPager::add(XDmPage page) {
  if (done_) {
    return true;
  }
  bool reached = false;
  for (XDmEvent& e : page.events) {
    if (newest_.empty() || id_less(newest_, e.id)) {
      newest_ = e.id;
    }
    // At or below the cursor (or the overlap's start): stored by an earlier poll, and so is
    // everything older.
    const std::string& stop = stop_.empty() ? cursor_ : stop_;
    if (!stop.empty() && !id_less(stop, e.id)) {
      reached = true;
      continue;
    }
    // Before the look-back (an event without a date stays in).
    if (since_ms_ > 0 && e.created_at_ms != 0 && e.created_at_ms < since_ms_) {
      reached = true;
      continue;
    }
    if (e.in) {
      items_.emplace_back(std::move(e.id), std::move(*e.in));
    }
  }
  next_token_ = page.next_token;
  done_ = reached || next_token_.empty();
  return done_;
}

std::vector<Inbound> XDmPager::take_items() {
  std::stable_sort(items_.begin(), items_.end(),
                   [](const auto& a, const auto& b) { return id_less(a.first, b.first); });
  std::vector<Inbound> out;
  out.reserve(items_.size());
  for (auto& [id, in] : items_) {
    out.push_back(std::move(in));
  }
  items_.clear();
  return out;
}

std::optional<std::string> XDmPager::cursor() const {
  if (newest_.empty() || (!cursor_.empty() && !id_less(cursor_, newest_))) {
    return std::nullopt;
  }
  return newest_;
}

std::optional<HttpRequestSpec> x_dm_reply(const config::X& cfg, std::string_view text,
                                          std::string_view dm_conversation_id,
                                          std::string_view participant_id) {
  auto only = [](std::string_view s, std::string_view allowed) {
    return !s.empty() && s.find_first_not_of(allowed) == std::string_view::npos;
  };
  HttpRequestSpec r;
  r.method = "POST";
  if (only(dm_conversation_id, "0123456789-")) {
    r.target = "/2/dm_conversations/" + std::string(dm_conversation_id) + "/messages";
  } else if (only(participant_id, "0123456789")) {
    r.target = "/2/dm_conversations/with/" + std::string(participant_id) + "/messages";
  } else {
    return std::nullopt;
  }
  json::object body;
  body["text"] = text;
  r.content_type = "application/json";
  r.body = json::serialize(body);
  x_authorize_user(cfg, r, cfg.user_context ? oauth1_nonce() : std::string(), now_ms() / 1000);
  return r;
}

std::string parse_x_dm_event_id(std::string_view body) {
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object()) {
    return {};
  }
  const json::object* data = obj_at(root.get_object(), "data");
  return data == nullptr ? "" : str_at(*data, "dm_event_id");
}

HttpRequestSpec x_reply(const config::X& cfg, std::string_view text,
                        std::string_view in_reply_to_tweet_id) {
  json::object body;
  body["text"] = text;
  body["reply"] = json::object{{"in_reply_to_tweet_id", in_reply_to_tweet_id}};
  HttpRequestSpec r;
  r.method = "POST";
  r.target = "/2/tweets";
  r.content_type = "application/json";
  r.body = json::serialize(body);
  x_authorize_user(cfg, r, cfg.user_context ? oauth1_nonce() : std::string(), now_ms() / 1000);
  return r;
}

void x_authorize_user(const config::X& cfg, HttpRequestSpec& spec, std::string_view nonce,
                      std::int64_t timestamp) {
  if (!cfg.user_context) {
    spec.headers.emplace_back("Authorization", "Bearer " + cfg.bearer_token);
    return;
  }
  // The URL the request goes to (to_request): base_url without trailing '/', then the target.
  std::string_view base = cfg.base_url;
  while (!base.empty() && base.back() == '/') {
    base.remove_suffix(1);
  }
  const config::XUserContext& u = *cfg.user_context;
  // A JSON body is not signed; only a form-encoded one would add its parameters here.
  auto header = oauth1_authorization(
      spec.method, std::string(base) + spec.target,
      OAuth1Keys{u.consumer_key, u.consumer_secret, u.access_token, u.access_token_secret}, nonce,
      timestamp);
  if (header) {  // config checks base_url: always, in practice
    spec.headers.emplace_back("Authorization", std::move(*header));
  }
}

std::string parse_x_tweet_id(std::string_view body) {
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object()) {
    return {};
  }
  const json::object* data = obj_at(root.get_object(), "data");
  return data == nullptr ? "" : str_at(*data, "id");
}

}  // namespace sb::social
