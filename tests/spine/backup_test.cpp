// `switchboard backup` as an operator runs it: the real binary, a real daemon ingesting into the
// database it copies, real Redis for the restore procedure of the README ("Backup and restore").
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "storage/sqlite.hpp"
#include "tests/spine/file_text.hpp"
#include "tests/support/harness.hpp"

using namespace sb::test;
namespace json = boost::json;
namespace fs = std::filesystem;

// Named: the test program is a unity build, where the anonymous namespaces of its files meet.

namespace backup_test {

std::string write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// A config that names only the database, sb.db in `dir`.
std::string storage_only_config(const TempDir& dir) {
  return write_file(dir.file("switchboard.toml"),
                    "[storage]\npath = \"" + dir.file("sb.db") + "\"\n");
}

// A database that is not switchboard's: one table, one row (x = 42).
void small_database(const TempDir& dir) {
  sb::storage::Db db(dir.file("sb.db"));
  db.exec("CREATE TABLE t(x)");
  db.exec("INSERT INTO t VALUES (42)");
}

// A daemon's config: the database sb.db in `dir`, one API token "t", agent alice on general.
std::string daemon_config(const TempDir& dir, std::uint16_t port, std::uint16_t redis_port,
                          const std::string& db = "sb.db") {
  return write_file(dir.file("switchboard.toml"),
                    "[server]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n" +
                        "[storage]\npath = \"" + dir.file(db) + "\"\n" +
                        "[redis]\nurl = \"redis://127.0.0.1:" + std::to_string(redis_port) +
                        "/0\"\n" + "[api]\ntokens = [\"t\"]\n" +
                        "[[agents]]\nid = \"alice\"\ntoken = \"alice-token\"\n"
                        "queues = [\"general\"]\n");
}

std::string interaction(const std::string& external_id, const std::string& text = "hello") {
  return R"({"source":"web","external_id":")" + external_id +
         R"(","from":{"email":"ann@example.com","name":"Ann Lee"},"text":")" + text + R"("})";
}

std::string ingest(HttpClient& c, const std::string& external_id) {
  auto r = c.post_json("/v1/interactions", interaction(external_id), "t");
  REQUIRE(r.status == 202);
  return std::string(json::parse(r.body).at("id").as_string());
}

std::int64_t scalar(sb::storage::Db& db, const std::string& sql) {
  auto st = db.prepare(sql);
  REQUIRE(st.step());
  return st.int64(0);
}

std::set<std::string> stream_ids(RedisServer& redis, const std::string& stream) {
  std::set<std::string> ids;
  for (auto& e : redis.xrange(stream)) {
    ids.insert(e["interaction_id"]);
  }
  return ids;
}

}  // namespace backup_test

using namespace backup_test;

TEST_CASE("backup: a copy taken while the daemon ingests holds every interaction answered before") {
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  auto cfg = daemon_config(dir, port, redis.port());
  auto daemon = daemon_process(dir, cfg);
  REQUIRE(eventually([&] { return healthy(port); }));

  std::mutex mu;
  std::set<std::string> acked;
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  // ~2 KB a text: the database grows past a few backup steps (1,024 pages each) quickly.
  const std::string text(2000, 'x');
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      HttpClient c(port);
      for (int i = 0; !stop; ++i) {
        auto r =
            c.post_json("/v1/interactions",
                        interaction("b-" + std::to_string(t) + "-" + std::to_string(i), text), "t");
        if (r.status == 202) {
          std::lock_guard lock(mu);
          acked.insert(std::string(json::parse(r.body).at("id").as_string()));
          ++answered;
        }
      }
    });
  }
  REQUIRE(eventually([&] { return answered.load() > 6000; }, std::chrono::seconds(60)));
  std::set<std::string> before;
  {
    std::lock_guard lock(mu);
    before = acked;
  }
  const std::string dest = dir.file("copy.db");
  auto out = run_switchboard(dir, {"backup", "--config", cfg, dest});
  int during = answered.load() - static_cast<int>(before.size());
  stop = true;
  for (auto& c : clients) {
    c.join();
  }
  INFO(out.output);
  REQUIRE(out.status == 0);
  CHECK(during > 0);  // the daemon went on answering while the copy was taken
  CHECK(out.output.find("backed up " + dir.file("sb.db") + " to " + dest + ": ") !=
        std::string::npos);

  // One self-contained file, the daemon user's alone: no -wal beside it, nor needed (the header's
  // read and write versions, bytes 18 and 19, are 1: a rollback journal, not WAL).
  CHECK(!fs::exists(dest + "-wal"));
  CHECK(!fs::exists(dest + ".tmp"));
  struct stat st {};
  REQUIRE(::stat(dest.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto header = file_text(dest).substr(0, 100);
  REQUIRE(header.size() == 100);
  CHECK(header.starts_with(std::string("SQLite format 3\0", 16)));
  CHECK(header[18] == 1);
  CHECK(header[19] == 1);

  {
    sb::storage::Db copy(dest, true);
    auto check = copy.prepare("PRAGMA quick_check");
    REQUIRE(check.step());
    CHECK(check.text(0) == "ok");
    auto find = copy.prepare("SELECT count(*) FROM interactions WHERE id = ?1");
    int missing = 0;
    for (const auto& id : before) {
      find.bind(1, id);
      find.step();
      missing += find.int64(0) == 1 ? 0 : 1;
      find.reset();
    }
    CHECK(missing == 0);
    auto n = scalar(copy, "SELECT count(*) FROM interactions");
    CHECK(n >= static_cast<std::int64_t>(before.size()));
    CHECK(out.output.find(", " + std::to_string(n) + " interactions, schema version ") !=
          std::string::npos);
    sb::storage::Db live(dir.file("sb.db"), true);
    CHECK(scalar(copy, "SELECT version FROM schema_version") ==
          scalar(live, "SELECT version FROM schema_version"));
  }
  // The copy is a database switchboard opens: customers show on it finds Ann and her timeline.
  auto restored_cfg = write_file(dir.file("copy.toml"), "[storage]\npath = \"" + dest + "\"\n");
  auto shown =
      run_switchboard(dir, {"customers", "show", "--config", restored_cfg, "ann@example.com"});
  INFO(shown.output);
  CHECK(shown.status == 0);
  CHECK(shown.output.find("name         Ann Lee") != std::string::npos);
  CHECK(!fs::exists(dest + "-wal"));  // still standalone after being read

  daemon->kill(SIGTERM);
  CHECK(daemon->wait() == 0);
}

TEST_CASE("backup: an existing DEST is left untouched without --force and replaced with it") {
  TempDir dir;
  // The daemon's secrets in variables this shell lacks: backup needs none of them.
  auto cfg = write_file(dir.file("switchboard.toml"),
                        "[storage]\npath = \"" + dir.file("sb.db") + "\"\n" +
                            "[api]\ntokens_env = [\"SBTEST_BACKUP_UNSET_1\"]\n"
                            "[redis]\npassword_env = \"SBTEST_BACKUP_UNSET_2\"\n");
  small_database(dir);
  const std::string dest = write_file(dir.file("old.db"), "an older backup");
  auto refused = run_switchboard(dir, {"backup", "--config", cfg, dest});
  INFO(refused.output);
  CHECK(refused.status == 1);
  CHECK(refused.output ==
        "switchboard: " + dest + " exists; give --force to replace it (it is left as it is)\n");
  CHECK(file_text(dest) == "an older backup");
  CHECK(!fs::exists(dest + ".tmp"));

  auto forced = run_switchboard(dir, {"backup", "--config", cfg, "--force", dest});
  INFO(forced.output);
  CHECK(forced.status == 0);
  CHECK(forced.output.find("not a switchboard database") != std::string::npos);
  sb::storage::Db copy(dest, true);
  CHECK(scalar(copy, "SELECT x FROM t") == 42);
}

TEST_CASE("backup: a second backup to the same DEST while one runs stops and touches nothing") {
  TempDir dir;
  auto cfg = storage_only_config(dir);
  small_database(dir);
  const std::string dest = dir.file("b.db");
  // The running backup: its DEST.tmp, half written, under its flock.
  const std::string tmp = write_file(dest + ".tmp", "half of a copy");
  int held = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(held >= 0);
  REQUIRE(::flock(held, LOCK_EX | LOCK_NB) == 0);
  auto second = run_switchboard(dir, {"backup", "--config", cfg, dest});
  INFO(second.output);
  CHECK(second.status == 1);
  CHECK(second.output == "switchboard: backup of " + dir.file("sb.db") + " to " + dest +
                             " failed: another backup to " + dest + " is running (it holds " + tmp +
                             ")\n");
  CHECK(file_text(tmp) == "half of a copy");  // neither removed nor emptied
  CHECK(!fs::exists(dest));
  ::close(held);
  // Once it is gone, its leftover is replaced.
  auto next = run_switchboard(dir, {"backup", "--config", cfg, dest});
  INFO(next.output);
  CHECK(next.status == 0);
  CHECK(next.output.find("replacing " + tmp + ", left by an earlier backup") != std::string::npos);
  CHECK(!fs::exists(tmp));
  sb::storage::Db copy(dest, true);
  CHECK(scalar(copy, "SELECT x FROM t") == 42);
}

TEST_CASE("backup: no database, a missing directory or the live database as DEST is exit 1") {
  TempDir dir;
  auto cfg = storage_only_config(dir);
  auto none = run_switchboard(dir, {"backup", "--config", cfg, dir.file("copy.db")});
  CHECK(none.status == 1);
  CHECK(none.output == "switchboard: no database at " + dir.file("sb.db") +
                           " (storage.path): nothing to back up\n");
  CHECK(!fs::exists(dir.file("sb.db")));  // and none was created
  CHECK(!fs::exists(dir.file("copy.db")));

  { sb::storage::Db db(dir.file("sb.db")); }
  auto missing = run_switchboard(dir, {"backup", "--config", cfg, dir.file("no/such/dir/copy.db")});
  CHECK(missing.status == 1);
  CHECK(missing.output == "switchboard: the directory of " + dir.file("no/such/dir/copy.db") +
                              " (" + dir.file("no/such/dir") + ") does not exist\n");
  CHECK(!fs::exists(dir.file("no")));

  for (const auto& live : {dir.file("sb.db"), dir.path() + "/./sb.db"}) {
    auto self = run_switchboard(dir, {"backup", "--config", cfg, "--force", live});
    CHECK(self.status == 1);
    CHECK(self.output.find("is the live database (storage.path) or one of its files") !=
          std::string::npos);
  }
  CHECK(!fs::exists(dir.file("sb.db.tmp")));
}

TEST_CASE("backup: --help, no DEST, two DESTs and an unknown option") {
  TempDir dir;
  auto help = run_switchboard(dir, {"backup", "--help"});
  CHECK(help.status == 0);
  CHECK(help.output.starts_with("switchboard backup [--config PATH] [--force] DEST\n"));
  auto usage = run_switchboard(dir, {"--help"});
  CHECK(usage.output.find("switchboard backup [--config PATH] [--force] DEST") !=
        std::string::npos);

  auto none = run_switchboard(dir, {"backup"});
  CHECK(none.status == 2);
  CHECK(
      none.output.starts_with("switchboard: give the backup's file DEST\n\n"
                              "switchboard backup [--config PATH] [--force] DEST\n"));
  auto two = run_switchboard(dir, {"backup", "a.db", "b.db"});
  CHECK(two.status == 2);
  CHECK(two.output.starts_with("switchboard: give exactly one DEST\n"));
  auto unknown = run_switchboard(dir, {"backup", "--overwrite", "a.db"});
  CHECK(unknown.status == 2);
  CHECK(unknown.output.starts_with("switchboard: unknown option --overwrite\n"));
  // --force belongs to backup alone.
  auto other = run_switchboard(dir, {"customers", "show", "--force", "x"});
  CHECK(other.status == 2);
}

namespace backup_test {

// POST /v1/agent/claim for alice: the interaction id handed out ("" for 204).
std::string claim(HttpClient& c) {
  auto r = c.post_json("/v1/agent/claim", R"({"queue":"general","wait_ms":0})", "alice-token");
  REQUIRE((r.status == 200 || r.status == 204));
  if (r.status == 204) {
    return "";
  }
  return std::string(json::parse(r.body).at("interaction").at("id").as_string());
}

int ack(HttpClient& c, const std::string& id) {
  return c.post_json("/v1/agent/interactions/" + id + "/ack", "", "alice-token").status;
}

// The README's command: every key of the prefix "sb" goes.
void clear_prefix(const TempDir& dir, RedisServer& redis) {
  auto cli = "redis-cli -p " + std::to_string(redis.port());
  Process p({"/bin/sh", "-c",
             cli + " --scan --pattern 'sb:*' | xargs -r -d '\\n' " + cli + " unlink >/dev/null"},
            dir.file("clear.log"));
  REQUIRE(p.wait() == 0);
}

}  // namespace backup_test

TEST_CASE("backup: the README's restore procedure, end to end with Redis ahead of the database") {
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  auto cfg = daemon_config(dir, port, redis.port());
  auto daemon = daemon_process(dir, cfg);
  REQUIRE(eventually([&] { return healthy(port); }));
  HttpClient c(port);
  const std::string stream = "sb:q:general:normal";

  // Before the backup: a1 finished, a2 claimed (held by alice), a3 and a4 waiting.
  std::vector<std::string> a;
  for (int i = 1; i <= 4; ++i) {
    a.push_back(ingest(c, "a" + std::to_string(i)));
  }
  REQUIRE(eventually([&] { return redis.xlen(stream) == 4; }));
  REQUIRE(claim(c) == a[0]);
  REQUIRE(ack(c, a[0]) == 200);
  REQUIRE(claim(c) == a[1]);  // held by alice as the backup is taken
  // The claim's record is committed shortly after its answer: wait for it to be in the database.
  REQUIRE(eventually([&] {
    sb::storage::Db db(dir.file("sb.db"), true);
    return scalar(db, "SELECT count(*) FROM interactions WHERE state = 'claimed'") == 1 &&
           scalar(db, "SELECT count(*) FROM outbox") == 0;
  }));

  const std::string backup = dir.file("backup.db");
  auto out = run_switchboard(dir, {"backup", "--config", cfg, backup});
  INFO(out.output);
  REQUIRE(out.status == 0);

  // After it: a3 is finished and b1..b3 arrive. The database will forget all of that; Redis
  // would not, and its projection mark runs ahead of the restored database's.
  REQUIRE(claim(c) == a[2]);
  REQUIRE(ack(c, a[2]) == 200);
  std::set<std::string> after;
  for (int i = 1; i <= 3; ++i) {
    after.insert(ingest(c, "b" + std::to_string(i)));
  }
  REQUIRE(eventually([&] { return redis.xlen(stream) == 5; }));  // a2 a4 b1 b2 b3
  daemon->kill(SIGTERM);
  REQUIRE(daemon->wait() == 0);

  // The procedure: the daemon is stopped; the backup goes to storage.path, the -wal and -shm of
  // the database it replaces go; every key of the Redis prefix goes.
  const std::string live = dir.file("sb.db");
  fs::copy_file(backup, live, fs::copy_options::overwrite_existing);
  fs::remove(live + "-wal");
  fs::remove(live + "-shm");
  clear_prefix(dir, redis);
  REQUIRE(redis.cmd({"DBSIZE"}) == "0");

  daemon = daemon_process(dir, cfg);
  REQUIRE(eventually([&] { return healthy(port); }));
  HttpClient c2(port);
  // The relay finds Redis without a mark and queues the open interactions of the restored
  // database again, each once: a2 (claimed at the backup: its claim is gone), a3 (finished after
  // the backup, which the database no longer knows), a4. None of what arrived after the backup.
  std::set<std::string> open = {a[1], a[2], a[3]};
  REQUIRE(eventually([&] { return stream_ids(redis, stream) == open; }));
  CHECK(redis.xlen(stream) == 3);
  // New work is projected: no mark ahead of the database's holds it back.
  auto fresh = ingest(c2, "c1");
  open.insert(fresh);
  REQUIRE(eventually([&] { return redis.xlen(stream) == 4; }));
  CHECK(stream_ids(redis, stream) == open);
  // Agents get the restored database's interactions only, and finish them.
  std::set<std::string> claimed;
  for (int i = 0; i < 4; ++i) {
    auto id = claim(c2);
    REQUIRE(!id.empty());
    CHECK(after.count(id) == 0);
    claimed.insert(id);
    CHECK(ack(c2, id) == 200);
  }
  CHECK(claimed == open);
  CHECK(claim(c2).empty());
  {
    sb::storage::Db db(live, true);
    CHECK(eventually([&] {
      return scalar(db, "SELECT count(*) FROM interactions WHERE state IN ('queued', 'claimed')") ==
             0;
    }));
    for (const auto& id : after) {
      auto st = db.prepare("SELECT count(*) FROM interactions WHERE id = ?1");
      st.bind(1, id);
      st.step();
      CHECK(st.int64(0) == 0);
    }
  }
  daemon->kill(SIGTERM);
  CHECK(daemon->wait() == 0);
}

TEST_CASE(
    "backup: a backup restored without clearing Redis is named in the log at start-up and holds "
    "the relay") {
  TempDir dir;
  RedisServer redis;
  auto port = free_port();
  auto cfg = daemon_config(dir, port, redis.port());
  auto daemon = daemon_process(dir, cfg);
  REQUIRE(eventually([&] { return healthy(port); }));
  const std::string stream = "sb:q:general:normal";
  {
    HttpClient c(port);
    ingest(c, "a1");
    REQUIRE(eventually([&] { return redis.xlen(stream) == 1; }));
    auto out = run_switchboard(dir, {"backup", "--config", cfg, dir.file("backup.db")});
    REQUIRE(out.status == 0);
    ingest(c, "b1");
    ingest(c, "b2");
    REQUIRE(eventually([&] { return redis.xlen(stream) == 3; }));
  }
  daemon->kill(SIGTERM);
  REQUIRE(daemon->wait() == 0);
  const std::string log = dir.file("daemon.log");
  const std::string said = "past the last outbox seq this database ever handed out";
  REQUIRE(file_text(log).find(said) == std::string::npos);  // not by the daemon that ran ahead

  // The database restored, Redis left as it was: its mark is 3, the database handed out 1.
  fs::copy_file(dir.file("backup.db"), dir.file("sb.db"), fs::copy_options::overwrite_existing);
  fs::remove(dir.file("sb.db-wal"));
  fs::remove(dir.file("sb.db-shm"));
  daemon = daemon_process(dir, cfg);
  REQUIRE(eventually([&] { return healthy(port); }));
  CHECK(eventually([&] {
    auto text = file_text(log);
    return text.find("[redis 127.0.0.1:" + std::to_string(redis.port()) +
                     "] its projection mark sb:projected is 3, " + said + " (1)") !=
               std::string::npos &&
           text.find("(README: Backup and restore)") != std::string::npos;
  }));
  // And held: nothing more is added to Redis, and /readyz says why.
  CHECK(HttpClient(port).request("GET", "/readyz").status == 503);
  CHECK(HttpClient(port).request("GET", "/readyz").body.find("redis_ahead") != std::string::npos);
  CHECK(redis.xlen(stream) == 3);
  // Said once, not at every connection or idle check: the daemon's Redis connections are cut
  // (Redis keeps its data and its mark), and the relay connects again and looks again.
  auto clients = [&] {
    auto list = redis.cmd({"CLIENT", "LIST"});
    return std::count(list.begin(), list.end(), '\n');
  };
  REQUIRE(clients() >= 2);  // ours and the daemon's
  redis.cmd({"CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"});
  REQUIRE(eventually([&] { return clients() >= 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  daemon->kill(SIGTERM);
  CHECK(daemon->wait() == 0);
  auto text = file_text(log);
  CHECK(text.find(said) == text.rfind(said));
}
