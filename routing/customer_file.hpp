#pragma once
// Streaming parser for `switchboard customers import FILE` (SPEC section 1): CSV with a header
// row, or JSON Lines when the path ends in ".jsonl". Yields one ParsedLine per record, in file
// order, so a million-line file never sits in memory; storage upserts by external_id.
//
//   CSV header (any order, any subset that includes external_id):
//     external_id,name,email,phone,tier,tags,mastodon,x,telegram
//   several values in one cell separated by ';'.
//   JSONL: {"external_id":"c-1","name":"Ann Lee","emails":[..],"phones":[..],
//           "handles":{"mastodon":[..],"x":[..],"telegram":[..]},"tier":"vip","tags":[..]}
//
// Every identity goes through sb::canonicalize; one invalid identity rejects its whole line
// (a partial customer would be matched wrongly later). Blank lines are skipped.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/interaction.hpp"

namespace sb {

struct CustomerRecord {
  std::string external_id;
  // nullopt when the file does not give the field (a CSV without the column, a JSON Lines
  // object without the key): a re-import of some columns must leave the others alone. An
  // empty cell, "" or null is given, and clears the field.
  std::optional<std::string> name;
  std::optional<std::string> tier;
  std::optional<std::vector<std::string>> tags;  // trimmed, duplicates removed, file order
  std::vector<Identity> identities;              // canonical, duplicates removed
  // Beside each identity: what its canonical form left out of the file's value, for the
  // messages that name it ("+1 415 555 0100 ext. 12": "extension 12 dropped"), else "".
  std::vector<std::string> notes;
};

struct ParsedLine {
  std::size_t line_no = 0;  // 1-based line where the record starts
  std::optional<CustomerRecord> record;
  // Set when the line is rejected; without the line number, which the caller prints:
  //   line 17: phone "12ab": not a valid phone number (not a number)
  std::string error;
};

class CustomerFileReader {
 public:
  enum class Format { csv, jsonl };

  // Opens `path` (JSON Lines if it ends in ".jsonl", else CSV) and, for CSV, reads and checks
  // the header. nullptr with `error` set when the file cannot be read, is a directory
  // ("customers: Is a directory"), or the header is bad
  // ("customers.csv:1: unknown column "fax"; expected ..."). `default_region` is the config's
  // matching.default_region for phone numbers written without a country code.
  static std::unique_ptr<CustomerFileReader> open(const std::string& path,
                                                  std::string default_region, std::string& error);

  // The same over bytes in memory (tests, and input that is not a file).
  static std::unique_ptr<CustomerFileReader> from_string(std::string content, Format format,
                                                         std::string default_region,
                                                         std::string& error);

  ~CustomerFileReader();
  CustomerFileReader(const CustomerFileReader&) = delete;
  CustomerFileReader& operator=(const CustomerFileReader&) = delete;

  // The next record or rejected line; nullopt at end of input. A read error ends the input
  // too: read_error() then says so.
  std::optional<ParsedLine> next();
  // After next() returned nullopt: "" at the end of the input, or why reading stopped early
  // ("read error after 1048576 bytes: Input/output error"). Not a rejected line: the lines
  // after it were never read.
  const std::string& read_error() const;

  // For progress on stderr: bytes consumed so far, and the file size (0 when unknown).
  std::uint64_t bytes_consumed() const;
  std::uint64_t total_bytes() const;

  struct Impl;

 private:
  explicit CustomerFileReader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sb
