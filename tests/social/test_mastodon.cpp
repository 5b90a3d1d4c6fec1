// Mastodon: notifications parsing, HTML to text, identities, Link headers, rate pacing, replies.
#include <chrono>
#include <map>
#include <string>

#include <doctest/doctest.h>

#include "channels/social/html_text.hpp"
#include "channels/social/link_header.hpp"
#include "channels/social/mastodon.hpp"
#include "channels/social/rate_pacing.hpp"

using namespace sb::social;
using namespace std::chrono_literals;

namespace {

sb::config::Mastodon masto_cfg() {
  sb::config::Mastodon cfg;
  cfg.name = "social";
  cfg.base_url = "https://Mastodon.Example/";
  cfg.access_token = "masto-token";
  return cfg;
}

// Shapes of docs.joinmastodon.org entities/Notification and entities/Status (newest first, as
// GET /api/v1/notifications returns them).
const std::string kNotifications = R"([
  {"id":"34975861","type":"mention","created_at":"2019-11-23T07:49:02.064Z",
   "account":{"id":"971724","username":"zsc","acct":"zsc","display_name":"Zed"},
   "status":{"id":"103186126728896492","created_at":"2019-11-23T07:49:01.940Z",
     "in_reply_to_id":"103186046232936464","in_reply_to_account_id":"14715",
     "sensitive":false,"spoiler_text":"","visibility":"direct","language":"en",
     "content":"<p><span class=\"h-card\"><a href=\"https://mastodon.example/@support\" class=\"u-url mention\">@<span>support</span></a></span> my order &amp; invoice are missing</p>",
     "account":{"id":"971724","username":"zsc","acct":"zsc","display_name":"Zed"},
     "media_attachments":[],"mentions":[{"id":"14715","username":"support",
       "url":"https://mastodon.example/@support","acct":"support"}]}},
  {"id":"34975535","type":"favourite","created_at":"2019-11-23T07:29:18.903Z",
   "account":{"id":"297420","username":"haskal","acct":"haskal@cybre.space"},
   "status":{"id":"103186046232936464","visibility":"public","content":"<p>x</p>",
     "account":{"id":"14715","acct":"support"}}},
  {"id":"34975000","type":"mention","created_at":"2019-11-23T07:20:00.000Z",
   "account":{"id":"297420","username":"Haskal","acct":"Haskal@Cybre.Space"},
   "status":{"id":"103186000000000000","created_at":"2019-11-23T07:19:59.000Z",
     "in_reply_to_id":null,"visibility":"unlisted","spoiler_text":"",
     "content":"<p><span class=\"h-card\"><a href=\"https://mastodon.example/@support\" class=\"u-url mention\" rel=\"nofollow noopener noreferrer\" target=\"_blank\">@<span>support</span></a></span> hi<br>line two</p><p>see <a href=\"https://example.com/a\" rel=\"nofollow noopener\" target=\"_blank\"><span class=\"invisible\">https://</span><span class=\"\">example.com/a</span><span class=\"invisible\"></span></a> <a href=\"https://cybre.space/tags/help\" class=\"mention hashtag\" rel=\"tag\">#<span>help</span></a></p>",
     "account":{"id":"297420","username":"Haskal","acct":"Haskal@Cybre.Space","display_name":"Haskal"},
     "media_attachments":[{"id":"1","type":"image","url":"https://files.example/media/abc.png"}],
     "mentions":[{"id":"14715","username":"support","url":"https://mastodon.example/@support",
       "acct":"support@mastodon.example"}]}},
  {"id":"34974000","type":"mention","account":{"id":"1","acct":"gone"},"status":null}
])";

}  // namespace

TEST_CASE("Mastodon notifications: mentions only, oldest first, cursor = newest id") {
  auto page = parse_mastodon_notifications(masto_cfg(), kNotifications);
  REQUIRE(page.ok);
  CHECK(page.notifications == 4);
  CHECK(page.newest_id == "34975861");
  REQUIRE(page.items.size() == 2);

  const auto& first = page.items[0];  // the older one
  CHECK(first.channel == "mastodon");
  CHECK(first.account == "social");
  CHECK(first.kind == "mention");
  CHECK(first.external_id == "103186000000000000");
  REQUIRE(first.from);
  CHECK(first.from->type == "mastodon");
  CHECK(first.from->value == "haskal@cybre.space");
  CHECK(first.from->handle == "@Haskal@Cybre.Space");
  CHECK(first.text == "@support@mastodon.example hi\nline two\n\nsee https://example.com/a #help");
  CHECK(first.thread_lookup.empty());
  CHECK(first.thread_record ==
        std::vector<std::string>{"mastodon:social:103186000000000000:haskal@cybre.space"});
  CHECK(first.occurred_at_ms == 1574493599000);
  CHECK(mastodon_visibility(first.flags, first.kind) == "unlisted");
  REQUIRE(first.attachments.size() == 1);
  CHECK(first.attachments[0].filename == "abc.png");

  const auto& dm = page.items[1];
  CHECK(dm.kind == "direct_message");
  CHECK(dm.from->value == "zsc@mastodon.example");  // local account gets the instance domain
  CHECK(dm.from->handle == "@zsc");
  CHECK(dm.text == "@support my order & invoice are missing");
  CHECK(dm.in_reply_to == "103186046232936464");
  CHECK(dm.thread_lookup ==
        std::vector<std::string>{"mastodon:social:103186046232936464:zsc@mastodon.example"});
  CHECK(dm.thread_record ==
        std::vector<std::string>{"mastodon:social:103186126728896492:zsc@mastodon.example"});
  CHECK(mastodon_visibility(dm.flags, dm.kind) == "direct");
  // An interaction stored without the flag: a direct message is still never answered in public.
  CHECK(mastodon_visibility({}, "direct_message") == "direct");
  CHECK(mastodon_visibility({"visibility:"}, "mention") == "public");
  // Followers-only: a reply so marked would go to the support account's followers.
  CHECK(mastodon_visibility({"visibility:private"}, "mention") == "direct");
}

TEST_CASE("Mastodon media: the link is kept, the type becomes a MIME family") {
  // docs.joinmastodon.org entities/MediaAttachment: type is unknown | image | gifv | video |
  // audio; url is null while a remote file is not cached, remote_url is the original then.
  const std::string body = R"([{"id":"7","type":"mention","created_at":"2019-11-23T07:49:02.064Z",
    "status":{"id":"70","created_at":"2019-11-23T07:49:01.940Z","visibility":"public",
      "content":"<p>look</p>","account":{"id":"1","acct":"ann@remote.example"},
      "media_attachments":[
        {"id":"1","type":"image","url":"https://files.example/media/abc.png?name=orig"},
        {"id":"2","type":"gifv","url":null,"remote_url":"https://remote.example/m/loop.mp4"},
        {"id":"3","type":"audio","url":"https://files.example/media/voice.mp3"},
        {"id":"4","type":"unknown","url":"https://files.example/media/x"}]}}])";
  auto page = parse_mastodon_notifications(masto_cfg(), body);
  REQUIRE(page.items.size() == 1);
  const auto& a = page.items[0].attachments;
  REQUIRE(a.size() == 4);
  CHECK(a[0].filename == "abc.png");
  CHECK(a[0].content_type == "image/*");
  CHECK(a[0].url == "https://files.example/media/abc.png?name=orig");
  CHECK(a[1].filename == "loop.mp4");
  CHECK(a[1].content_type == "video/*");
  CHECK(a[1].url == "https://remote.example/m/loop.mp4");
  CHECK(a[2].content_type == "audio/*");
  CHECK(a[3].content_type == "application/octet-stream");
  CHECK(url_file_name("https://cdn.example") == "");
  CHECK(url_file_name("https://cdn.example/a/b.jpg#frag") == "b.jpg");
}

TEST_CASE("Mastodon: a non-array body is an error, ids compare as numbers") {
  CHECK_FALSE(
      parse_mastodon_notifications(masto_cfg(), R"({"error":"The access token is invalid"})").ok);
  auto page = parse_mastodon_notifications(
      masto_cfg(), R"([{"id":"9","type":"follow"},{"id":"10","type":"follow"}])");
  CHECK(page.ok);
  CHECK(page.items.empty());
  CHECK(page.newest_id == "10");  // not "9", which is larger as a string
}

TEST_CASE("HTML to text: paragraphs, breaks, entities, tags") {
  CHECK(html_to_text("<p>a</p><p>b<br />c</p>") == "a\n\nb\nc");
  CHECK(html_to_text("<p>5 &lt; 6 &amp;&amp; &quot;x&quot; &#39;y&#39; &#x1F600; &#233;</p>") ==
        "5 < 6 && \"x\" 'y' \xF0\x9F\x98\x80 \xC3\xA9");
  CHECK(html_to_text("plain &unknown; text") == "plain &unknown; text");
  // Without a resolver the mention keeps its visible text.
  CHECK(
      html_to_text(
          R"(<p><span class="h-card"><a href="https://m.example/@ann" class="u-url mention">@<span>ann</span></a></span> hey</p>)") ==
      "@ann hey");
}

TEST_CASE("Mastodon instance domain and base URL") {
  CHECK(mastodon_instance_domain("https://Mastodon.Example/") == "mastodon.example");
  CHECK(mastodon_instance_domain("http://127.0.0.1:8081") == "127.0.0.1");
  auto u = parse_base_url("http://127.0.0.1:8081/prefix/");
  REQUIRE(u);
  CHECK(u->port == 8081);
  CHECK(u->path == "/prefix");
  CHECK_FALSE(parse_base_url("ftp://x"));
  CHECK(mastodon_notifications_target("") ==
        "/api/v1/notifications?types%5B%5D=mention&limit=40&min_id=0&include_filtered=true");
  CHECK(mastodon_notifications_target("34975861", 40) ==
        "/api/v1/notifications?types%5B%5D=mention&limit=40&min_id=34975861&include_filtered=true");
}

TEST_CASE("Mastodon instance: the local domain from /api/v2/instance or /api/v1/instance") {
  CHECK(parse_mastodon_instance_domain(R"({"domain":"Example.com","title":"x"})") == "example.com");
  CHECK(parse_mastodon_instance_domain(R"({"uri":"example.org","title":"x"})") == "example.org");
  CHECK(parse_mastodon_instance_domain(R"({"uri":"https://pleroma.example/"})") ==
        "pleroma.example");
  CHECK(parse_mastodon_instance_domain(R"({"title":"no domain"})").empty());
  CHECK(parse_mastodon_instance_domain("[]").empty());
  CHECK(parse_mastodon_instance_domain(R"({"domain":"a b"})").empty());
  // A local account takes the domain the instance named, not base_url's host.
  const std::string body = R"([{"id":"7","type":"mention","status":{"id":"70",
    "visibility":"public","content":"<p>hi</p>","account":{"id":"1","acct":"zsc"}}}])";
  auto page = parse_mastodon_notifications(masto_cfg(), body, "example.com");
  REQUIRE(page.items.size() == 1);
  CHECK(page.items[0].from->value == "zsc@example.com");
  CHECK(page.items[0].thread_record ==
        std::vector<std::string>{"mastodon:social:70:zsc@example.com"});
}

TEST_CASE("Link header: next and prev with their cursors") {
  auto links = parse_link_header(
      R"(<https://mastodon.example/api/v1/notifications?max_id=34975535>; rel="next", <https://mastodon.example/api/v1/notifications?min_id=34975861>; rel="prev")");
  REQUIRE(links.size() == 2);
  CHECK(query_param(links.at("next"), "max_id") == "34975535");
  CHECK(query_param(links.at("prev"), "min_id") == "34975861");
  CHECK_FALSE(query_param(links.at("prev"), "max_id"));
  CHECK(parse_link_header("").empty());
  auto unquoted = parse_link_header("</a?x=1>; rel=next");
  CHECK(unquoted.at("next") == "/a?x=1");
}

TEST_CASE("Reply request: @acct first, threaded, same visibility, Idempotency-Key") {
  auto r = mastodon_reply(masto_cfg(), {"@haskal@cybre.space", "We are on it.",
                                        "103186000000000000", "unlisted", "01JD3ABCDEF"});
  CHECK(r.method == "POST");
  CHECK(r.target == "/api/v1/statuses");
  CHECK(
      r.body ==
      R"({"status":"@haskal@cybre.space We are on it.","in_reply_to_id":"103186000000000000","visibility":"unlisted"})");
  std::map<std::string, std::string> h(r.headers.begin(), r.headers.end());
  CHECK(h["Idempotency-Key"] == "01JD3ABCDEF");
  CHECK(h["Authorization"] == "Bearer masto-token");
  CHECK(parse_mastodon_status_id(R"({"id":"103186200000000000","content":"x"})") ==
        "103186200000000000");
}

TEST_CASE("Rate-limit headers parse, ISO 8601 reset") {
  std::map<std::string, std::string> h{{"X-RateLimit-Limit", "300"},
                                       {"X-RateLimit-Remaining", "299"},
                                       {"X-RateLimit-Reset", "2026-01-02T03:05:00.000Z"}};
  auto info = parse_rate_limit_iso([&](std::string_view n) -> std::optional<std::string> {
    auto it = h.find(std::string(n));
    return it == h.end() ? std::nullopt : std::optional(it->second);
  });
  CHECK(info.limit == 300);
  CHECK(info.remaining == 299);
  REQUIRE(info.reset);
  CHECK(std::chrono::duration_cast<std::chrono::seconds>(info.reset->time_since_epoch()).count() ==
        1767323100);
}

TEST_CASE("Pacing: burst while the budget lasts, spread the reserve, wait at zero") {
  auto now = Clock::time_point(1000h);
  auto reset = now + 300s;
  CHECK(next_delay(300, reset, now) == 0ms);
  CHECK(next_delay(31, reset, now) == 0ms);
  CHECK(next_delay(29, reset, now) == 10000ms);  // 300 s over the last 29 (+1)
  CHECK(next_delay(0, reset, now) == 301000ms);
  CHECK(next_delay(0, now - 1s, now) == 0ms);  // window already reset
}

namespace {

// A server that allows `limit` requests per fixed window starting at the first request, like
// Mastodon's, answering 429 when the budget is spent. Returns the simulated time taken.
struct Sim {
  int requests_sent = 0;
  int rejected = 0;
  int max_in_any_window = 0;
  std::chrono::milliseconds elapsed{};
};

Sim simulate(int pages, int start_remaining, std::chrono::milliseconds latency) {
  Sim sim;
  auto t0 = Clock::time_point(1000h);
  auto now = t0;
  auto window_start = t0;
  int remaining = start_remaining;
  RequestWindow local(300, 5min);
  std::deque<Clock::time_point> log;
  int done = 0;
  Clock::time_point reset = window_start + 5min;
  while (done < pages) {
    if (now >= window_start + 5min) {
      window_start = now;
      remaining = 300;
      reset = window_start + 5min;
    }
    // The request.
    ++sim.requests_sent;
    local.record(now);
    log.push_back(now);
    while (log.front() + 5min <= now) {
      log.pop_front();
    }
    sim.max_in_any_window = std::max(sim.max_in_any_window, static_cast<int>(log.size()));
    if (remaining <= 0) {
      ++sim.rejected;
    } else {
      --remaining;
      ++done;
    }
    now += latency;
    auto wait = std::max(next_delay(remaining, reset, now), local.delay(now));
    now += wait;
  }
  sim.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(now - t0);
  return sim;
}

}  // namespace

TEST_CASE("Pacing: a 10,000-mention backlog (250 pages of 40) takes under 60 s") {
  auto sim = simulate(10000 / 40, 300, 20ms);
  CHECK(sim.requests_sent == 250);
  CHECK(sim.rejected == 0);
  CHECK(sim.elapsed < 60s);
}

TEST_CASE("Pacing: a long backlog never exceeds 300 per 5 minutes and never hits 429") {
  auto sim = simulate(1000, 300, 20ms);
  CHECK(sim.rejected == 0);
  CHECK(sim.max_in_any_window <= 300);
  CHECK(sim.elapsed > 15min);  // 1000 requests need at least four windows

  // Starting with a nearly spent budget: slows down, still no 429.
  auto low = simulate(100, 5, 20ms);
  CHECK(low.rejected == 0);
}

TEST_CASE("RequestWindow: the 301st request waits for the first to leave the window") {
  RequestWindow w(3, 10s);
  auto t = Clock::time_point(1000h);
  w.record(t);
  w.record(t + 1s);
  w.record(t + 2s);
  CHECK(w.delay(t + 2s) == 8000ms);
  CHECK(w.delay(t + 10s) == 0ms);
}

TEST_CASE(
    "Mastodon: another customer replying in a customer's thread gets a conversation of his own") {
  // Bob answers Ann's public mention; Mastodon mentions everyone in the thread, us included, so
  // it is a mention notification of ours. Threading by the parent status alone would file it in
  // Ann's conversation, under Ann. Ann's own follow-up still joins hers.
  auto page = parse_mastodon_notifications(masto_cfg(), R"([
    {"id":"3","type":"mention","account":{"id":"3","acct":"ann@remote.example"},
     "status":{"id":"1003","in_reply_to_id":"1002","visibility":"public","content":"<p>any news?</p>",
       "account":{"id":"3","acct":"ann@remote.example"},"mentions":[]}},
    {"id":"2","type":"mention","account":{"id":"2","acct":"bob"},
     "status":{"id":"1002","in_reply_to_id":"1001","visibility":"public","content":"<p>me too</p>",
       "account":{"id":"2","acct":"bob"},"mentions":[]}},
    {"id":"1","type":"mention","account":{"id":"3","acct":"ann@remote.example"},
     "status":{"id":"1001","in_reply_to_id":null,"visibility":"public","content":"<p>help</p>",
       "account":{"id":"3","acct":"ann@remote.example"},"mentions":[]}}
  ])");
  REQUIRE(page.items.size() == 3);
  const auto& ann = page.items[0];
  const auto& bob = page.items[1];
  const auto& ann_again = page.items[2];
  REQUIRE(bob.thread_lookup.size() == 1);
  for (const auto& key : ann.thread_record) {
    CHECK(key != bob.thread_lookup[0]);  // Bob's reply to Ann's status does not find hers
  }
  // Ann replying to Bob's status is Ann's thread, not Bob's.
  for (const auto& key : bob.thread_record) {
    CHECK(key != ann_again.thread_lookup[0]);
  }
}

TEST_CASE("decode_entities: a text of a million '&' takes linear time, references still decode") {
  auto t0 = std::chrono::steady_clock::now();
  CHECK(decode_entities(std::string(1 << 20, '&')).size() == (1u << 20));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  CHECK(decode_entities("a &amp; b &lt;c&gt; &#39;d&#39; &nbsp ;") == "a & b <c> 'd' &nbsp ;");
  // The names email knows too (core/html_entities); &nbsp; a plain space; out of range U+FFFD.
  CHECK(decode_entities("wait&hellip;&nbsp;ok &#x110000; &#99999999;") ==
        "wait\xE2\x80\xA6 ok \xEF\xBF\xBD &#99999999;");
}
