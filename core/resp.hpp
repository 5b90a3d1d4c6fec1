#pragma once
// Redis commands in the wire format (RESP2: an array of bulk strings), for
// redisAppendFormattedCommand. hiredis's own argv formatter (sdscatfmt per argument) cost
// ~8k instructions a command on the relay and agent paths; this is a few appends.
#include <string>
#include <string_view>

namespace sb::resp {

inline void array(std::string& out, std::size_t n) {
  out += '*';
  out += std::to_string(n);
  out += "\r\n";
}

inline void bulk(std::string& out, std::string_view v) {
  out += '$';
  out += std::to_string(v.size());
  out += "\r\n";
  out += v;
  out += "\r\n";
}

}  // namespace sb::resp
