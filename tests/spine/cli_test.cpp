// The binary's commands as an operator runs them (customers import and show, check-config):
// the real process against files in a temporary directory.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <thread>
#include <utility>
#include <vector>

#include "channels/email/mime.hpp"
#include "channels/email/threading.hpp"
#include "core/time.hpp"
#include "routing/rules.hpp"
#include "storage/schema.hpp"
#include "storage/sqlite.hpp"
#include "storage/store.hpp"
#include "storage/writer.hpp"
#include "tests/spine/file_text.hpp"
#include "tests/support/harness.hpp"

using namespace sb::test;

namespace {

// Runs `switchboard ARGS...` to completion (in `cwd` when given).
Cli switchboard(const TempDir& dir, std::vector<std::string> args,
                std::map<std::string, std::string> env = {}, const std::string& cwd = "") {
  return run_switchboard(dir, std::move(args), std::move(env), cwd);
}

// `switchboard customers SUB --config CFG ARG`.
Cli customers(const TempDir& dir, const std::string& sub, const std::string& cfg,
              const std::string& arg) {
  return switchboard(dir, {"customers", sub, "--config", cfg, arg});
}

std::string write_file(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::string storage_config(const TempDir& dir, const std::string& extra = "") {
  return write_file(dir, "switchboard.toml",
                    "[storage]\npath = \"" + dir.file("sb.db") + "\"\n" + extra);
}

// name|tier|tags of the customer with `external_id`.
std::string customer_row(const TempDir& dir, const std::string& external_id) {
  sb::storage::Db db(dir.file("sb.db"), true);
  auto st =
      db.prepare("SELECT name || '|' || tier || '|' || tags FROM customers WHERE external_id = ?1");
  st.bind(1, external_id);
  return st.step() ? st.text(0) : "<none>";
}

std::string identities_of(const TempDir& dir, const std::string& external_id) {
  sb::storage::Db db(dir.file("sb.db"), true);
  auto st = db.prepare(
      "SELECT group_concat(type || ':' || value, ' ') FROM (SELECT i.type, i.value FROM "
      "identities i JOIN customers c ON c.id = i.customer_id WHERE c.external_id = ?1 "
      "ORDER BY i.type, i.value)");
  st.bind(1, external_id);
  return st.step() ? st.text(0) : "<none>";
}

// Stores one direct message from each sender through the daemon's data path (Writer + Store),
// with `from` as the X and WhatsApp channels fill it in: their senders become customers the
// way a running daemon makes them.
void receive(const TempDir& dir, const std::vector<sb::Identity>& senders) {
  sb::storage::Writer writer(dir.file("sb.db"));
  sb::storage::Store store(writer, sb::Rules::compile(sb::config::Routing{}));
  writer.start();
  std::vector<sb::Inbound> items;
  for (const auto& from : senders) {
    sb::Inbound in;
    in.channel = from.type;
    in.account = from.type;
    in.kind = "direct_message";
    in.external_id = "m-" + from.value;
    in.from = from;
    in.text = "hello from " + from.type;
    items.push_back(std::move(in));
  }
  std::promise<std::vector<sb::IngestOutcome>> done;
  store.submit(std::move(items), std::nullopt,
               [&](std::vector<sb::IngestOutcome> out) { done.set_value(std::move(out)); });
  for (const auto& o : done.get_future().get()) {
    REQUIRE(o.error == "");
  }
}

// Stores each raw message through the email channel's parser (GMime) and the daemon's data
// path, as the IMAP poller does.
void receive_mail(const TempDir& dir, const std::vector<std::string>& raws) {
  sb::storage::Writer writer(dir.file("sb.db"));
  sb::storage::Store store(writer, sb::Rules::compile(sb::config::Routing{}));
  writer.start();
  std::vector<sb::Inbound> items;
  for (const auto& raw : raws) {
    items.push_back(sb::email::to_inbound(sb::email::parse_email(raw), "support", "INBOX"));
  }
  std::promise<std::vector<sb::IngestOutcome>> done;
  store.submit(std::move(items), std::nullopt,
               [&](std::vector<sb::IngestOutcome> out) { done.set_value(std::move(out)); });
  for (const auto& o : done.get_future().get()) {
    REQUIRE(o.error == "");
  }
}

}  // namespace

TEST_CASE("email: an xn-- domain and its Unicode form are one customer") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  auto imported = customers(dir, "import", cfg,
                            write_file(dir, "crm.csv",
                                       "external_id,name,email\n"
                                       "c-1,Ann Lee,ann@xn--bcher-kva.de\n"));
  INFO(imported.output);
  REQUIRE(imported.status == 0);
  // GMime decodes an xn-- domain to Unicode; a client may send either form, in any case.
  auto mail = [](const std::string& from, int n) {
    return "From: " + from + "\r\nTo: support@example.com\r\nSubject: order " + std::to_string(n) +
           "\r\nMessage-ID: <idn-" + std::to_string(n) +
           "@example.com>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nhello\r\n";
  };
  receive_mail(dir, {mail("Ann <ann@xn--bcher-kva.de>", 1),
                     mail("Ann <ann@b\xC3\xBC\x63her.de>", 2), mail("ANN@B\xC3\x9C\x43HER.DE", 3)});
  {
    sb::storage::Db db(dir.file("sb.db"), true);
    auto st = db.prepare("SELECT count(*) FROM customers");
    REQUIRE(st.step());
    CHECK(st.int64(0) == 1);
  }
  CHECK(identities_of(dir, "c-1") == "email:ann@xn--bcher-kva.de");
  for (const char* who :
       {"ann@xn--bcher-kva.de", "ann@b\xC3\xBC\x63her.de", "Ann@B\xC3\x9C\x43HER.de"}) {
    CAPTURE(who);
    auto shown = customers(dir, "show", cfg, who);
    INFO(shown.output);
    REQUIRE(shown.status == 0);
    CHECK(shown.output.find("  external id  c-1\n") != std::string::npos);
    CHECK(shown.output.find("  timeline (3, newest first)\n") != std::string::npos);
  }
}

TEST_CASE("customers import: a re-import without some columns or keys keeps what they held") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  auto full = customers(dir, "import", cfg,
                        write_file(dir, "full.csv",
                                   "external_id,name,email,tier,tags\n"
                                   "c-1,Ann Lee,ann@example.com,vip,b2b;retail\n"
                                   "c-2,Bob,bob@example.com,gold,x\n"));
  INFO(full.output);
  REQUIRE(full.status == 0);
  CHECK(customer_row(dir, "c-1") == "Ann Lee|vip|[\"b2b\",\"retail\"]");

  // A file of phones only: names, tiers and tags stay; the phone is added.
  auto phones = customers(dir, "import", cfg,
                          write_file(dir, "phones.csv", "external_id,phone\nc-1,+14155550100\n"));
  INFO(phones.output);
  REQUIRE(phones.status == 0);
  CHECK(phones.output.find("inserted 0, updated 1, rejected 0") != std::string::npos);
  CHECK(customer_row(dir, "c-1") == "Ann Lee|vip|[\"b2b\",\"retail\"]");
  CHECK(identities_of(dir, "c-1") == "email:ann@example.com phone:+14155550100");

  // A column that is in the header is given on every line: an empty cell clears the field.
  auto names = customers(dir, "import", cfg,
                         write_file(dir, "names.csv", "external_id,name,tier\nc-2,Bobby,\n"));
  INFO(names.output);
  REQUIRE(names.status == 0);
  CHECK(customer_row(dir, "c-2") == "Bobby||[\"x\"]");

  // JSON Lines: an absent key leaves the field, a present one sets it.
  auto jsonl = customers(dir, "import", cfg,
                         write_file(dir, "more.jsonl",
                                    "{\"external_id\":\"c-1\",\"emails\":[\"ann@work.example\"]}\n"
                                    "{\"external_id\":\"c-2\",\"tier\":\"silver\"}\n"));
  INFO(jsonl.output);
  REQUIRE(jsonl.status == 0);
  CHECK(customer_row(dir, "c-1") == "Ann Lee|vip|[\"b2b\",\"retail\"]");
  CHECK(identities_of(dir, "c-1") ==
        "email:ann@example.com email:ann@work.example phone:+14155550100");
  CHECK(customer_row(dir, "c-2") == "Bobby|silver|[\"x\"]");

  // A new customer from a file without those columns gets empty ones.
  auto fresh = customers(dir, "import", cfg,
                         write_file(dir, "new.csv", "external_id,email\nc-3,cy@example.com\n"));
  REQUIRE(fresh.status == 0);
  CHECK(customer_row(dir, "c-3") == "||[]");
}

// `run` loads the config the same way; it is not started here, because before the fix it
// would have served on the built-in defaults (127.0.0.1:8080) until killed.
TEST_CASE("check-config refuses a directory given as the config file") {
  TempDir dir;
  auto check = switchboard(dir, {"check-config", "--config", dir.path()});
  INFO(check.output);
  CHECK(check.status == 1);
  CHECK(check.output.find(dir.path() + ": cannot read the file: Is a directory") !=
        std::string::npos);
}

TEST_CASE("customers show prints names, subjects and texts without terminal controls") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  // ESC ] 0 ; ... BEL retitles an xterm; C2 9B is U+009B, CSI to a UTF-8 terminal.
  auto imported = customers(dir, "import", cfg,
                            write_file(dir, "evil.csv",
                                       "external_id,name,email,tags\n"
                                       "c-1,\"Ann\x1b]0;pwned\x07Lee\",ann@example.com,"
                                       "\"b2b\xc2\x9b"
                                       "2J\"\n"));
  INFO(imported.output);
  REQUIRE(imported.status == 0);
  std::string e_acute;  // 70 characters of two bytes each
  for (int i = 0; i < 70; ++i) {
    e_acute += "\xc3\xa9";
  }
  {
    sb::storage::Db db(dir.file("sb.db"));
    auto id = db.prepare("SELECT id FROM customers WHERE external_id = 'c-1'");
    REQUIRE(id.step());
    const std::string customer = id.text(0);
    auto add = db.prepare(
        "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
        "customer_id, occurred_at, received_at, payload) VALUES (?1, 'api', 'web', ?1, "
        "'message', 'inbound', ?2, 1, 1, ?3)");
    add.bind(1, "01A").bind(2, customer);
    add.bind(3, R"({"occurred_at":"2024-01-01T00:00:00Z","channel":"api","kind":"message",)"
                R"("direction":"inbound","queue":"general","subject":"Hi\u001b[2J\u0007there"})");
    add.run();
    add.bind(1, "01B").bind(2, customer);
    add.bind(3, R"({"occurred_at":"2024-01-02T00:00:00Z","channel":"api","kind":"message",)"
                R"("direction":"inbound","queue":"general","text":"a)" +
                    e_acute + R"(\nmore"})");
    add.run();
  }
  auto shown = customers(dir, "show", cfg, "ann@example.com");
  INFO(shown.output);
  REQUIRE(shown.status == 0);
  CHECK(shown.output.find('\x1b') == std::string::npos);
  CHECK(shown.output.find('\x07') == std::string::npos);
  CHECK(shown.output.find("\xc2\x9b") == std::string::npos);
  CHECK(shown.output.find("  name         Ann?]0;pwned?Lee\n") != std::string::npos);
  CHECK(shown.output.find("[\"b2b?2J\"]") != std::string::npos);
  CHECK(shown.output.find("  Hi?[2J?there\n") != std::string::npos);
  // The text's first 60 characters, cut between two of them.
  CHECK(shown.output.find("  a" + e_acute.substr(0, 59 * 2) + "...\n") != std::string::npos);
}

TEST_CASE("customers show lists the timeline in the order things happened, not as they arrived") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  auto imported = customers(dir, "import", cfg,
                            write_file(dir, "c.csv", "external_id,email\nc-1,ann@example.com\n"));
  INFO(imported.output);
  REQUIRE(imported.status == 0);
  {
    sb::storage::Db db(dir.file("sb.db"));
    auto id = db.prepare("SELECT id FROM customers WHERE external_id = 'c-1'");
    REQUIRE(id.step());
    const std::string customer = id.text(0);
    auto add = db.prepare(
        "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
        "customer_id, occurred_at, received_at, payload) VALUES (?1, 'api', 'web', ?1, "
        "'message', 'inbound', ?2, ?3, ?4, ?5)");
    // In the order they arrived (ids), one a day in January 2026: an import of old messages,
    // two of one time, one from a clock running ahead, then one as it happened.
    const std::vector<std::pair<std::string, std::string>> rows{
        {"recent", "2025-03-05T10:00:00Z"},  {"oldest", "2019-06-01T08:00:00Z"},
        {"tie-one", "2024-01-01T00:00:00Z"}, {"tie-two", "2024-01-01T00:00:00Z"},
        {"ahead", "2999-01-01T00:00:00Z"},   {"latest", "2026-01-06T00:00:00Z"}};
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto occurred = sb::parse_rfc3339(rows[i].second);
      const auto received = sb::parse_rfc3339("2026-01-0" + std::to_string(i + 1) + "T00:00:00Z");
      REQUIRE(occurred);
      REQUIRE(received);
      add.bind(1, "01" + std::string(1, static_cast<char>('A' + i))).bind(2, customer);
      add.bind(3, *occurred).bind(4, *received);
      add.bind(5, R"({"occurred_at":")" + rows[i].second +
                      R"(","channel":"api","kind":"message","direction":"inbound",)"
                      R"("queue":"general","subject":")" +
                      rows[i].first + "\"}");
      add.run();
    }
  }
  auto shown = customers(dir, "show", cfg, "c-1");
  INFO(shown.output);
  REQUIRE(shown.status == 0);
  CHECK(shown.output.find("timeline (6, newest first)") != std::string::npos);
  // The API's order (newest first by when each happened, at most at its arrival; ties by id).
  std::size_t at = 0;
  for (const std::string subject : {"latest", "ahead", "recent", "tie-two", "tie-one", "oldest"}) {
    CAPTURE(subject);
    auto found = shown.output.find("  " + subject + "\n", at);
    CHECK(found != std::string::npos);
    at = found == std::string::npos ? at : found;
  }
}

TEST_CASE("customers import and show run without the daemon's secrets in the environment") {
  TempDir dir;
  // Variables no test sets: the operator's shell lacks the daemon's environment file.
  const auto cfg = storage_config(dir,
                                  "[api]\ntokens_env = [\"SBTEST_CLI_UNSET_1\"]\n"
                                  "[redis]\npassword_env = \"SBTEST_CLI_UNSET_2\"\n"
                                  "[[agents]]\nid = \"alice\"\ntoken_env = \"SBTEST_CLI_UNSET_3\"\n"
                                  "queues = [\"general\"]\n"
                                  "[[channels.telegram]]\nname = \"tg\"\n"
                                  "bot_token_env = \"SBTEST_CLI_UNSET_4\"\n");
  auto imported = customers(dir, "import", cfg,
                            write_file(dir, "c.csv", "external_id,email\nc-1,ann@example.com\n"));
  INFO(imported.output);
  CHECK(imported.status == 0);
  CHECK(imported.output.find("inserted 1, updated 0, rejected 0") != std::string::npos);
  auto shown = customers(dir, "show", cfg, "c-1");
  INFO(shown.output);
  CHECK(shown.status == 0);
  CHECK(shown.output.find("email  ann@example.com") != std::string::npos);
  // The daemon's own commands still require them.
  auto check = switchboard(dir, {"check-config", "--config", cfg});
  CHECK(check.status == 1);
  CHECK(check.output.find("SBTEST_CLI_UNSET_4") != std::string::npos);
  // And everything else is still checked for the customer commands.
  std::ofstream(cfg, std::ios::app) << "[matching]\ndefault_region = \"UK\"\n";
  auto bad = customers(dir, "show", cfg, "c-1");
  CHECK(bad.status == 1);
  CHECK(bad.output.find("the United Kingdom is \"GB\"") != std::string::npos);
}

TEST_CASE("customers import takes over the customers an X user and a WhatsApp sender became") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  receive(dir, {sb::Identity{"x", "2244994999", "Ann", "AnnLee"},
                sb::Identity{"whatsapp", "+14155550111", "Cy", "14155550111"}});
  auto imported = customers(dir, "import", cfg,
                            write_file(dir, "crm.csv",
                                       "external_id,name,phone,tier,x\n"
                                       "c-1,Ann Lee,,vip,@AnnLee\n"
                                       "c-2,Cy Young,+1 415 555 0111,,\n"));
  INFO(imported.output);
  REQUIRE(imported.status == 0);
  CHECK(imported.output.find("inserted 0, updated 2, rejected 0") != std::string::npos);
  CHECK(customer_row(dir, "c-1") == "Ann Lee|vip|[]");
  CHECK(identities_of(dir, "c-1") == "x:2244994999 x_handle:annlee");
  CHECK(identities_of(dir, "c-2") == "phone:+14155550111 whatsapp:+14155550111");
  {
    sb::storage::Db db(dir.file("sb.db"), true);
    auto st = db.prepare("SELECT count(*) FROM customers");
    REQUIRE(st.step());
    CHECK(st.int64(0) == 2);
  }
  // One customer, whichever identity it is looked up by, with the message it sent.
  for (const char* who : {"c-1", "@AnnLee", "2244994999"}) {
    auto shown = customers(dir, "show", cfg, who);
    INFO(shown.output);
    REQUIRE(shown.status == 0);
    CHECK(shown.output.find("  external id  c-1\n") != std::string::npos);
    CHECK(shown.output.find("    x  2244994999  (AnnLee)\n") != std::string::npos);
    CHECK(shown.output.find("    x_handle  annlee\n") != std::string::npos);
    CHECK(shown.output.find("  timeline (1, newest first)\n") != std::string::npos);
    CHECK(shown.output.find("x/direct_message  inbound") != std::string::npos);
  }
  auto cy = customers(dir, "show", cfg, "+14155550111");
  INFO(cy.output);
  CHECK(cy.output.find("  external id  c-2\n") != std::string::npos);
  CHECK(cy.output.find("  name         Cy Young\n") != std::string::npos);
  CHECK(cy.output.find("whatsapp/direct_message  inbound") != std::string::npos);
}

TEST_CASE("SWITCHBOARD_LOG is read in any case, and an unknown level keeps logging at info") {
  // spdlog reads a name it does not know as "off": the daemon then ran without a single line.
  TempDir dir;
  RedisServer redis;
  const auto port = free_port();
  const auto cfg = storage_config(dir, "[server]\nlisten = \"127.0.0.1:" + std::to_string(port) +
                                           "\"\n[redis]\nurl = \"" + redis.url() + "\"\n");
  for (std::string level : {"INFO", "verbose", ""}) {
    CAPTURE(level);
    const auto log = dir.file("daemon-" + level + ".log");
    Process daemon({switchboard_binary(), "run", "--config", cfg}, log,
                   {{"SWITCHBOARD_LOG", level}});
    REQUIRE(eventually([&] { return healthy(port); }));
    daemon.kill(SIGTERM);
    CHECK(daemon.wait() == 0);
    std::ifstream in(log);
    std::string out((std::istreambuf_iterator<char>(in)), {});
    INFO(out);
    CHECK(out.find("[daemon] listening on") != std::string::npos);
    CHECK((out.find("SWITCHBOARD_LOG=\"" + level + "\" is not a log level") != std::string::npos) ==
          (level != "INFO"));
  }
}

TEST_CASE("an empty --config is a usage error, not the built-in defaults") {
  // Only check-config here: before the fix, `run` served on the defaults' 127.0.0.1:8080 until
  // killed. The other commands share the parser.
  TempDir dir;
  for (std::string flag : {"--config", "-c", "--config="}) {
    std::vector<std::string> args{"check-config", flag};
    if (flag != "--config=") {
      args.emplace_back("");
    }
    auto out = switchboard(dir, args);
    INFO(out.output);
    CHECK(out.status == 2);
    CHECK(out.output.find("switchboard: --config needs a PATH, and it was given an empty one") !=
          std::string::npos);
    CHECK(out.output.find("built-in defaults: ok") == std::string::npos);
  }
}

TEST_CASE(
    "check-config: an X account with two of the four OAuth 1.0a keys fails naming the other two, "
    "one without any passes with a warning that it cannot reply") {
  TempDir dir;
  const std::string x =
      "[[channels.x]]\n"
      "name = \"brand\"\n"
      "bearer_token_env = \"SBTEST_CLI_X_BEARER\"\n"
      "user_id = \"2244994945\"\n";
  const std::map<std::string, std::string> env{{"SBTEST_CLI_X_BEARER", "bearer"},
                                               {"SBTEST_CLI_X_CK", "ck-secret-value"},
                                               {"SBTEST_CLI_X_AS", "as-secret-value"}};
  auto half =
      switchboard(dir,
                  {"check-config", "--config",
                   storage_config(dir, x + "consumer_key_env = \"SBTEST_CLI_X_CK\"\n"
                                           "access_token_secret_env = \"SBTEST_CLI_X_AS\"\n")},
                  env);
  INFO(half.output);
  CHECK(half.status == 1);
  // [storage] takes lines 1-2: [[channels.x]] is line 3.
  CHECK(half.output.find("switchboard.toml:3: missing channels.x.consumer_secret_env and "
                         "channels.x.access_token_env: OAuth 1.0a user context needs all four") !=
        std::string::npos);
  CHECK(half.output.find("secret-value") == std::string::npos);  // never a secret

  auto none = switchboard(dir, {"check-config", "--config", storage_config(dir, x)}, env);
  INFO(none.output);
  CHECK(none.status == 0);
  CHECK(none.output.find("warning: " + dir.file("switchboard.toml") +
                         ":3: channels.x account \"brand\" cannot reply: X takes POST /2/tweets "
                         "only in user context") != std::string::npos);
  CHECK(none.output.find(": ok") != std::string::npos);
}

namespace {

long long count_of(const TempDir& dir, const std::string& sql) {
  try {
    sb::storage::Db db(dir.file("sb.db"), true);
    auto st = db.prepare(sql);
    return st.step() ? st.int64(0) : -1;
  } catch (const std::exception&) {
    return -1;  // not created yet
  }
}

// Lines `first`..`last` of a customer file, one record each: c-N, its name and its email.
std::string records(int first, int last) {
  std::string out;
  for (int i = first; i <= last; ++i) {
    out += "c-" + std::to_string(i) + ",Customer " + std::to_string(i) + ",user" +
           std::to_string(i) + "@example.com\n";
  }
  return out;
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    auto n = ::write(fd, bytes.data(), bytes.size());
    if (n <= 0) {
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

TEST_CASE(
    "customers import: a database locked mid-file stops the import saying what was committed, "
    "and a re-run completes it") {
  // The import commits every 20,000 records. A failure after that (the daemon or another import
  // holding the write lock past the busy timeout, a full disk) left the first batches committed
  // and said only "switchboard: database is locked". The file is a FIFO so that the test can
  // take the lock between the first batch's commit and the next record: after its commit the
  // import waits for the pipe, holding no transaction.
  ::signal(SIGPIPE, SIG_IGN);  // a child that died early: write() fails instead
  TempDir dir;
  const auto cfg = storage_config(dir);
  const std::string header = "external_id,name,email\n";
  const std::string first = records(1, 20000);  // lines 2-20001: one batch
  // Blank lines (skipped) that push the batch through the reader's 1 MiB read buffer, which a
  // pipe fills only to the end of what was written.
  const std::string padding(1100 * 1024, '\n');
  const std::string rest = records(20001, 20010);
  const std::string fifo = dir.file("customers.csv");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  Process import({switchboard_binary(), "customers", "import", "--config", cfg, fifo},
                 dir.file("import.log"));
  int fd = -1;
  REQUIRE(eventually([&] {
    fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);  // ENXIO until the import opens it
    return fd >= 0;
  }));
  REQUIRE(::fcntl(fd, F_SETFL, 0) == 0);
  REQUIRE(write_all(fd, header + first + padding));
  REQUIRE(eventually([&] { return count_of(dir, "SELECT count(*) FROM customers") == 20000; },
                     std::chrono::seconds(60)));
  {
    sb::storage::Db lock(dir.file("sb.db"));
    lock.exec("BEGIN IMMEDIATE");
    REQUIRE(write_all(fd, rest));
    ::close(fd);
    // The import waits its busy timeout (5 s) for the lock, then gives up.
    REQUIRE(eventually([&] { return !import.running(); }, std::chrono::seconds(30)));
    lock.exec("ROLLBACK");
  }
  std::ifstream in(dir.file("import.log"));
  std::string out((std::istreambuf_iterator<char>(in)), {});
  INFO(out);
  CHECK(import.wait() == 1);
  const std::size_t stopped_at = 20002 + padding.size();
  CHECK(out.find("switchboard: " + fifo + ": the import stopped at line " +
                 std::to_string(stopped_at) + ": database is locked\n") != std::string::npos);
  CHECK(out.find("switchboard: committed: the records through line 20001 (inserted 20000, "
                 "updated 0, rejected 0); nothing after that line was imported\n") !=
        std::string::npos);
  CHECK(out.find("run the same command again once the cause is fixed") != std::string::npos);
  CHECK(count_of(dir, "SELECT count(*) FROM customers") == 20000);

  // The same file again: what was committed is updated in place, the rest is added.
  ::unlink(fifo.c_str());
  auto again = customers(dir, "import", cfg,
                         write_file(dir, "customers.csv", header + first + padding + rest));
  INFO(again.output);
  CHECK(again.status == 0);
  CHECK(again.output.find("inserted 10, updated 20000, rejected 0") != std::string::npos);
  CHECK(count_of(dir, "SELECT count(*) FROM customers") == 20010);
  CHECK(count_of(dir, "SELECT count(*) FROM identities") == 20010);
  CHECK(count_of(dir, "SELECT count(DISTINCT external_id) FROM customers") == 20010);
  CHECK(customer_row(dir, "c-20000") == "Customer 20000||[]");
  CHECK(identities_of(dir, "c-20010") == "email:user20010@example.com");
}

TEST_CASE(
    "customers import: rejected lines are said as they are met, with progress by lines read") {
  // A file whose lines mostly fail never reached a commit, where progress was printed, and its
  // rejections were kept (~100 MB for a million) and printed only at the end. A FIFO lets the
  // test look at the output while the import still waits for more of the file.
  ::signal(SIGPIPE, SIG_IGN);
  TempDir dir;
  const auto cfg = storage_config(dir);
  std::string bad;
  for (int i = 1; i <= 500; ++i) {
    bad += "c-" + std::to_string(i) + ",Customer,not-an-address\n";
  }
  const std::string fifo = dir.file("customers.csv");
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  Process import({switchboard_binary(), "customers", "import", "--config", cfg, fifo},
                 dir.file("import.log"));
  int fd = -1;
  REQUIRE(eventually([&] {
    fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    return fd >= 0;
  }));
  REQUIRE(::fcntl(fd, F_SETFL, 0) == 0);
  auto log = [&] {
    std::ifstream in(dir.file("import.log"));
    return std::string((std::istreambuf_iterator<char>(in)), {});
  };
  // Blank lines (skipped) that push what was written through the reader's 1 MiB read buffer.
  const std::string padding(1100 * 1024, '\n');
  REQUIRE(write_all(fd, "external_id,name,email\n" + bad + padding));
  // Said while the file is still open, before any commit.
  CHECK(eventually([&] { return log().find("line 501: ") != std::string::npos; }));
  CHECK(log().find("line 2: ") != std::string::npos);
  // A second later, the next line read brings a progress line, counted by lines.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  REQUIRE(write_all(fd, "c-x,Customer,ann@example.com\n" + padding));
  const std::string progress = "read " + std::to_string(502 + padding.size()) +
                               " lines: inserted 0, updated 0, rejected 500";
  CHECK(eventually([&] { return log().find(progress) != std::string::npos; }));
  ::close(fd);
  REQUIRE(eventually([&] { return !import.running(); }, std::chrono::seconds(30)));
  CHECK(import.wait() == 1);
  const std::string out = log();
  INFO(out);
  std::size_t said = 0;
  for (auto at = out.find("not a valid email address"); at != std::string::npos;
       at = out.find("not a valid email address", at + 1)) {
    ++said;
  }
  CHECK(said == 500);
  CHECK(out.find("inserted 1, updated 0, rejected 500") != std::string::npos);
}

TEST_CASE("customers import: a phone extension it drops is said, in a conflict and in the counts") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  auto out = customers(dir, "import", cfg,
                       write_file(dir, "crm.csv",
                                  "external_id,name,phone\n"
                                  "c-1,Ann,+1 415 555 0100\n"
                                  "c-2,Bob,+1 415 555 0100 ext. 12\n"
                                  "c-3,Cy,+1 415 555 0103 x7\n"));
  INFO(out.output);
  CHECK(out.status == 1);
  // Not only "+14155550100", a number line 3 never held as written.
  CHECK(out.output.find("line 3: phone \"+14155550100\" (the file's \"+1 415 555 0100 ext. "
                        "12\": extension 12 dropped) already belongs to customer c-1\n") !=
        std::string::npos);
  CHECK(out.output.find("inserted 2, updated 0, rejected 1") != std::string::npos);
  CHECK(out.output.find("note: 2 phone numbers had an extension, dropped") != std::string::npos);
  CHECK(identities_of(dir, "c-3") == "phone:+14155550103");
}

TEST_CASE("customers import: a database locked from the start imports nothing and says so") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  REQUIRE(customers(dir, "import", cfg, write_file(dir, "one.csv", "external_id\nc-0\n")).status ==
          0);
  const auto file = write_file(dir, "two.csv", "external_id\nc-1\nc-2\n");
  sb::storage::Db lock(dir.file("sb.db"));
  lock.exec("BEGIN IMMEDIATE");
  auto out = customers(dir, "import", cfg, file);
  lock.exec("ROLLBACK");
  INFO(out.output);
  CHECK(out.status == 1);
  // At the first record's transaction: the import no longer takes the write lock to upgrade the
  // schema before reading the file (only run upgrades).
  CHECK(out.output.find("switchboard: " + file +
                        ": the import stopped at line 2: database is locked\n") !=
        std::string::npos);
  CHECK(out.output.find("switchboard: nothing from " + file + " was committed\n") !=
        std::string::npos);
  CHECK(count_of(dir, "SELECT count(*) FROM customers") == 1);
}

TEST_CASE("customers import refuses a directory, and a read error stops it naming the cause") {
  // fopen opens a directory and its first read fails (EISDIR): a CSV import said "adir:1: empty
  // file, expected a header row", a .jsonl import printed "line 0: read error after 0 bytes" and
  // counted a rejected record.
  TempDir dir;
  const auto cfg = storage_config(dir);
  for (const std::string name : {"adir", "adir.jsonl"}) {
    const std::string path = dir.file(name);
    REQUIRE(::mkdir(path.c_str(), 0700) == 0);
    auto out = customers(dir, "import", cfg, path);
    INFO(out.output);
    CHECK(out.status == 1);
    CHECK(out.output == "switchboard: " + path + ": Is a directory\n");
  }
  // A read error: /proc/self/mem, named through a link with the extension, fails its first read
  // with EIO (page 0 is never mapped); the link resolves in the importing process. For CSV it
  // comes while the header is read, for .jsonl where a read error mid-file does.
  for (const std::string name : {"mem.csv", "mem.jsonl"}) {
    const std::string path = dir.file(name);
    REQUIRE(::symlink("/proc/self/mem", path.c_str()) == 0);
    auto out = customers(dir, "import", cfg, path);
    INFO(out.output);
    CHECK(out.status == 1);
    CHECK(out.output.find("switchboard: " + path +
                          ": read error after 0 bytes: Input/output error\n") != std::string::npos);
    CHECK(out.output.find("line 0") == std::string::npos);
    CHECK(out.output.find("rejected") == std::string::npos);
  }
  CHECK(count_of(dir, "SELECT count(*) FROM customers") == 0);
}

TEST_CASE("customers commands: an unknown option or an extra argument is a usage error (exit 2)") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  const auto file = write_file(dir, "c.csv", "external_id\nc-1\n");
  auto unknown = switchboard(dir, {"customers", "import", "--config", cfg, "--force", file});
  INFO(unknown.output);
  CHECK(unknown.status == 2);
  CHECK(
      unknown.output.starts_with("switchboard: unknown option --force\n\n"
                                 "switchboard customers import [--config PATH] FILE\n"));
  auto two = switchboard(dir, {"customers", "import", "--config", cfg, file, file});
  INFO(two.output);
  CHECK(two.status == 2);
  CHECK(two.output.starts_with("switchboard: give exactly one FILE\n\n"));
  auto none = switchboard(dir, {"customers", "show", "--config", cfg});
  INFO(none.output);
  CHECK(none.status == 2);
  CHECK(
      none.output.starts_with("switchboard: give exactly one QUERY\n\n"
                              "switchboard customers show [--config PATH] QUERY\n"));
  auto extra = switchboard(dir, {"check-config", "--config", cfg, "now"});
  INFO(extra.output);
  CHECK(extra.status == 2);
  CHECK(extra.output.starts_with("switchboard: unexpected argument now\n\n"));
  auto sub = switchboard(dir, {"customers", "list"});
  CHECK(sub.status == 2);
  CHECK(sub.output.starts_with("switchboard: customers needs a subcommand: import or show\n"));
  // None of them touched the database.
  CHECK(::access(dir.file("sb.db").c_str(), F_OK) != 0);
}

TEST_CASE("customers show: no customer matching the query is exit 1 naming the query") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  REQUIRE(customers(dir, "import", cfg,
                    write_file(dir, "c.csv", "external_id,email\nc-1,ann@example.com\n"))
              .status == 0);
  for (std::string query : {"bob@example.com", "c-2", "+14155550199", "@nobody"}) {
    CAPTURE(query);
    auto out = customers(dir, "show", cfg, query);
    CHECK(out.status == 1);
    CHECK(out.output == "switchboard: no customer matches \"" + query + "\"\n");
  }
  CHECK(customers(dir, "show", cfg, "ann@example.com").status == 0);
}

TEST_CASE("customers show finds an X or Telegram user a message made a customer by username") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  receive(dir, {sb::Identity{"x", "12345", "Bob", "BobLee"},
                sb::Identity{"telegram", "555001", "Cy", "cy_young"}});
  for (std::string query : {"@BobLee", "@boblee", "boblee", "BobLee"}) {
    CAPTURE(query);
    auto out = customers(dir, "show", cfg, query);
    CHECK(out.status == 0);
    CHECK(out.output.find("    x  12345  (BobLee)\n") != std::string::npos);
  }
  auto cy = customers(dir, "show", cfg, "@Cy_Young");
  CHECK(cy.status == 0);
  CHECK(cy.output.find("    telegram  555001  (cy_young)\n") != std::string::npos);
}

TEST_CASE("customers show: a query naming several customers lists them and picks none") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  // One username on two platforms, one id on two: four people.
  receive(dir, {sb::Identity{"x", "12345", "Bob", "BobLee"},
                sb::Identity{"telegram", "555001", "Robert", "boblee"},
                sb::Identity{"x", "777777", "Dee", "dee"},
                sb::Identity{"telegram", "777777", "Eve", "eve_e"}});
  auto id_of = [&](const std::string& type, const std::string& value) {
    sb::storage::Db db(dir.file("sb.db"), true);
    auto st = db.prepare("SELECT customer_id FROM identities WHERE type = ?1 AND value = ?2");
    st.bind(1, type).bind(2, value);
    REQUIRE(st.step());
    return st.text(0);
  };
  auto bob = customers(dir, "show", cfg, "@boblee");
  INFO(bob.output);
  CHECK(bob.status == 1);
  CHECK(bob.output == "switchboard: \"@boblee\" matches 2 customers; give one's id:\n  " +
                          id_of("x", "12345") + "  x 12345  Bob\n  " + id_of("telegram", "555001") +
                          "  telegram 555001  Robert\n");
  auto num = customers(dir, "show", cfg, "777777");
  INFO(num.output);
  CHECK(num.status == 1);
  CHECK(num.output == "switchboard: \"777777\" matches 2 customers; give one's id:\n  " +
                          id_of("x", "777777") + "  x 777777  Dee\n  " +
                          id_of("telegram", "777777") + "  telegram 777777  Eve\n");
  // Each by its id.
  auto one = customers(dir, "show", cfg, id_of("telegram", "777777"));
  CHECK(one.status == 0);
  CHECK(one.output.find("    telegram  777777  (eve_e)\n") != std::string::npos);
}

TEST_CASE("customers show: an identity whose customer is gone matches nobody (exit 1)") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  REQUIRE(customers(dir, "import", cfg,
                    write_file(dir, "c.csv", "external_id,email\nc-1,ann@example.com\n"))
              .status == 0);
  {
    // An identity left behind by a customer deleted under it (the voice path once did so).
    sb::storage::Db db(dir.file("sb.db"));
    db.exec(
        "INSERT INTO identities(type, value, customer_id) VALUES "
        "('email', 'ghost@example.com', 'cus_deleted')");
  }
  auto out = customers(dir, "show", cfg, "ghost@example.com");
  CHECK(out.status == 1);
  CHECK(out.output == "switchboard: no customer matches \"ghost@example.com\"\n");
  CHECK(customers(dir, "show", cfg, "ann@example.com").status == 0);
}

TEST_CASE("customers show: a database that is not switchboard's, or is newer, says so") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  {
    sb::storage::Db db(dir.file("sb.db"));
    db.exec("CREATE TABLE notes(id INTEGER PRIMARY KEY, text TEXT)");
  }
  auto other = customers(dir, "show", cfg, "ann@example.com");
  CHECK(other.status == 1);
  CHECK(other.output == "switchboard: " + dir.file("sb.db") +
                            " is not a switchboard database (no schema version)\n");

  TempDir dir2;
  const auto cfg2 = storage_config(dir2);
  REQUIRE(customers(dir2, "import", cfg2,
                    write_file(dir2, "c.csv", "external_id,email\nc-1,ann@example.com\n"))
              .status == 0);
  {
    sb::storage::Db db(dir2.file("sb.db"));
    db.exec("UPDATE schema_version SET version = 999");
  }
  auto newer = customers(dir2, "show", cfg2, "ann@example.com");
  INFO(newer.output);
  CHECK(newer.status == 1);
  CHECK(newer.output.find("has schema version 999, newer than this switchboard understands") !=
        std::string::npos);
  CHECK(newer.output.find("no such table") == std::string::npos);
}

// Before: import upgraded the file itself, under an older daemon still running on it (the binary
// replaced, the daemon not yet restarted), which then ran on a schema it does not know.
TEST_CASE(
    "customers import refuses an older schema and leaves the file as it was: run upgrades it") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  {
    sb::storage::Db db(dir.file("sb.db"));
    sb::storage::migrate(db, 25);
  }
  auto out = customers(dir, "import", cfg,
                       write_file(dir, "c.csv", "external_id,email\nc-1,ann@example.com\n"));
  INFO(out.output);
  CHECK(out.status == 1);
  CHECK(out.output.find(dir.file("sb.db") + " has schema version 25, older than this "
                                            "switchboard's") != std::string::npos);
  CHECK(out.output.find("start the new daemon (`switchboard run` with this binary) first") !=
        std::string::npos);
  sb::storage::Db db(dir.file("sb.db"), true);
  auto st = db.prepare("SELECT version FROM schema_version");
  REQUIRE(st.step());
  CHECK(st.int64(0) == 25);
  auto customers_table = db.prepare("SELECT count(*) FROM customers");
  REQUIRE(customers_table.step());
  CHECK(customers_table.int64(0) == 0);
}

// Before: `switchboard: database is locked`, naming neither the file nor what holds it.
TEST_CASE("run on a database another process holds the write lock of names the file and why") {
  TempDir dir;
  const auto cfg = storage_config(dir);
  sb::storage::Db holder(dir.file("sb.db"));
  sb::storage::migrate(holder);
  holder.exec("BEGIN EXCLUSIVE");
  auto out = switchboard(dir, {"run", "--config", cfg});
  INFO(out.output);
  CHECK(out.status == 1);
  CHECK(out.output.find("database " + dir.file("sb.db") +
                        ": database is locked (another process holds the write lock") !=
        std::string::npos);
  holder.exec("ROLLBACK");
}

// Before: nothing in the log said which config was in force, and a daemon on the built-in
// defaults (no file where it looked) answered 401 to every request without a word about it.
TEST_CASE("run: the start-up log names the config file in use, and warns of no tokens or agents") {
  TempDir dir;
  RedisServer redis;
  const auto port = free_port();
  // Found as ./switchboard.toml: the log gives its absolute path.
  storage_config(dir, "[server]\nlisten = \"127.0.0.1:" + std::to_string(port) +
                          "\"\n[redis]\nurl = \"" + redis.url() + "\"\n");
  const auto log = dir.file("daemon.log");
  {
    Process daemon({switchboard_binary(), "run"}, log, {}, dir.path());
    REQUIRE(eventually([&] { return healthy(port); }));
    daemon.kill(SIGTERM);
    CHECK(daemon.wait() == 0);
  }
  const auto out = file_text(log);
  INFO(out);
  CHECK(out.find("[daemon] config: " + dir.file("switchboard.toml") + "\n") != std::string::npos);
  CHECK(out.find("[daemon] [api] tokens is empty: POST /v1/interactions will answer 401 to "
                 "everyone") != std::string::npos);
  CHECK(out.find("[daemon] no [[agents]] are configured") != std::string::npos);

  // With a token and an agent, neither warning.
  const auto cfg = storage_config(
      dir, "[server]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n[redis]\nurl = \"" +
               redis.url() +
               "\"\n[api]\ntokens = [\"t\"]\n[[agents]]\nid = \"ann\"\ntoken = \"a\"\n"
               "queues = [\"general\"]\n");
  const auto log2 = dir.file("daemon2.log");
  {
    Process daemon({switchboard_binary(), "run", "--config", cfg}, log2);
    REQUIRE(eventually([&] { return healthy(port); }));
    daemon.kill(SIGTERM);
    CHECK(daemon.wait() == 0);
  }
  const auto out2 = file_text(log2);
  INFO(out2);
  CHECK(out2.find("[daemon] config: " + cfg + "\n") != std::string::npos);
  CHECK(out2.find("tokens is empty") == std::string::npos);
  CHECK(out2.find("no [[agents]]") == std::string::npos);
}

TEST_CASE(
    "run: on the built-in defaults the start-up log says so (an empty SWITCHBOARD_CONFIG is "
    "unset)") {
  // The defaults listen on 127.0.0.1:8080, which may be taken here: the line comes before the
  // listener, and the daemon is stopped as soon as it is there.
  TempDir dir;
  const auto log = dir.file("daemon.log");
  Process daemon({switchboard_binary(), "run"}, log, {{"SWITCHBOARD_CONFIG", ""}}, dir.path());
  REQUIRE(eventually([&] {
    return file_text(log).find(
               "[daemon] config: built-in defaults (no config file: give --config "
               "PATH)") != std::string::npos;
  }));
  daemon.kill(SIGTERM);
  daemon.wait();
  const auto out = file_text(log);
  INFO(out);
  CHECK(out.find("[daemon] [api] tokens is empty") != std::string::npos);
  CHECK(out.find("[daemon] no [[agents]] are configured") != std::string::npos);
}

// Before: a ./switchboard.toml that was not a regular file was passed over, and the daemon ran on
// the built-in defaults (check-config said "built-in defaults: ok").
TEST_CASE(
    "a ./switchboard.toml that is a directory, a broken symlink or a FIFO is an error naming "
    "it") {
  TempDir dir;
  const auto toml = dir.file("switchboard.toml");
  SUBCASE("a directory") {
    REQUIRE(::mkdir(toml.c_str(), 0700) == 0);
    auto out = switchboard(dir, {"check-config"}, {}, dir.path());
    INFO(out.output);
    CHECK(out.status == 1);
    CHECK(out.output.find("switchboard.toml: cannot read the file: Is a directory") !=
          std::string::npos);
  }
  SUBCASE("a broken symlink") {
    REQUIRE(::symlink(dir.file("gone.toml").c_str(), toml.c_str()) == 0);
    auto out = switchboard(dir, {"check-config"}, {}, dir.path());
    INFO(out.output);
    CHECK(out.status == 1);
    CHECK(out.output.find("switchboard.toml: cannot read the file: No such file or directory") !=
          std::string::npos);
  }
  SUBCASE("a FIFO (the read would block)") {
    REQUIRE(::mkfifo(toml.c_str(), 0600) == 0);
    auto out = switchboard(dir, {"check-config"}, {}, dir.path());
    INFO(out.output);
    CHECK(out.status == 1);
    CHECK(out.output.find("switchboard.toml: cannot read the file: not a regular file") !=
          std::string::npos);
  }
  SUBCASE("named by SWITCHBOARD_CONFIG") {
    REQUIRE(::mkdir(dir.file("conf.d").c_str(), 0700) == 0);
    auto out = switchboard(dir, {"check-config"}, {{"SWITCHBOARD_CONFIG", dir.file("conf.d")}});
    INFO(out.output);
    CHECK(out.status == 1);
    CHECK(out.output.find(dir.file("conf.d") + ": cannot read the file: Is a directory") !=
          std::string::npos);
  }
}

TEST_CASE("--help says that -c PATH and --config=PATH are accepted") {
  TempDir dir;
  auto help = switchboard(dir, {"--help"});
  CHECK(help.status == 0);
  INFO(help.output);
  CHECK(help.output.find("--config PATH (or -c PATH, --config=PATH)") != std::string::npos);
  // And they are.
  const auto cfg = storage_config(dir);
  CHECK(switchboard(dir, {"check-config", "-c", cfg}).output == cfg + ": ok\n");
  CHECK(switchboard(dir, {"check-config", "--config=" + cfg}).output == cfg + ": ok\n");
}

// storage.path is relative to the working directory: an import run from elsewhere made a new,
// empty database there without a word, and the daemon never saw the customers.
TEST_CASE("customers import says when it creates the database, with its absolute path") {
  TempDir dir;
  const auto cfg = write_file(dir, "sb.toml", "[storage]\npath = \"var/sb.db\"\n");
  const auto csv = write_file(dir, "c.csv", "external_id,email\nc-1,ann@example.com\n");
  REQUIRE(::mkdir(dir.file("elsewhere").c_str(), 0700) == 0);
  auto first =
      switchboard(dir, {"customers", "import", "--config", cfg, csv}, {}, dir.file("elsewhere"));
  INFO(first.output);
  CHECK(first.status == 0);
  CHECK(first.output.find(
            "switchboard: created a new database at " + dir.file("elsewhere/var/sb.db") +
            " (storage.path, relative to the working directory)\n") != std::string::npos);
  CHECK(std::filesystem::exists(dir.file("elsewhere/var/sb.db")));
  // The same database again: nothing to say.
  auto again =
      switchboard(dir, {"customers", "import", "--config", cfg, csv}, {}, dir.file("elsewhere"));
  INFO(again.output);
  CHECK(again.status == 0);
  CHECK(again.output.find("created a new database") == std::string::npos);
  CHECK(again.output.find("inserted 0, updated 1, rejected 0") != std::string::npos);
}

TEST_CASE(
    "customers show and backup with no database refuse naming its absolute path, and make "
    "none") {
  TempDir dir;
  const auto cfg = write_file(dir, "sb.toml", "[storage]\npath = \"var/sb.db\"\n");
  const std::string where =
      dir.file("var/sb.db") + " (storage.path, relative to the working directory)";
  auto show =
      switchboard(dir, {"customers", "show", "--config", cfg, "ann@example.com"}, {}, dir.path());
  CHECK(show.status == 1);
  CHECK(show.output == "switchboard: no database at " + where + "\n");
  auto backup = switchboard(dir, {"backup", "--config", cfg, dir.file("copy.db")}, {}, dir.path());
  CHECK(backup.status == 1);
  CHECK(backup.output == "switchboard: no database at " + where + ": nothing to back up\n");
  CHECK(!std::filesystem::exists(dir.file("var")));
  CHECK(!std::filesystem::exists(dir.file("copy.db")));
}
