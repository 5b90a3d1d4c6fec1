#pragma once
// Internal to customer_file.cpp: turns one CSV row's cells or one JSON Lines object into a
// CustomerRecord, canonicalising every identity, or into the reason the line is rejected.
#include <string>
#include <string_view>

#include <boost/json/fwd.hpp>

#include "routing/customer_file.hpp"

namespace sb {

class RecordBuilder {
 public:
  explicit RecordBuilder(std::string default_region) : region_(std::move(default_region)) {}

  static std::string lower_trimmed(std::string_view s);

  void start();
  bool ok() const { return error_.empty(); }

  // One CSV cell of `column`; `identity_type` is "" for data columns. Identity and tag cells
  // hold several values separated by ';'.
  void csv_cell(std::string_view column, std::string_view identity_type, std::string_view cell);

  // One JSON Lines object (see customer_file.hpp for its shape).
  void json_object(const boost::json::value& v);

  // Moves the record, or the first error, into `out`.
  void finish(ParsedLine& out);

 private:
  void add_identity(std::string_view column, std::string_view type, std::string_view raw);
  void add_tag(std::string_view raw);
  void json_list(std::string_view field, std::string_view identity_type,
                 const boost::json::value& v);
  bool json_string(std::string_view field, const boost::json::value& v, std::string& out);
  void fail(std::string error);

  std::string region_;
  CustomerRecord rec_;
  std::string error_;
};

}  // namespace sb
