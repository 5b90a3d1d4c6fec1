#include "channels/email/html_text.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <utility>

#include "core/html_entities.hpp"

namespace sb::email {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool is_block(const std::string& t) {
  static constexpr std::array<std::string_view, 28> blocks{
      "p",   "div", "br",      "tr",      "table",  "ul",     "ol",
      "h1",  "h2",  "h3",      "h4",      "h5",     "h6",     "blockquote",
      "pre", "hr",  "section", "article", "header", "footer", "address",
      "dd",  "dt",  "dl",      "form",    "center", "tbody",  "body"};
  return std::find(blocks.begin(), blocks.end(), t) != blocks.end();
}

class renderer {
 public:
  void text(std::string_view s) {
    for (char c : s) {
      if (pre_depth_ == 0 && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f')) {
        pending_space_ = true;
        continue;
      }
      if (pre_depth_ > 0 && c == '\n') {
        newline();
        continue;
      }
      if (at_line_start()) {
        quote_marks(true);
      }
      if (pending_space_ && !out_.empty() && out_.back() != '\n' && out_.back() != ' ') {
        out_ += ' ';
      }
      pending_space_ = false;
      trailing_blank_lines_ = 0;
      out_ += c;
    }
  }
  // <br>: always a new line.
  void newline() {
    pending_space_ = false;
    while (!out_.empty() && out_.back() == ' ') {
      out_.pop_back();
    }
    if (at_line_start()) {
      quote_marks(false);  // a blank line inside a quote is still part of it: ">"
      ++trailing_blank_lines_;
    }
    out_ += '\n';
  }
  // Block boundary: start a new line unless already at the start of one.
  void block() {
    if (!out_.empty() && out_.back() != '\n') {
      newline();
    }
    pending_space_ = false;
  }
  // Paragraph boundary: one blank line.
  void paragraph() {
    block();
    if (!out_.empty() && trailing_blank_lines_ == 0) {
      newline();
    }
  }
  // <blockquote>: its lines are quoted, "> " per level, as mail clients quote the message
  // answered in plain text. At its end the depth drops first, so the blank line after it is
  // outside it.
  void quote(bool open) {
    if (open) {
      paragraph();
      ++quote_depth_;
    } else {
      quote_depth_ = std::max(0, quote_depth_ - 1);
      paragraph();
    }
  }
  void space() { pending_space_ = true; }
  void pre(bool open) { pre_depth_ = open ? pre_depth_ + 1 : std::max(0, pre_depth_ - 1); }

  bool at_line_start() const { return out_.empty() || out_.back() == '\n'; }
  // "> " per quote level at the start of a line ("> > " two deep), without the last blank on
  // a blank line. At most kMaxQuoteMarks levels: a million unclosed <blockquote>s must not put
  // megabytes in front of every line.
  void quote_marks(bool text_follows) {
    static constexpr int kMaxQuoteMarks = 8;
    int depth = std::min(quote_depth_, kMaxQuoteMarks);
    for (int i = 0; i < depth; ++i) {
      out_ += (i + 1 < depth || text_follows) ? "> " : ">";
    }
  }

  std::string finish() {
    std::string result;
    int newlines = 0;
    for (char c : out_) {
      if (c == '\n') {
        if (++newlines <= 2) {
          result += c;
        }
      } else {
        newlines = 0;
        result += c;
      }
    }
    std::size_t b = result.find_first_not_of(" \n");
    std::size_t e = result.find_last_not_of(" \n");
    return b == std::string::npos ? std::string() : result.substr(b, e - b + 1);
  }

 private:
  std::string out_;
  bool pending_space_ = false;
  int pre_depth_ = 0;
  int quote_depth_ = 0;
  int trailing_blank_lines_ = 0;  // blank lines (quote marks only) at the end of out_
};

}  // namespace

std::string html_to_text(std::string_view html) {
  renderer r;
  std::size_t i = 0;
  std::string decoded;
  // Every search below remembers where it ended, so the whole pass stays linear: 4 MiB of '<'
  // before one '>' looked for that '>' from each '<', and each of a million <script> tags
  // without an end tag looked for one to the end of the part, each a quadratic stall.
  std::size_t next_gt = html.find('>');  // the first '>' at or after i once renewed; npos: none
  std::array<bool, 3> no_end_tag{};      // script, style, title: none after the current position
  while (i < html.size()) {
    char c = html[i];
    if (c == '&') {
      decoded.clear();
      if (std::size_t n = decode_html_entity(html, i, decoded); n > 0) {
        // A decoded &nbsp; is kept as U+00A0 so it does not collapse, like a browser shows it.
        r.text(decoded);
        i += n;
        continue;
      }
      r.text("&");
      ++i;
      continue;
    }
    if (c != '<') {
      std::size_t next = html.find_first_of("<&", i);
      if (next == std::string_view::npos) {
        next = html.size();
      }
      r.text(html.substr(i, next - i));
      i = next;
      continue;
    }
    if (html.substr(i, 4) == "<!--") {
      std::size_t end = html.find("-->", i + 4);
      i = end == std::string_view::npos ? html.size() : end + 3;
      continue;
    }
    if (next_gt != std::string_view::npos && next_gt < i) {
      next_gt = html.find('>', i);
    }
    std::size_t close = next_gt;
    if (close == std::string_view::npos) {
      r.text(html.substr(i));  // a lone '<' in text
      break;
    }
    std::string_view tag = html.substr(i + 1, close - i - 1);
    bool end_tag = !tag.empty() && tag[0] == '/';
    if (end_tag) {
      tag.remove_prefix(1);
    }
    std::size_t name_end = 0;
    while (name_end < tag.size() &&
           (std::isalnum(static_cast<unsigned char>(tag[name_end])) != 0)) {
      ++name_end;
    }
    if (name_end == 0) {
      // "<!DOCTYPE", "<?xml", "< 3" ... : a declaration is dropped, text is kept.
      if (!tag.empty() && (tag[0] == '!' || tag[0] == '?')) {
        i = close + 1;
      } else {
        r.text("<");
        ++i;
      }
      continue;
    }
    std::string name = lower(tag.substr(0, name_end));
    i = close + 1;
    static constexpr std::array<std::string_view, 3> skipped{"script", "style", "title"};
    auto kind = std::find(skipped.begin(), skipped.end(), name);
    if (!end_tag && kind != skipped.end()) {
      // Skip to the matching end tag; when there is none, only the tag itself is dropped, so
      // that a broken message loses markup, not the customer's words. None now means none for
      // every later tag of that name either: the search is not repeated.
      bool& none = no_end_tag[static_cast<std::size_t>(kind - skipped.begin())];
      std::string lowered_end = "</" + name;
      std::size_t pos = none ? html.size() : i;
      while (pos < html.size()) {
        std::size_t lt = html.find("</", pos);
        if (lt == std::string_view::npos) {
          pos = html.size();
          break;
        }
        if (lower(html.substr(lt, lowered_end.size())) == lowered_end) {
          pos = lt;  // its '>' is the first after it, not a '>' inside the script
          break;
        }
        pos = lt + 2;
      }
      if (pos < html.size()) {
        std::size_t gt = html.find('>', pos);
        i = gt == std::string_view::npos ? html.size() : gt + 1;
      } else {
        none = true;
      }
      continue;
    }
    if (name == "pre") {
      r.block();
      r.pre(!end_tag);
      continue;
    }
    if (name == "li") {
      r.block();
      if (!end_tag) {
        r.text("- ");
      }
      continue;
    }
    if (name == "td" || name == "th") {
      r.space();
      continue;
    }
    if (name == "blockquote") {
      r.quote(!end_tag);
      continue;
    }
    if (name == "p" || (name.size() == 2 && name[0] == 'h' && name[1] >= '1' && name[1] <= '6')) {
      r.paragraph();
      continue;
    }
    if (name == "br") {
      r.newline();
    } else if (is_block(name)) {
      r.block();
    }
  }
  return r.finish();
}

}  // namespace sb::email
