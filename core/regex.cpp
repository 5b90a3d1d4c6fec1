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

struct MatchState {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);  // one pair: any pattern
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  MatchState() { pcre2_set_match_limit(ctx, kMatchLimit); }
  ~MatchState() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(ctx);
  }
};

}  // namespace

Regex::Regex(std::string_view pattern) : code_(std::make_unique<Code>()), source_(pattern) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  code_->re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                            PCRE2_CASELESS | PCRE2_UTF, &err, &offset, nullptr);
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

std::optional<bool> Regex::search(std::string_view subject) const {
  thread_local MatchState m;
  int rc = pcre2_match(code_->re, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0,
                       0, m.data, m.ctx);
  if (rc >= 0) {
    return true;
  }
  if (rc == PCRE2_ERROR_NOMATCH) {
    return false;
  }
  return std::nullopt;  // PCRE2_ERROR_MATCHLIMIT, HEAPLIMIT, or a UTF-8 error in the subject
}

}  // namespace sb
