#include <doctest/doctest.h>

#include <chrono>

#include "channels/email/html_text.hpp"

using sb::email::html_to_text;

TEST_CASE("html_to_text") {
  CHECK(html_to_text("<p>One</p><p>Two</p>") == "One\n\nTwo");
  CHECK(html_to_text("a<br>b<br/>c") == "a\nb\nc");
  CHECK(html_to_text("<style>p{}</style><script>x()</script>Hi") == "Hi");
  CHECK(html_to_text("<SCRIPT type=x>if (a<b) {}</SCRIPT>ok") == "ok");
  CHECK(html_to_text("<title>t</title><!-- c --><b>bold</b>  and\n  <i>it</i>") == "bold and it");
  CHECK(html_to_text("&lt;tag&gt; &amp; &#233;&#x4E2D; &unknown; AT&T") ==
        "<tag> & é中 &unknown; AT&T");
  CHECK(html_to_text("<a href=\"http://x\">click here</a>") == "click here");
  CHECK(html_to_text("<pre>a\n  b</pre>") == "a\n  b");
  CHECK(html_to_text("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>") ==
        "a b\nc");
  CHECK(html_to_text("1 < 2 and 3 > 2") == "1 < 2 and 3 > 2");
  CHECK(html_to_text("<style>never closed") == "never closed");  // keep words, lose markup
  CHECK(html_to_text("") == "");
}

TEST_CASE("html_to_text: a part of a million '&' takes linear time") {
  // The ';' of a character reference was looked for in the whole rest of the text: quadratic,
  // about 7 s for this part and minutes for a 4 MiB one.
  auto t0 = std::chrono::steady_clock::now();
  std::string text = html_to_text(std::string(1 << 20, '&'));
  CHECK(text.size() == (1u << 20));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  CHECK(html_to_text("&amp;&#233;&eacute&copy; & ;") == "&\xC3\xA9&eacute\xC2\xA9 & ;");
}

TEST_CASE("html_to_text: a '>' inside a script does not end it") {
  CHECK(html_to_text("<script>if (a>b) { f(x => x) }</script>Hi") == "Hi");
  CHECK(html_to_text("<style>p>a{}</style><p>Hi</p>") == "Hi");
}

TEST_CASE("html_to_text: '<' without its '>' and start tags without end tags take linear time") {
  // Each '<' looked for the next '>' (here only at the end), and each <script> for its end tag
  // to the end of the part: quadratic, seconds for this part and hours for a 4 MiB one.
  const std::size_t n = 1 << 18;
  auto t0 = std::chrono::steady_clock::now();
  std::string lt = html_to_text(std::string(n, '<') + ">");
  CHECK(lt == std::string(n, '<') + ">");
  std::string scripts;
  for (std::size_t i = 0; i < n / 8; ++i) {
    scripts += i % 2 == 0 ? "<script>" : "<STYLE>x";
  }
  CHECK(html_to_text(scripts) == std::string(n / 16, 'x'));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
}

TEST_CASE("html_to_text: a blockquote's lines are quoted with \"> \" per level") {
  // Gmail and Outlook quote the message answered in a <blockquote>; in plain text it reads as
  // mail clients quote: every line "> ", blank lines inside it ">", nested ones "> > ".
  CHECK(html_to_text("<p>Thanks!</p><blockquote>Where is<br>my order?</blockquote><p>Bye</p>") ==
        "Thanks!\n\n> Where is\n> my order?\n\nBye");
  CHECK(html_to_text("<div>New</div><blockquote><p>One</p><p>Two</p>"
                     "<blockquote>Older</blockquote>Tail</blockquote>") ==
        "New\n\n> One\n>\n> Two\n>\n> > Older\n>\n> Tail");
  CHECK(html_to_text("<blockquote><pre>a\n  b</pre></blockquote>") == "> a\n>   b");
  CHECK(html_to_text("</blockquote>x") == "x");  // an end tag alone quotes nothing
  // Unclosed ones: the marks stop at eight levels.
  std::string deep;
  for (int i = 0; i < 100000; ++i) {
    deep += "<blockquote>";
  }
  CHECK(html_to_text(deep + "x") == "> > > > > > > > x");
}
