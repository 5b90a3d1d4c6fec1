#include "channels/social/html_text.hpp"

#include "channels/social/common.hpp"
#include "core/html_entities.hpp"

namespace sb::social {

namespace {

// The value of attribute `name` in a start tag's text (`a href="x" class="y"`), decoded.
std::optional<std::string> attribute(std::string_view tag, std::string_view name) {
  std::size_t pos = 0;
  while ((pos = tag.find(name, pos)) != std::string_view::npos) {
    bool starts = pos > 0 && (tag[pos - 1] == ' ' || tag[pos - 1] == '\t' || tag[pos - 1] == '\n');
    std::size_t eq = pos + name.size();
    while (eq < tag.size() && tag[eq] == ' ') {
      ++eq;
    }
    if (starts && eq < tag.size() && tag[eq] == '=') {
      std::size_t v = eq + 1;
      while (v < tag.size() && tag[v] == ' ') {
        ++v;
      }
      if (v < tag.size() && (tag[v] == '"' || tag[v] == '\'')) {
        std::size_t end = tag.find(tag[v], v + 1);
        if (end == std::string_view::npos) {
          return std::nullopt;
        }
        return decode_entities(tag.substr(v + 1, end - v - 1));
      }
      std::size_t end = tag.find_first_of(" \t\n>", v);
      return decode_entities(tag.substr(v, end == std::string_view::npos ? end : end - v));
    }
    pos += name.size();
  }
  return std::nullopt;
}

bool has_class(std::string_view tag, std::string_view cls) {
  std::optional<std::string> classes = attribute(tag, "class");
  if (!classes) {
    return false;
  }
  std::string_view c = *classes;
  std::size_t pos = 0;
  while ((pos = c.find(cls, pos)) != std::string_view::npos) {
    bool left = pos == 0 || c[pos - 1] == ' ';
    bool right = pos + cls.size() == c.size() || c[pos + cls.size()] == ' ';
    if (left && right) {
      return true;
    }
    pos += cls.size();
  }
  return false;
}

void trim_trailing_blanks(std::string& s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n' || s.back() == '\t')) {
    s.pop_back();
  }
}

}  // namespace

std::string decode_entities(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    // &nbsp; as a regular space: Mastodon's text has no runs of blanks to keep.
    if (s[i] != '&') {
      out.push_back(s[i]);
    } else if (std::size_t n = decode_html_entity(s, i, out, ' '); n > 0) {
      i += n - 1;
    } else {
      out.push_back('&');
    }
  }
  return out;
}

std::string html_to_text(std::string_view html, const MentionResolver& resolve_mention) {
  std::string out;
  std::size_t i = 0;
  std::string pending_text;
  auto flush = [&] {
    out += decode_entities(pending_text);
    pending_text.clear();
  };
  while (i < html.size()) {
    if (html[i] != '<') {
      pending_text.push_back(html[i++]);
      continue;
    }
    std::size_t close = html.find('>', i);
    if (close == std::string_view::npos) {
      pending_text.append(html.substr(i));  // a stray '<' in text; keep it
      break;
    }
    flush();
    std::string_view tag = html.substr(i + 1, close - i - 1);
    i = close + 1;
    bool end_tag = !tag.empty() && tag[0] == '/';
    std::string_view body = end_tag ? tag.substr(1) : tag;
    std::size_t name_end = body.find_first_of(" \t\n/");
    std::string name = ascii_lower(body.substr(0, name_end));
    if (name == "br") {
      out.push_back('\n');
    } else if (name == "p" && !end_tag) {
      trim_trailing_blanks(out);
      if (!out.empty()) {
        out += "\n\n";
      }
    } else if (name == "a" && !end_tag && resolve_mention && has_class(tag, "mention") &&
               !has_class(tag, "hashtag")) {
      // <a href="https://host/@user" class="u-url mention">@<span>user</span></a>: the visible
      // text is only the local username; the acct from status.mentions[] is unambiguous.
      std::optional<std::string> href = attribute(tag, "href");
      std::optional<std::string> acct = href ? resolve_mention(*href) : std::nullopt;
      if (acct) {
        out += "@" + *acct;
        std::size_t end = html.find("</a>", i);
        i = end == std::string_view::npos ? html.size() : end + 4;
      }
    }
  }
  flush();
  trim_trailing_blanks(out);
  std::size_t start = out.find_first_not_of(" \n\t");
  return start == std::string::npos ? std::string() : out.substr(start);
}

}  // namespace sb::social
