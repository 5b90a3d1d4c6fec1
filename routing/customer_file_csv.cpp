#include "routing/customer_file_csv.hpp"

#include <cerrno>

namespace sb::csv {

namespace {
constexpr std::size_t kChunk = 1 << 20;
}

ByteSource::ByteSource(std::FILE* file) : file_(file) {}

ByteSource::ByteSource(std::string content) : buf_(std::move(content)) {}

ByteSource::~ByteSource() {
  if (file_ != nullptr) {
    std::fclose(file_);
  }
}

bool ByteSource::refill() {
  if (file_ == nullptr || read_error_) {
    return false;
  }
  base_ += buf_.size();
  buf_.resize(kChunk);
  const std::size_t n = std::fread(buf_.data(), 1, kChunk, file_);
  // errno at once: a short read that failed returns what it had, and the next fread (which
  // returns 0) may leave errno as something else.
  if (n < kChunk && read_errno_ == 0 && std::ferror(file_) != 0) {
    read_errno_ = errno != 0 ? errno : EIO;
  }
  buf_.resize(n);
  pos_ = 0;
  if (n == 0) {
    read_error_ = std::ferror(file_) != 0;
    if (read_error_ && read_errno_ == 0) {
      read_errno_ = EIO;
    }
    return false;
  }
  return true;
}

void ByteSource::skip_bom() {
  // UTF-8 byte-order mark, EF BB BF. The first chunk holds it whenever the input does.
  if (peek() == 0xEF && buf_.compare(pos_, 3, "\xEF\xBB\xBF") == 0) {
    pos_ += 3;
  }
}

// After a CR or LF that ends a line: CRLF counts once.
void CsvReader::end_line(int c) {
  if (c == '\r' && src_.peek() == '\n') {
    src_.get();
  }
  ++line_;
}

bool CsvReader::next(CsvRecord& rec) {
  if (!started_) {
    started_ = true;
    src_.skip_bom();
  }
  if (src_.peek() == ByteSource::eof) {
    return false;
  }
  rec.count = 0;
  rec.start_line = line_;
  rec.error.clear();
  std::size_t bytes = 0;
  auto new_field = [&]() -> std::string& {
    if (rec.count == rec.fields.size()) {
      rec.fields.emplace_back();
    }
    std::string& f = rec.fields[rec.count++];
    f.clear();
    return f;
  };
  auto fail = [&](const char* why) {
    if (rec.error.empty()) {
      rec.error = why;
    }
  };
  std::string* field = &new_field();
  bool quoted = false;       // inside a quoted field
  bool after_quote = false;  // a quoted field just closed
  bool at_field_start = true;
  for (;;) {
    const int c = src_.get();
    if (c == ByteSource::eof) {
      if (quoted) {
        fail("unterminated quoted field");
      }
      return true;
    }
    if (++bytes > max_record_bytes) {
      // Keep consuming to the record's end so the next record starts in sync, but stop storing.
      fail("record longer than 1 MiB (an unclosed quote?)");
      field->clear();
    }
    const char ch = static_cast<char>(c);
    if (quoted) {
      if (ch == '"') {
        if (src_.peek() == '"') {
          src_.get();
          field->push_back('"');
        } else {
          quoted = false;
          after_quote = true;
        }
        continue;
      }
      if (ch == '\n' || (ch == '\r' && src_.peek() != '\n')) {
        ++line_;
      }
      field->push_back(ch);
      continue;
    }
    if (ch == ',') {
      field = &new_field();
      at_field_start = true;
      after_quote = false;
      continue;
    }
    if (ch == '\n' || ch == '\r') {
      end_line(c);
      return true;
    }
    if (at_field_start && ch == '"') {
      quoted = true;
      at_field_start = false;
      continue;
    }
    if (after_quote) {
      // RFC 4180 allows nothing between a closing quote and the separator.
      fail("unexpected character after a closing quote");
    }
    at_field_start = false;
    field->push_back(ch);
  }
}

}  // namespace sb::csv
