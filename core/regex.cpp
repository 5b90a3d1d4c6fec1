#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/regex.hpp"

#include <pcre2.h>

#include <cstdint>

namespace sb {

struct Regex::Code {
  pcre2_code* re = nullptr;
  ~Code() { pcre2_code_free(re); }
};

namespace {

constexpr std::uint32_t kMatchLimit = 5'000'000;
// Backtracking frames live on the heap, in the match data, which is kept per thread and keeps
// what it grew to: 16 MiB at most (pcre2_set_heap_limit counts KiB).
constexpr std::uint32_t kHeapLimitKiB = 16 * 1024;

struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);  // one pair: any pattern
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  MatchState() {
    pcre2_set_match_limit(ctx, kMatchLimit);
    pcre2_set_heap_limit(ctx, kHeapLimitKiB);
  }
  ~MatchState() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(ctx);
  }
};

}  // namespace

Regex::Regex(std::string_view pattern) : code_(std::make_unique<Code>()), source_(pattern) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  // ALT_BSUX and ALLOW_EMPTY_CLASS keep what ECMAScript patterns (the std::regex grammar used
  // before) mean: \uhhhh, [] and [^]. MATCH_INVALID_UTF: a text with a broken UTF-8 sequence
  // is still searched, around it.
  code_->re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                            PCRE2_CASELESS | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_ALT_BSUX |
                                PCRE2_ALLOW_EMPTY_CLASS,
                            &err, &offset, nullptr);
  if (!code_->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw std::invalid_argument(std::string(reinterpret_cast<const char*>(msg)) + " at offset " +
                                std::to_string(offset));
  }
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

std::optional<bool> Regex::search(std::string_view subject, std::string* why) const {
  thread_local MatchState m;
  int rc = pcre2_match(code_->re, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0,
                       0, m.data, m.ctx);
  if (rc >= 0) {
    return true;
  }
  if (rc == PCRE2_ERROR_NOMATCH) {
    return false;
  }
  if (why) {  // PCRE2_ERROR_MATCHLIMIT or HEAPLIMIT, in PCRE2's words
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    *why = reinterpret_cast<const char*>(msg);
  }
  return std::nullopt;
}

}  // namespace sb
