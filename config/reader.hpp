#pragma once
// Internal to config/: a checked reader over one TOML table. Include only from config/*.cpp —
// toml++ must not leak into headers the rest of the daemon includes (build time).
//
// Every getter records a Problem instead of throwing, so one pass over the file reports every
// mistake with its line. Each key a getter touches is marked as known; finish() reports the rest
// as unknown keys, named by their full dotted path ("routing.rules.when.colour").
#include <toml++/toml.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace sb::config::detail {

// The problems found so far in one file.
struct Context {
  std::string path;
  std::vector<Problem> problems;
  std::vector<Problem> warnings;  // LoadResult::warnings
  // LoadOptions::require_env_secrets: when false, an unset variable of a `*_env` key is no
  // problem and leaves its secret empty.
  bool require_env_secrets = true;

  void add(int line, std::string message) {
    problems.push_back(Problem{path, line, std::move(message)});
  }
  void warn(int line, std::string message) {
    warnings.push_back(Problem{path, line, std::move(message)});
  }
};

// The whole file at `path`, or the errno of the failure (EFBIG past `max_bytes`).
int read_whole_file(const std::string& path, std::string& out,
                    std::size_t max_bytes = std::string::npos);

// The largest `*_file` secret: a key or a token, never a document.
inline constexpr std::size_t kMaxSecretFile = 64 * 1024;

int line_of(const toml::node& node);
int line_of(const toml::key& key);

class TableReader {
 public:
  // `prefix` is the dotted path of this table ("channels.imap"); empty for the root.
  TableReader(Context& ctx, const toml::table& table, std::string prefix);

  Context& ctx() { return ctx_; }
  int line() const { return line_of(table_); }
  std::string dotted(std::string_view key) const;
  // Line of `key`'s value, or of this table when the key is absent.
  int line_of_key(std::string_view key) const;
  bool has(std::string_view key) const { return table_.contains(key); }

  // Each returns true when the key was present and valid (and `out` was set). A missing key
  // leaves `out` at its default and is a problem only when `required`.
  bool str(std::string_view key, std::string& out, bool required = false);
  bool str(std::string_view key, std::optional<std::string>& out);
  bool integer(std::string_view key, std::int64_t& out, std::int64_t min, std::int64_t max,
               bool required = false);
  bool port(std::string_view key, std::uint16_t& out);
  bool boolean(std::string_view key, bool& out);
  bool boolean(std::string_view key, std::optional<bool>& out);
  bool strings(std::string_view key, std::vector<std::string>& out, bool required = false,
               bool non_empty = false);
  bool duration(std::string_view key, std::chrono::milliseconds& out);
  // One of `allowed` ("urgent", "high", ...).
  bool one_of(std::string_view key, std::string& out,
              std::initializer_list<std::string_view> allowed);
  // A secret: `key = "..."` inline, `key_env = "VAR"` from the environment or (`file_form`)
  // `key_file = "PATH"` from a file. Never echoes the value in a message.
  bool secret(std::string_view key, std::string& out, bool required = true, bool file_form = true);
  // Secrets from a list of environment variables, `key = ["VAR1", "VAR2"]`, one secret each,
  // appended to `out`. Each unset variable is a problem at its own line.
  bool env_secrets(std::string_view key, std::vector<std::string>& out);

  // A sub-table ([server]); nullptr when absent or of the wrong type (reported).
  const toml::table* table(std::string_view key);
  // An array of tables ([[agents]]); empty when absent or of the wrong type (reported).
  std::vector<const toml::table*> tables(std::string_view key);

  // Reports every key no getter asked for.
  void finish();

 private:
  const toml::node* get(std::string_view key);  // marks the key as known
  void wrong_type(const toml::node& node, std::string_view key, std::string_view what);
  void missing(std::string_view key, std::string_view alternative = {});
  // The value of the environment variable `var_node` names, for the key `env_key`.
  bool from_env(const toml::node& var_node, std::string_view env_key, std::string& out);
  // The content of the file `path_node` names, for the key `file_key`.
  bool from_file(const toml::node& path_node, std::string_view file_key, std::string& out);

  Context& ctx_;
  const toml::table& table_;
  std::string prefix_;
  std::set<std::string, std::less<>> known_;
};

}  // namespace sb::config::detail
