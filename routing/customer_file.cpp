#include "routing/customer_file.hpp"

#include <array>
#include <cerrno>
#include <cstring>

#include <sys/stat.h>

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/value.hpp>

#include "routing/customer_file_csv.hpp"
#include "routing/customer_file_record.hpp"

namespace sb {
namespace {

// CSV columns of SPEC section 1, and the identity type each holds ("" for data columns).
struct ColumnDef {
  std::string_view name;
  std::string_view identity_type;
};
constexpr std::array<ColumnDef, 9> kColumns = {{{"external_id", ""},
                                                {"name", ""},
                                                {"email", "email"},
                                                {"phone", "phone"},
                                                {"tier", ""},
                                                {"tags", ""},
                                                {"mastodon", "mastodon"},
                                                {"x", "x"},
                                                {"telegram", "telegram"}}};

std::string expected_columns() {
  std::string out;
  for (const auto& c : kColumns) {
    out += out.empty() ? "" : ",";
    out += c.name;
  }
  return out;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool blank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      return false;
    }
  }
  return true;
}

}  // namespace

struct CustomerFileReader::Impl {
  Impl(std::unique_ptr<csv::ByteSource> s, Format f, std::string region)
      : src(std::move(s)), format(f), builder(std::move(region)), csv_reader(*src) {}

  std::unique_ptr<csv::ByteSource> src;
  Format format;
  std::uint64_t total = 0;
  RecordBuilder builder;
  bool done = false;

  // CSV: the column index -> kColumns index mapping from the header.
  csv::CsvReader csv_reader;
  csv::CsvRecord csv_rec;
  std::vector<std::size_t> columns;

  // JSONL: the current line, and a parser whose memory is reused from line to line: each
  // line's value lives in `json_buffer` (a fresh monotonic_resource per line; reusing one
  // across release() calls would double its next block size every line).
  std::size_t line_no = 0;
  std::string line;
  bool line_too_long = false;
  std::array<unsigned char, 16 * 1024> json_buffer;
  boost::json::parser json_parser;

  std::string read_error;  // set when a read failed: next() then ends the input

  // "read error after 1048576 bytes: Input/output error"
  std::string read_failure() const {
    return "read error after " + std::to_string(src->consumed()) +
           " bytes: " + std::strerror(src->read_errno());
  }
  bool read_header(std::string& error);
  std::optional<ParsedLine> next_csv();
  std::optional<ParsedLine> next_jsonl();
  bool read_line();
};

bool CustomerFileReader::Impl::read_header(std::string& error) {
  if (!csv_reader.next(csv_rec)) {
    error = "1: empty file, expected a header row: " + expected_columns();
    return false;
  }
  std::vector<std::string> unknown;
  std::vector<bool> seen(kColumns.size(), false);
  for (std::size_t i = 0; i < csv_rec.count; ++i) {
    const std::string name = RecordBuilder::lower_trimmed(csv_rec.fields[i]);
    std::size_t k = 0;
    while (k < kColumns.size() && kColumns[k].name != name) {
      ++k;
    }
    if (k == kColumns.size()) {
      unknown.push_back("\"" + name + "\"");
      continue;
    }
    if (seen[k]) {
      error = "1: column \"" + name + "\" appears twice";
      return false;
    }
    seen[k] = true;
    columns.push_back(k);
  }
  if (!unknown.empty()) {
    error = std::string("1: unknown column") + (unknown.size() > 1 ? "s " : " ");
    for (std::size_t i = 0; i < unknown.size(); ++i) {
      error += (i ? ", " : "") + unknown[i];
    }
    error += "; expected some of: " + expected_columns();
    return false;
  }
  if (!seen[0]) {
    error = "1: the header has no external_id column";
    return false;
  }
  return true;
}

std::optional<ParsedLine> CustomerFileReader::Impl::next_csv() {
  while (csv_reader.next(csv_rec)) {
    ParsedLine out;
    out.line_no = csv_rec.start_line;
    bool all_blank = true;
    for (std::size_t i = 0; i < csv_rec.count && all_blank; ++i) {
      all_blank = blank(csv_rec.fields[i]);
    }
    if (all_blank && csv_rec.error.empty()) {
      continue;
    }
    if (!csv_rec.error.empty()) {
      out.error = csv_rec.error;
      return out;
    }
    if (csv_rec.count != columns.size()) {
      out.error = std::to_string(csv_rec.count) + " fields, but the header has " +
                  std::to_string(columns.size());
      return out;
    }
    builder.start();
    for (std::size_t i = 0; i < csv_rec.count && builder.ok(); ++i) {
      const ColumnDef& col = kColumns[columns[i]];
      builder.csv_cell(col.name, col.identity_type, csv_rec.fields[i]);
    }
    builder.finish(out);
    return out;
  }
  return std::nullopt;
}

// One physical line into `line` (without CR LF); false at end of input.
bool CustomerFileReader::Impl::read_line() {
  if (src->peek() == csv::ByteSource::eof) {
    return false;
  }
  line.clear();
  ++line_no;
  line_too_long = false;
  for (int c = src->get(); c != csv::ByteSource::eof && c != '\n'; c = src->get()) {
    if (line.size() < csv::CsvReader::max_record_bytes) {
      line.push_back(static_cast<char>(c));
    } else {
      line_too_long = true;
    }
  }
  if (!line.empty() && line.back() == '\r') {
    line.pop_back();
  }
  return true;
}

std::optional<ParsedLine> CustomerFileReader::Impl::next_jsonl() {
  if (line_no == 0) {
    src->skip_bom();
  }
  while (read_line()) {
    if (blank(line)) {
      continue;
    }
    ParsedLine out;
    out.line_no = line_no;
    if (line_too_long) {
      out.error = "line longer than 1 MiB";
      return out;
    }
    boost::json::monotonic_resource memory(json_buffer.data(), json_buffer.size());
    json_parser.reset(&memory);
    boost::system::error_code ec;
    json_parser.write(line.data(), line.size(), ec);
    if (ec) {
      // boost::json rejects invalid UTF-8 by default, so this also covers encoding errors.
      out.error = "invalid JSON: " + ec.message();
      json_parser.reset();
      return out;
    }
    {
      const boost::json::value v = json_parser.release();
      builder.start();
      builder.json_object(v);
    }
    json_parser.reset();  // drop every reference to `memory` before it goes
    builder.finish(out);
    return out;
  }
  return std::nullopt;
}

CustomerFileReader::CustomerFileReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CustomerFileReader::~CustomerFileReader() = default;

std::unique_ptr<CustomerFileReader> CustomerFileReader::open(const std::string& path,
                                                             std::string default_region,
                                                             std::string& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    error = path + ": " + std::strerror(errno);
    return nullptr;
  }
  // fopen opens a directory, whose first read then fails (EISDIR): the CSV header check said
  // "empty file" and a .jsonl import counted the failure as a rejected line. A pipe reads
  // (`import /dev/stdin`, `import <(zcat customers.csv.gz)`), and so does a terminal; a
  // directory, a block device or a socket is refused before anything is read.
  struct stat st {};
  std::string refused;
  if (::fstat(::fileno(f), &st) != 0) {
    refused = std::strerror(errno);
  } else if (S_ISDIR(st.st_mode)) {
    refused = std::strerror(EISDIR);
  } else if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
    refused = "not a regular file or a pipe";
  }
  if (!refused.empty()) {
    std::fclose(f);
    error = path + ": " + refused;
    return nullptr;
  }
  std::uint64_t size = 0;
  if (std::fseek(f, 0, SEEK_END) == 0) {
    const long end = std::ftell(f);
    size = end > 0 ? static_cast<std::uint64_t>(end) : 0;
    std::rewind(f);
  }
  const Format format = ends_with(path, ".jsonl") ? Format::jsonl : Format::csv;
  auto impl = std::make_unique<Impl>(std::make_unique<csv::ByteSource>(f), format,
                                     std::move(default_region));
  impl->total = size;
  if (format == Format::csv && !impl->read_header(error)) {
    error = impl->src->read_error() ? path + ": " + impl->read_failure() : path + ":" + error;
    return nullptr;
  }
  return std::unique_ptr<CustomerFileReader>(new CustomerFileReader(std::move(impl)));
}

std::unique_ptr<CustomerFileReader> CustomerFileReader::from_string(std::string content,
                                                                    Format format,
                                                                    std::string default_region,
                                                                    std::string& error) {
  const std::uint64_t size = content.size();
  auto impl = std::make_unique<Impl>(std::make_unique<csv::ByteSource>(std::move(content)), format,
                                     std::move(default_region));
  impl->total = size;
  if (format == Format::csv && !impl->read_header(error)) {
    error = "line " + error;
    return nullptr;
  }
  return std::unique_ptr<CustomerFileReader>(new CustomerFileReader(std::move(impl)));
}

std::optional<ParsedLine> CustomerFileReader::next() {
  Impl& d = *impl_;
  if (d.done) {
    return std::nullopt;
  }
  auto out = d.format == Format::csv ? d.next_csv() : d.next_jsonl();
  if (!out) {
    d.done = true;
    if (d.src->read_error()) {
      d.read_error = d.read_failure();
    }
  }
  return out;
}

const std::string& CustomerFileReader::read_error() const {
  return impl_->read_error;
}

std::uint64_t CustomerFileReader::bytes_consumed() const {
  return impl_->src->consumed();
}
std::uint64_t CustomerFileReader::total_bytes() const {
  return impl_->total;
}

}  // namespace sb
