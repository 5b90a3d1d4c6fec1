#include "config/reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "core/time.hpp"

namespace sb::config::detail {

int line_of(const toml::node& node) {
  return static_cast<int>(node.source().begin.line);
}

int line_of(const toml::key& key) {
  return static_cast<int>(key.source().begin.line);
}

TableReader::TableReader(Context& ctx, const toml::table& table, std::string prefix)
    : ctx_(ctx), table_(table), prefix_(std::move(prefix)) {}

std::string TableReader::dotted(std::string_view key) const {
  if (prefix_.empty()) {
    return std::string(key);
  }
  return prefix_ + "." + std::string(key);
}

int TableReader::line_of_key(std::string_view key) const {
  if (const toml::node* node = table_.get(key)) {
    return line_of(*node);
  }
  return line();
}

// The whole file, or the errno of the failure. Plain POSIX calls rather than an ifstream: a
// stream opens a directory and then reads nothing without saying why, and `--config /etc/sb`
// would pass check-config and run on the built-in defaults. (load_file refuses a FIFO, such as
// `--config <(...)`, before it gets here: one with no writer would block the open.)
int read_whole_file(const std::string& path, std::string& out, std::size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return errno;
  }
  struct stat st {};
  int err = ::fstat(fd, &st) != 0 ? errno : 0;
  if (err == 0 && S_ISDIR(st.st_mode)) {
    err = EISDIR;
  }
  char buf[64 * 1024];
  while (err == 0) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      if (out.size() > max_bytes) {
        err = EFBIG;
      }
    } else if (n == 0) {
      break;
    } else if (errno != EINTR) {
      err = errno;
    }
  }
  ::close(fd);
  return err;
}

const toml::node* TableReader::get(std::string_view key) {
  known_.emplace(key);
  return table_.get(key);
}

void TableReader::wrong_type(const toml::node& node, std::string_view key, std::string_view what) {
  ctx_.add(line_of(node), dotted(key) + " must be " + std::string(what));
}

void TableReader::missing(std::string_view key, std::string_view alternative) {
  std::string message = "missing required key \"" + dotted(key) + "\"";
  if (!alternative.empty()) {
    message += " (or " + std::string(alternative) + ")";
  }
  ctx_.add(line(), std::move(message));
}

bool TableReader::str(std::string_view key, std::string& out, bool required) {
  const toml::node* node = get(key);
  if (node == nullptr) {
    if (required) {
      missing(key);
    }
    return false;
  }
  if (!node->is_string()) {
    wrong_type(*node, key, "a string");
    return false;
  }
  out = node->as_string()->get();
  if (required && out.empty()) {
    ctx_.add(line_of(*node), dotted(key) + " must not be empty");
    return false;
  }
  return true;
}

bool TableReader::str(std::string_view key, std::optional<std::string>& out) {
  std::string value;
  if (!str(key, value)) {
    return false;
  }
  out = std::move(value);
  return true;
}

bool TableReader::integer(std::string_view key, std::int64_t& out, std::int64_t min,
                          std::int64_t max, bool required) {
  const toml::node* node = get(key);
  if (node == nullptr) {
    if (required) {
      missing(key);
    }
    return false;
  }
  if (!node->is_integer()) {
    wrong_type(*node, key, "an integer");
    return false;
  }
  const std::int64_t value = node->as_integer()->get();
  if (value < min || value > max) {
    ctx_.add(line_of(*node), dotted(key) + " must be between " + std::to_string(min) + " and " +
                                 std::to_string(max) + " (got " + std::to_string(value) + ")");
    return false;
  }
  out = value;
  return true;
}

bool TableReader::port(std::string_view key, std::uint16_t& out) {
  std::int64_t value = 0;
  if (!integer(key, value, 1, 65535)) {
    return false;
  }
  out = static_cast<std::uint16_t>(value);
  return true;
}

bool TableReader::boolean(std::string_view key, bool& out) {
  const toml::node* node = get(key);
  if (node == nullptr) {
    return false;
  }
  if (!node->is_boolean()) {
    wrong_type(*node, key, "a boolean (true or false)");
    return false;
  }
  out = node->as_boolean()->get();
  return true;
}

bool TableReader::boolean(std::string_view key, std::optional<bool>& out) {
  bool value = false;
  if (!boolean(key, value)) {
    return false;
  }
  out = value;
  return true;
}

bool TableReader::strings(std::string_view key, std::vector<std::string>& out, bool required,
                          bool non_empty) {
  const toml::node* node = get(key);
  if (node == nullptr) {
    if (required) {
      missing(key);
    }
    return false;
  }
  const toml::array* array = node->as_array();
  // toml++ calls an empty array non-homogeneous; it is a valid (empty) list of strings.
  if (array == nullptr || (!array->empty() && !array->is_homogeneous(toml::node_type::string))) {
    wrong_type(*node, key, "a list of strings");
    return false;
  }
  if (non_empty && array->empty()) {
    ctx_.add(line_of(*node), dotted(key) + " must not be empty");
    return false;
  }
  std::vector<std::string> values;
  for (const toml::node& item : *array) {
    values.push_back(item.as_string()->get());
  }
  out = std::move(values);
  return true;
}

bool TableReader::duration(std::string_view key, std::chrono::milliseconds& out) {
  const toml::node* node = get(key);
  if (node == nullptr) {
    return false;
  }
  if (!node->is_string()) {
    wrong_type(*node, key, "a duration string such as \"500ms\", \"30s\", \"5m\" or \"1h\"");
    return false;
  }
  const std::string& text = node->as_string()->get();
  const auto parsed = sb::parse_duration(text);
  if (!parsed) {
    ctx_.add(line_of(*node), dotted(key) + ": invalid duration \"" + text +
                                 "\" (use a number and ms, s, m or h, e.g. \"30s\")");
    return false;
  }
  if (parsed->count() <= 0) {
    ctx_.add(line_of(*node), dotted(key) + " must be greater than zero");
    return false;
  }
  out = *parsed;
  return true;
}

bool TableReader::one_of(std::string_view key, std::string& out,
                         std::initializer_list<std::string_view> allowed) {
  std::string value;
  if (!str(key, value)) {
    return false;
  }
  std::string list;
  for (std::string_view a : allowed) {
    if (a == value) {
      out = std::move(value);
      return true;
    }
    list += list.empty() ? "" : ", ";
    list += a;
  }
  ctx_.add(line_of_key(key), dotted(key) + " must be one of " + list + " (got \"" + value + "\")");
  return false;
}

bool TableReader::secret(std::string_view key, std::string& out, bool required, bool file_form) {
  const std::string env_key = std::string(key) + "_env";
  const std::string file_key = std::string(key) + "_file";
  const toml::node* inline_node = get(key);
  const toml::node* env_node = get(env_key);
  const toml::node* file_node = file_form ? get(file_key) : nullptr;
  if ((inline_node != nullptr) + (env_node != nullptr) + (file_node != nullptr) > 1) {
    const toml::node* second = file_node != nullptr ? file_node : env_node;
    ctx_.add(line_of(*second), "give only one of " + dotted(key) + ", " + dotted(env_key) +
                                   (file_form ? " and " + dotted(file_key) : ""));
    return false;
  }
  if (inline_node != nullptr) {
    if (!inline_node->is_string()) {
      wrong_type(*inline_node, key, "a string");
      return false;
    }
    const std::string& value = inline_node->as_string()->get();
    if (value.empty()) {
      ctx_.add(line_of(*inline_node), dotted(key) + " must not be empty");
      return false;
    }
    out = value;
    return true;
  }
  if (env_node != nullptr) {
    return from_env(*env_node, env_key, out);
  }
  if (file_node != nullptr) {
    return from_file(*file_node, file_key, out);
  }
  if (required) {
    missing(key, file_form ? env_key + " or " + file_key : env_key);
  }
  return false;
}

// `key_file = "/run/secrets/x"`: the file's content, as systemd's LoadCredential, Docker and
// Kubernetes secrets provide it. Read at each load, so a SIGHUP after the file changed rotates
// the secrets a reload applies. One trailing line break is dropped (`echo secret > file`).
bool TableReader::from_file(const toml::node& path_node, std::string_view file_key,
                            std::string& out) {
  if (!path_node.is_string() || path_node.as_string()->get().empty()) {
    wrong_type(path_node, file_key, "the path of a file");
    return false;
  }
  const std::string& path = path_node.as_string()->get();
  // Name the file, never its content: these lines are printed by check-config and logged.
  auto refuse = [&](const std::string& why) {
    ctx_.add(line_of(path_node), path + " (from " + dotted(file_key) + ") " + why);
    return false;
  };
  // A regular file only: a FIFO with no writer would block the open, and a reload runs on the
  // thread that waits for signals (SIGTERM would then go unanswered).
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    return refuse("is not a regular file");
  }
  std::string value;
  // One byte over the limit is enough to refuse it.
  if (const int err = read_whole_file(path, value, kMaxSecretFile); err == EFBIG) {
    return refuse("is larger than " + std::to_string(kMaxSecretFile / 1024) + " KiB: not a secret");
  } else if (err != 0) {
    if (ctx_.require_env_secrets) {
      ctx_.add(line_of(path_node),
               "cannot read " + path + " (from " + dotted(file_key) + "): " + std::strerror(err));
    }
    return false;
  }
  if (value.ends_with('\n')) {
    value.pop_back();
    if (value.ends_with('\r')) {
      value.pop_back();
    }
  }
  if (value.empty()) {
    return refuse("is empty");
  }
  if (value.find_first_of("\r\n") != std::string::npos) {
    return refuse("holds more than one line");
  }
  out = std::move(value);
  return true;
}

bool TableReader::from_env(const toml::node& var_node, std::string_view env_key, std::string& out) {
  if (!var_node.is_string() || var_node.as_string()->get().empty()) {
    wrong_type(var_node, env_key, "the name of an environment variable");
    return false;
  }
  const std::string& var = var_node.as_string()->get();
  const char* value = std::getenv(var.c_str());
  if (value == nullptr || *value == '\0') {
    if (ctx_.require_env_secrets) {
      // Name the variable, never a value: this line is printed by check-config and logged.
      ctx_.add(line_of(var_node), "environment variable " + var + " (from " + dotted(env_key) +
                                      ") is not set or empty");
    }
    return false;
  }
  out = value;
  return true;
}

bool TableReader::env_secrets(std::string_view key, std::vector<std::string>& out) {
  const toml::node* node = get(key);
  if (node == nullptr) {
    return false;
  }
  const toml::array* array = node->as_array();
  if (array == nullptr) {
    wrong_type(*node, key, "a list of environment variable names");
    return false;
  }
  bool all = true;
  for (const toml::node& item : *array) {
    std::string value;
    if (from_env(item, key, value)) {
      out.push_back(std::move(value));
    } else {
      all = false;
    }
  }
  return all;
}

const toml::table* TableReader::table(std::string_view key) {
  const toml::node* node = get(key);
  if (node == nullptr) {
    return nullptr;
  }
  if (!node->is_table()) {
    wrong_type(*node, key, "a table ([" + dotted(key) + "])");
    return nullptr;
  }
  return node->as_table();
}

std::vector<const toml::table*> TableReader::tables(std::string_view key) {
  std::vector<const toml::table*> out;
  const toml::node* node = get(key);
  if (node == nullptr) {
    return out;
  }
  const toml::array* array = node->as_array();
  if (array == nullptr || (!array->empty() && !array->is_homogeneous(toml::node_type::table))) {
    wrong_type(*node, key, "a list of tables ([[" + dotted(key) + "]])");
    return out;
  }
  for (const toml::node& item : *array) {
    out.push_back(item.as_table());
  }
  return out;
}

void TableReader::finish() {
  for (auto&& [key, node] : table_) {
    if (known_.find(key.str()) == known_.end()) {
      ctx_.add(line_of(key), "unknown key \"" + dotted(key.str()) + "\"");
    }
  }
}

}  // namespace sb::config::detail
