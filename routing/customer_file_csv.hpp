#pragma once
// Internal to customer_file.cpp: a buffered byte source and a small RFC 4180 CSV record
// reader. Debian 12 packages no C++ CSV library that streams, reports record start lines and
// takes quoted newlines (libcsv-dev is C with callbacks and no line tracking), and RFC 4180 is
// a page long, so it is written here.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace sb::csv {

// Bytes from a FILE* in large chunks, or from a string in memory.
class ByteSource {
 public:
  static constexpr int eof = -1;

  explicit ByteSource(std::FILE* file);  // takes ownership
  explicit ByteSource(std::string content);
  ~ByteSource();
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;

  int get() {
    if (pos_ == buf_.size() && !refill()) {
      return eof;
    }
    return static_cast<unsigned char>(buf_[pos_++]);
  }
  int peek() {
    if (pos_ == buf_.size() && !refill()) {
      return eof;
    }
    return static_cast<unsigned char>(buf_[pos_]);
  }
  // Skips a UTF-8 byte-order mark at the current position (Excel starts CSV files with one).
  void skip_bom();
  std::uint64_t consumed() const { return base_ + pos_; }
  bool read_error() const { return read_error_; }
  int read_errno() const { return read_errno_; }  // the failed read's errno (EIO when unknown)

 private:
  bool refill();

  std::FILE* file_ = nullptr;
  std::string buf_;
  std::size_t pos_ = 0;
  std::uint64_t base_ = 0;  // bytes consumed before buf_
  bool read_error_ = false;
  int read_errno_ = 0;
};

// One CSV record: its fields, the line it starts on, and a parse error if it is malformed.
struct CsvRecord {
  std::vector<std::string> fields;  // only the first `count` are this record's
  std::size_t count = 0;
  std::size_t start_line = 0;
  std::string error;
};

// RFC 4180: fields separated by ',', records by CRLF (LF and a lone CR accepted too); a field
// in double quotes may hold ',', line breaks and '""' for a quote. A UTF-8 byte-order mark at
// the start (Excel writes one) is skipped. Lines are counted through quoted line breaks, so
// start_line is the physical line a record starts on.
class CsvReader {
 public:
  static constexpr std::size_t max_record_bytes = 1 << 20;

  explicit CsvReader(ByteSource& src) : src_(src) {}

  // Reads the next record into `rec`; false at end of input.
  bool next(CsvRecord& rec);

 private:
  void end_line(int c);

  ByteSource& src_;
  std::size_t line_ = 1;
  bool started_ = false;
};

}  // namespace sb::csv
