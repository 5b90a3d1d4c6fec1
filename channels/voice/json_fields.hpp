#pragma once
// Small typed accessors over boost::json objects for the webhook parsers: each reports
// "absent" and "present but of the wrong type" apart, so a 400 can name the field.
#include <cstdint>
#include <optional>
#include <string_view>

#include <boost/json.hpp>

namespace sb::voice::json {

enum class Field { absent, ok, wrong_type };

// Strings: absent also when the value is null (providers send "client_state": null).
inline Field get_string(const boost::json::object& o, std::string_view key, std::string_view& out) {
  const boost::json::value* v = o.if_contains(key);
  if (!v || v->is_null()) {
    return Field::absent;
  }
  if (!v->is_string()) {
    return Field::wrong_type;
  }
  out = v->get_string();
  return Field::ok;
}

inline std::string_view string_or_empty(const boost::json::object& o, std::string_view key) {
  std::string_view out;
  return get_string(o, key, out) == Field::ok ? out : std::string_view{};
}

inline const boost::json::object* get_object(const boost::json::object& o, std::string_view key) {
  const boost::json::value* v = o.if_contains(key);
  return v ? v->if_object() : nullptr;
}

// Whole numbers: JSON integers, or doubles with no fractional part (some encoders emit 42.0).
inline Field get_int(const boost::json::object& o, std::string_view key, std::int64_t& out) {
  const boost::json::value* v = o.if_contains(key);
  if (!v || v->is_null()) {
    return Field::absent;
  }
  if (v->is_int64()) {
    out = v->get_int64();
    return Field::ok;
  }
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX)) {
    out = static_cast<std::int64_t>(v->get_uint64());
    return Field::ok;
  }
  if (v->is_double()) {
    double d = v->get_double();
    if (d >= -9e15 && d <= 9e15 && d == static_cast<double>(static_cast<std::int64_t>(d))) {
      out = static_cast<std::int64_t>(d);
      return Field::ok;
    }
  }
  return Field::wrong_type;
}

}  // namespace sb::voice::json
