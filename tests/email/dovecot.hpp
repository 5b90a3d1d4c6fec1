#pragma once
// A real Dovecot for tests: started unprivileged on free loopback ports with a passwd-file user
// and a Maildir, stopped (and its directory removed) by the destructor.
//
// Privileges: when the tests run as root (CI), Dovecot and doveadm are exec'ed through
// `setpriv --reuid=65534 --regid=65534 --clear-groups` so everything runs as `nobody`; a
// non-root Dovecot cannot switch users, so default_internal_user, default_login_user and the
// userdb uid are all that one account, and login/anvil/stats chroots are disabled.
#include <sys/types.h>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

// A TCP connect to 127.0.0.1:port succeeds.
bool port_open(std::uint16_t port);

class Dovecot {
 public:
  // `extra_conf`: more dovecot.conf lines (e.g. an imap_capability without IDLE).
  explicit Dovecot(std::string extra_conf = "");
  ~Dovecot();
  Dovecot(const Dovecot&) = delete;
  Dovecot& operator=(const Dovecot&) = delete;

  std::uint16_t imap_port() const { return imap_port_; }      // plain, offers STARTTLS
  std::uint16_t imaps_port() const { return imaps_port_; }    // implicit TLS
  std::string ca_file() const { return dir_ + "/cert.pem"; }  // self-signed, SAN DNS:localhost
  static constexpr const char* user = "alice";
  static constexpr const char* password = "s3cret pass\"word";

  // Stops the server (SIGTERM, waits) and starts it again on the same ports and Maildir.
  void restart();
  // SIGKILL to the master and every process it started (imap, imap-login, auth, ...), found by
  // parent pid in /proc: connections die mid-response with no BYE. Then starts it again.
  // `while_down` runs after the kill, before the new start.
  void kill_and_restart(const std::function<void()>& while_down = {});
  // The two halves of kill_and_restart, for a test that does more while Dovecot is down than
  // fits in a callback: kill() leaves it down, start_again() starts it on the same Maildir.
  void kill();
  void start_again();
  void deliver(const std::string& raw, const std::string& mailbox = "INBOX");
  // IMAP APPEND over a plain connection as the user, with INTERNALDATE `date` (RFC 3501
  // date-time: "02-Nov-2026 10:00:00 +0000"): mail that arrived back then, as far as SEARCH
  // SINCE and INTERNALDATE tell.
  void append(const std::string& raw, const std::string& date,
              const std::string& mailbox = "INBOX");
  // Many messages at once, written straight into the Maildir's new/ (one doveadm call per
  // message would take minutes for thousands); Dovecot assigns UIDs when it next looks.
  void deliver_many(const std::vector<std::string>& raws);
  // Closes every IMAP connection of the user (doveadm kick): a dropped connection.
  void kick();
  void set_uidvalidity(std::uint32_t v, const std::string& mailbox = "INBOX");
  std::string doveadm(const std::string& args);  // runs doveadm as the Dovecot user, returns stdout

 private:
  void start();
  void stop();
  void launch();  // fork/exec the master and wait for both listeners
  std::string run_as_prefix() const;
  std::string extra_conf_;
  std::string dir_;
  std::uint16_t imap_port_ = 0;
  std::uint16_t imaps_port_ = 0;
  pid_t pid_ = -1;
};
