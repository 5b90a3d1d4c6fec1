#pragma once
// The routing rules' regular expressions (subject_matches, text_matches): PCRE2, case-insensitive,
// on UTF-8, with ECMAScript's \uhhhh, [] and [^] (the grammar of std::regex, used before). Not
// std::regex: libstdc++'s matcher recurses once per character it matches, so `order.*late` against
// a 30 KB line (a web form's text is one JSON string) overflowed the writer thread's stack and took
// the daemon down. PCRE2 (10.30+) keeps its backtracking on the heap, and a match limit bounds the
// time a pathological pattern such as `(a+)+b` can take.
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sb {

class Regex {
 public:
  // Throws std::invalid_argument naming the problem and its offset in the pattern.
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Whether the pattern matches anywhere in `subject` (invalid UTF-8 in it is skipped over);
  // nullopt when matching gave up: the match limit (about 5 million steps, tens of
  // milliseconds) or the heap limit (16 MiB). `why` then says which.
  std::optional<bool> search(std::string_view subject, std::string* why = nullptr) const;
  const std::string& pattern() const { return source_; }

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  std::string source_;
};

}  // namespace sb
