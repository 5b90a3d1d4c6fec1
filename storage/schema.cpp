#include "storage/schema.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "core/log.hpp"
#include "storage/idn_emails.hpp"
#include "storage/padded_identities.hpp"

namespace sb::storage {
namespace {

// One upgrade step: SQL, or C++ where SQL cannot say it (the identity rules of routing/). Either
// runs inside migrate()'s transaction, so a failure or a crash leaves the old version.
struct Migration {
  Migration(const char* sql) : sql(sql) {}      // NOLINT: a plain SQL step, as most are
  Migration(void (*step)(Db&)) : step(step) {}  // NOLINT
  const char* sql = nullptr;
  void (*step)(Db&) = nullptr;
};

// Each entry upgrades version i to i+1. Never edit a released entry: add a new one.
const std::vector<Migration> kMigrations = {
    // 0 -> 1: the spine.
    R"sql(
CREATE TABLE customers(
  id TEXT PRIMARY KEY,
  external_id TEXT UNIQUE,
  name TEXT NOT NULL DEFAULT '',
  tier TEXT NOT NULL DEFAULT '',
  tags TEXT NOT NULL DEFAULT '[]',       -- JSON array of strings
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- (type, canonical value) is the primary key: two customers sharing an identity is impossible.
CREATE TABLE identities(
  type TEXT NOT NULL,
  value TEXT NOT NULL,
  customer_id TEXT NOT NULL,
  handle TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(type, value)
) WITHOUT ROWID;
CREATE INDEX identities_by_customer ON identities(customer_id);

CREATE TABLE conversations(
  id TEXT PRIMARY KEY,
  customer_id TEXT,
  channel TEXT NOT NULL,
  account TEXT NOT NULL,
  subject TEXT NOT NULL DEFAULT '',
  queue TEXT NOT NULL DEFAULT '',        -- where it was last routed: sticky routing
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Opaque threading keys ("api:web-form:order-7", "email:support:<id@host>") -> conversation.
CREATE TABLE conversation_keys(
  key TEXT PRIMARY KEY,
  conversation_id TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE interactions(
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  channel TEXT NOT NULL,
  account TEXT NOT NULL,
  external_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  direction TEXT NOT NULL,
  conversation_id TEXT,
  customer_id TEXT,
  queue TEXT NOT NULL DEFAULT '',
  priority TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT 'stored',  -- stored | queued | claimed | done | dead | pending_call
  order_key INTEGER NOT NULL DEFAULT 0,  -- calls: order of the last folded event
  occurred_at INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  payload TEXT NOT NULL,                 -- the interaction JSON of SPEC section 5
  UNIQUE(channel, account, external_id)  -- dedupe
);
CREATE INDEX interactions_by_customer ON interactions(customer_id, id);
CREATE INDEX interactions_by_conversation ON interactions(conversation_id, id);

-- What happened to an interaction after it arrived: claims, replies, transfers, finishes.
CREATE TABLE events(
  seq INTEGER PRIMARY KEY,
  interaction_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  type TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_by_interaction ON events(interaction_id, seq);

-- Written in the interaction's transaction; the relay projects each row into Redis once
-- (DESIGN-NOTES invariant 3). op_id keys the idempotency marker in Redis.
CREATE TABLE outbox(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the relay keeps a watermark
  op_id TEXT NOT NULL UNIQUE,
  interaction_id TEXT NOT NULL,
  queue TEXT NOT NULL,
  priority TEXT NOT NULL,
  created_at INTEGER NOT NULL
);

-- Poller positions, advanced in the same transaction as the data they cover (invariant 2).
CREATE TABLE cursors(
  account TEXT NOT NULL,
  scope TEXT NOT NULL,
  value TEXT NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY(account, scope)
) WITHOUT ROWID;
)sql",
    // 1 -> 2: agent replies (issue 3). One row per outbound interaction handed to a channel
    // Sender: the durable outbound queue, written in the reply's transaction.
    R"sql(
CREATE TABLE sends(
  interaction_id TEXT PRIMARY KEY,       -- the outbound interaction
  parent_id TEXT NOT NULL,               -- the interaction being answered
  channel TEXT NOT NULL,
  account TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending', -- pending | sent | failed
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,      -- Unix ms
  last_error TEXT NOT NULL DEFAULT '',
  provider_id TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sends_due ON sends(state, next_attempt_at);
)sql",
    // 2 -> 3: provider reports on sent messages (WhatsApp statuses[]) find their send by the
    // provider's message id.
    R"sql(
CREATE INDEX sends_by_provider ON sends(channel, account, provider_id);
)sql",
    // 3 -> 4: attachment bytes a channel kept (email, within its caps), for agents to fetch.
    R"sql(
CREATE TABLE attachments(
  interaction_id TEXT NOT NULL,
  idx INTEGER NOT NULL,                  -- position in the interaction's "attachments" list
  filename TEXT NOT NULL,
  content_type TEXT NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY(interaction_id, idx)
) WITHOUT ROWID;
)sql",
    // 4 -> 5: the outbox without op_id. It always equalled interaction_id, and its UNIQUE index
    // cost an index insert, a conflict check and an index delete per interaction. The table
    // only holds rows not yet in Redis, so the copy is small; AUTOINCREMENT stays (the relay's
    // watermark needs seq never reused).
    R"sql(
CREATE TABLE outbox_v5(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  interaction_id TEXT NOT NULL,          -- also keys the relay's once-only marker in Redis
  queue TEXT NOT NULL,
  priority TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
INSERT INTO outbox_v5(seq, interaction_id, queue, priority, created_at)
  SELECT seq, interaction_id, queue, priority, created_at FROM outbox ORDER BY seq;
DROP TABLE outbox;
ALTER TABLE outbox_v5 RENAME TO outbox;
)sql",
    // 5 -> 6: customers.external_id unique only where it is set. Version 1's UNIQUE constraint
    // indexed every customer, and the customers an interaction creates have none: one more
    // B-tree insert per new customer, and pages of NULL entries rewritten into the WAL by every
    // commit that adds one (2 of a commit's 49 pages under bench_ingest). SQLite cannot drop a
    // constraint, so the table is copied; the partial index serves `external_id = ?`.
    R"sql(
CREATE TABLE customers_v6(
  id TEXT PRIMARY KEY,
  external_id TEXT,
  name TEXT NOT NULL DEFAULT '',
  tier TEXT NOT NULL DEFAULT '',
  tags TEXT NOT NULL DEFAULT '[]',       -- JSON array of strings
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO customers_v6(id, external_id, name, tier, tags, created_at, updated_at)
  SELECT id, external_id, name, tier, tags, created_at, updated_at FROM customers ORDER BY id;
DROP TABLE customers;
ALTER TABLE customers_v6 RENAME TO customers;
CREATE UNIQUE INDEX customers_by_external_id ON customers(external_id)
  WHERE external_id IS NOT NULL;
)sql",
    // 6 -> 7: call_lines, the numbers that were our side of a call (per account): they tell
    // the direction of call events that do not state it (storage/call_parties.hpp). Seeded
    // from the calls stored so far whose "to" is surely ours: the first event stated the
    // direction (the top-level "direction" is the first event's, and agrees with the call's).
    // An unreadable payload is passed over, never a failed upgrade.
    R"sql(
CREATE TABLE call_lines(
  account TEXT NOT NULL,
  type TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(account, type, value)
) WITHOUT ROWID;
INSERT OR IGNORE INTO call_lines(account, type, value)
  SELECT account, json_extract(p, '$.to[0].type'), json_extract(p, '$.to[0].value')
  FROM (SELECT account, CASE WHEN json_valid(payload) THEN payload END AS p
        FROM interactions WHERE channel = 'voice' AND kind = 'call')
  WHERE json_extract(p, '$.to[0].type') IS NOT NULL
    AND json_extract(p, '$.to[0].value') IS NOT NULL
    AND json_extract(p, '$.call.direction') <> ''
    AND json_extract(p, '$.call.direction') = json_extract(p, '$.direction');
)sql",
    // 7 -> 8: the 4-hour sweep (storage/call_sweep.cpp) runs on the writer every minute and
    // read the whole interactions table to find the few calls still waiting for a final event:
    // seconds of a stalled writer with a few million rows. A partial index holds only those
    // calls, so every other row costs nothing more than evaluating its WHERE.
    R"sql(
CREATE INDEX interactions_pending_calls ON interactions(received_at)
  WHERE state = 'pending_call';
)sql",
    // 8 -> 9: `customers import` of a username (x_handle "annlee") looks for the X, Telegram or
    // Instagram user who wrote under it (x 2244994999 from "AnnLee"), by the handle stored
    // beside the id: without an index, a scan of all that platform's identities per line. The
    // key is username_key() of routing/identity_links.hpp; only those three types are indexed,
    // so e-mail and phone identities, most of them, cost no more to insert. The planner does
    // not pick this index on its own (it prefers the primary key's `type = ?`), so the
    // import's query names it (storage/customers.cpp).
    R"sql(
CREATE INDEX identities_by_username ON identities(type, lower(ltrim(handle, '@')))
  WHERE type IN ('x', 'telegram', 'instagram');
)sql",
    // 9 -> 10: replies made idempotent. An agent's client that lost a reply's 202 (a timeout, a
    // proxy reset) retries with the same Idempotency-Key header; the send row keeps the key with
    // the agent who replied, and the unique index makes a second outbound interaction for the
    // same (parent, agent, key) impossible, even for two attempts in one group commit. Rows
    // written before keep NULL in both: they had no key, and NULL keys never collide.
    R"sql(
ALTER TABLE sends ADD COLUMN agent TEXT;
ALTER TABLE sends ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX sends_by_idempotency_key ON sends(parent_id, agent, idempotency_key)
  WHERE idempotency_key IS NOT NULL;
)sql",
    // 10 -> 11: reply keys expire after 24 hours (agents/reply_keys.hpp). A sweep clears the
    // keys of older replies in small batches, oldest first; this partial index holds only the
    // rows that still have a key, so a batch reads just the rows it clears.
    R"sql(
CREATE INDEX sends_keys_by_age ON sends(created_at) WHERE idempotency_key IS NOT NULL;
)sql",
    // 11 -> 12: a send remembers that one of its attempts had an unknown outcome (the request
    // went out, no answer came): the reply may be out already, which a later attempt's answer
    // can confirm (X refuses a repeat as duplicate content; channels/social/senders.cpp).
    R"sql(
ALTER TABLE sends ADD COLUMN maybe_sent INTEGER NOT NULL DEFAULT 0;
)sql",
    // 12 -> 13: re-projection after Redis loses data (relay/reproject.cpp). An outbox row is
    // deleted once Redis has its entry; queued_seq keeps that row's seq on the interaction (the
    // order the relay projected it in), so that the open interactions Redis lost can be found
    // and added again in their order. The index only ever grows at its end (seqs are handed
    // out in order) and leaves out the rows never queued. relay_state.projected is the highest
    // outbox seq deleted after Redis took it: Redis's own mark ({prefix}:projected) below it
    // means Redis lost entries. Seeded so that every outbox seq above it still exists (the
    // relay counts the backlog by seq, relay.cpp): the start of the last unbroken run of rows,
    // or the last seq handed out when the outbox is empty or ends before it. Interactions
    // queued before this version have no queued_seq and are not re-projected.
    R"sql(
ALTER TABLE interactions ADD COLUMN queued_seq INTEGER;
CREATE INDEX interactions_by_queued_seq ON interactions(queued_seq)
  WHERE queued_seq IS NOT NULL;
CREATE TABLE relay_state(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  projected INTEGER NOT NULL
);
INSERT INTO relay_state(id, projected) SELECT 1, CASE
  WHEN coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0) >
       coalesce((SELECT max(seq) FROM outbox), 0)
    THEN (SELECT seq FROM sqlite_sequence WHERE name = 'outbox')
  ELSE coalesce((SELECT max(o.seq) - 1 FROM outbox o
                 WHERE NOT EXISTS (SELECT 1 FROM outbox p WHERE p.seq = o.seq - 1)), 0)
  END;
)sql",
    // 13 -> 14: customers that exist only because a call nothing told the direction of was
    // taken for inbound (storage/call_parties.hpp, rule 4): its `from` may have been our own
    // line. Rule 3 (customer records tell the direction) does not count them, or a PBX account
    // whose first call was outbound took every later caller's call for an outbound call to our
    // line. A call that states its direction names them firmly (the row goes); a CRM import
    // that adopts one gives it an external_id, which counts too. Seeded with the message-made
    // customers with a phone whose every interaction is such a call (stored without
    // call.direction); an unreadable payload counts as a firm one.
    R"sql(
CREATE TABLE guessed_customers(
  customer_id TEXT PRIMARY KEY
) WITHOUT ROWID;
INSERT OR IGNORE INTO guessed_customers(customer_id)
  SELECT c.id FROM identities p JOIN customers c ON c.id = p.customer_id
  WHERE p.type = 'phone' AND c.external_id IS NULL
    AND EXISTS (SELECT 1 FROM interactions i WHERE i.customer_id = c.id)
    AND NOT EXISTS (
      SELECT 1 FROM interactions i WHERE i.customer_id = c.id
        AND NOT (i.channel = 'voice' AND i.kind = 'call' AND
                 CASE WHEN json_valid(i.payload)
                      THEN json_type(i.payload, '$.call.direction') IS NULL ELSE 0 END));
)sql",
    // 14 -> 15: the release of held calls (storage/call_sweep.cpp, every 10 s on the writer)
    // looked for them among all pending calls and parsed each one's payload to see whether it
    // had ended: a call stays pending up to 4 hours without a final event (a Twilio number with
    // no StatusCallback), so at 10 calls/s that was ~144k payloads a tick. `held` marks a
    // pending call that has ended (final status, held back until its direction is known) and a
    // partial index holds only those. Set for the held calls stored so far.
    R"sql(
ALTER TABLE interactions ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
UPDATE interactions SET held = 1
  WHERE state = 'pending_call'
    AND json_extract(CASE WHEN json_valid(payload) THEN payload END, '$.call.status')
        IN ('completed', 'busy', 'no-answer', 'failed', 'canceled', 'voicemail', 'unknown');
CREATE INDEX interactions_held_calls ON interactions(received_at)
  WHERE state = 'pending_call' AND held = 1;
)sql",
    // 15 -> 16: a provider's report on a sent message (WhatsApp statuses[]) is one timeline
    // event, however often it is delivered: Meta delivers webhooks at least once, and every
    // retry added the same "delivered" again. The key is (interaction, time, detail), detail
    // holding the status and the provider's error; the index covers provider_status events only,
    // so claims, replies and the rest cost nothing more. Copies stored before are removed first
    // (the oldest row of each stays), or the index could not be built.
    R"sql(
DELETE FROM events WHERE type = 'provider_status' AND seq NOT IN (
  SELECT min(seq) FROM events WHERE type = 'provider_status' GROUP BY interaction_id, at, detail);
CREATE UNIQUE INDEX events_provider_status ON events(interaction_id, at, detail)
  WHERE type = 'provider_status';
)sql",
    // 16 -> 17: the username index of version 9 again, its condition written as ORs. SQLite
    // evaluates a partial index's WHERE on every insert into the table, and an IN list of more
    // than two constants is coded as a temporary B-tree, opened, filled and closed each time: for
    // every identity inserted (each new customer's e-mail or phone too), about 9,000 instructions,
    // 8% of the single writer's under bench_writer (callgrind). Comparisons cost a few dozen.
    // The queries that name the index carry the same condition (storage/customers.cpp), which
    // SQLite needs to see, term for term, before it uses a partial index.
    R"sql(
DROP INDEX identities_by_username;
CREATE INDEX identities_by_username ON identities(type, lower(ltrim(handle, '@')))
  WHERE type = 'x' OR type = 'telegram' OR type = 'instagram';
)sql",
    // 17 -> 18: the re-projection's index holds the open interactions only. After a total loss
    // (FLUSHALL, mark 0) the relay read every interaction ever queued, finished ones included,
    // in seq order before it delivered anything new: with millions of rows, minutes of no
    // deliveries. Now it reads the open ones, which it sends anyway (relay/reproject.cpp). The
    // price: a claim, release, finish or dead letter changes the indexed `state`, so it deletes
    // (and, staying open, inserts again) one entry of this small index. Ingest costs what it
    // did: one entry per queued interaction, none for one stored unqueued. Open interactions
    // queued before version 13 (no queued_seq) are in it under NULL.
    R"sql(
DROP INDEX interactions_by_queued_seq;
CREATE INDEX interactions_by_queued_seq ON interactions(queued_seq)
  WHERE state IN ('queued', 'claimed');
)sql",
    // 18 -> 19: an email's content hash (Inbound::content_hash), kept with its row so that a
    // message under a Message-ID already stored can be told from the one stored: the same
    // message fetched again dedupes, another one is stored as well. No index: it is read only
    // from the row the dedupe lookup finds by (channel, account, external_id). Rows stored
    // before keep NULL, which matches any content (Store::submit): as before, no message they
    // were stored for is ever stored again.
    R"sql(
ALTER TABLE interactions ADD COLUMN content_hash TEXT;
)sql",
    // 19 -> 20: a customer that anything but a guessed call names is firm, as the seed of 14
    // counted it; the daemon took the mark off for a call that states its direction only, not
    // when a guessed caller wrote since (on WhatsApp, through the ingest API) nor when a later
    // event stated the direction of the very call that made it. It does now (storage/store.cpp),
    // but looks for a mark only where one can be (a message matched through a phone number):
    // a caller who wrote on WhatsApp before is matched by that identity now, so the marks that
    // the seed would not have set go here.
    R"sql(
DELETE FROM guessed_customers WHERE EXISTS (
  SELECT 1 FROM interactions i WHERE i.customer_id = guessed_customers.customer_id
    AND NOT (i.channel = 'voice' AND i.kind = 'call' AND
             CASE WHEN json_valid(i.payload)
                  THEN json_type(i.payload, '$.call.direction') IS NULL ELSE 0 END));
)sql",
    // 20 -> 21: identities stored before canonicalisation trimmed invisible padding (NBSP,
    // zero-width characters, BOM) off both ends: trimmed by the canonicaliser's own function,
    // or, where the trimmed form names another customer or nothing, left and reported
    // (storage/padded_identities.hpp). Only the identities table holds canonical values for
    // lookup that padding could reach: e-mail was the one canonical form that kept non-ASCII
    // characters; phone and WhatsApp numbers (call_lines too) are '+' and digits, and user ids,
    // usernames and Mastodon addresses never allowed a non-ASCII character. The `handle` beside
    // a user id is the name as it was sent (the username index compares its username_key,
    // which a padded one never equals, as before). Conversation keys name a customer by its id,
    // and a payload's `from` is the record of what arrived, not a lookup key (a call's `from`
    // is a phone number).
    trim_padded_identities,
    // 21 -> 22: an attempt of a sender that takes no idempotency key (Telegram, Meta, X) is
    // marked as started, with its wall-clock time, in a commit before its request goes out; the
    // attempt's result clears the mark. A pending send found with the mark (after kill -9, or a
    // stop whose drain ended first) had its request out and no answer learned: it is settled as
    // an unknown outcome, not handed over again (agents/send_loop.cpp). `account_paused`: the
    // row waits for a pause of its whole account (X's 24-hour posting limit, up to a day), which
    // the send loop's clock-step cap must leave alone.
    R"sql(
ALTER TABLE sends ADD COLUMN attempt_started_at INTEGER;
ALTER TABLE sends ADD COLUMN account_paused INTEGER NOT NULL DEFAULT 0;
)sql",
    // 22 -> 23: the customer timeline is ordered by when each interaction happened, its
    // occurred_at clamped at its arrival (storage/customers.cpp), no longer by id: an IMAP first
    // sync, a retried webhook or an import of old messages arrives after newer ones. The index
    // keeps each customer's interactions in that order, so that a page is read from it rather
    // than from a sort of all of them. It still serves the lookups by customer_id alone
    // (drop_if_orphan in storage/store.cpp).
    R"sql(
DROP INDEX interactions_by_customer;
CREATE INDEX interactions_by_customer
  ON interactions(customer_id, min(occurred_at, received_at), id);
)sql",
    // 23 -> 24: when the first attempt of a send whose outcome was unknown started (Unix ms,
    // its attempt_started_at, kept when the result clears the mark). Mastodon keeps an
    // Idempotency-Key for an hour from that request: a repeat is safe only inside it, however
    // old the reply itself is (channels/social/senders.cpp).
    R"sql(
ALTER TABLE sends ADD COLUMN uncertain_since INTEGER;
)sql",
    // 24 -> 25: the id a reply goes out with, fixed when it is stored (Sender::planned_id; the
    // email Message-ID): every attempt and every later reply naming it read it from here, not
    // from the account's config of the day, which an operator may have changed ('': rows
    // stored before, and channels that fix none).
    R"sql(
ALTER TABLE sends ADD COLUMN planned_id TEXT NOT NULL DEFAULT '';
)sql",
    // 25 -> 26: an e-mail identity's internationalised domain takes its ASCII (xn--) form, as
    // canonicalize now writes every address, from a file, the ingest API or a mail: rows
    // stored with a Unicode domain are rewritten, or, where the new form names another
    // customer or none exists, left and reported (storage/idn_emails.hpp).
    ascii_email_domains,
    // 26 -> 27: a copy of our own reply read back from a polled mailbox (Sent Items, All Mail,
    // a Bcc) is found by its Message-ID (Store::sent_here), one lookup per such message: an
    // initial sync of a Sent folder reads thousands.
    R"sql(
CREATE INDEX sends_by_planned_id ON sends(planned_id) WHERE planned_id != '';
)sql",
    // 27 -> 28: the 4-hour sweep counts from a call's last event (last_event_at, Unix ms), not
    // its first (received_at): Twilio's and Telnyx's default call time limit is 4 hours too, so a
    // call that ran to the limit was closed as `unknown` seconds before its `completed` came. The
    // sweep's partial index follows the column; calls pending at the upgrade start from their
    // first event, as before.
    R"sql(
ALTER TABLE interactions ADD COLUMN last_event_at INTEGER NOT NULL DEFAULT 0;
UPDATE interactions SET last_event_at = received_at WHERE state = 'pending_call';
DROP INDEX interactions_pending_calls;
CREATE INDEX interactions_pending_calls ON interactions(last_event_at)
  WHERE state = 'pending_call';
)sql",
    // 28 -> 29: an interaction finished and then put back to work (a reply to it failed after
    // its ack: agents/records.cpp, Records::send_result) enters its queue again, through the
    // outbox like the first time. Each such round is a projection of its own: the relay's
    // once-only marker is {prefix}:relayed:{id} for round 0 and {prefix}:relayed:{id}:{round}
    // after, so that a first round's marker Redis still keeps (its unlink waits for a full
    // checkpoint, or never came: a crash) does not skip the new entry, while the relay's own
    // re-sends of a row (requeue, re-projection) keep the round's marker and add nothing twice.
    R"sql(
ALTER TABLE interactions ADD COLUMN queue_round INTEGER NOT NULL DEFAULT 0;
)sql",
    // 29 -> 30: the database's own random id (relay/guard.cpp). Redis keeps the id of the
    // database it projects ({prefix}:db): another database on the same prefix (a staging file
    // next to production's) is told apart by it, and its relay holds instead of mixing its
    // entries into the other's queues. A backup keeps the id: a restored file is the same
    // database, older, which the projection mark tells.
    R"sql(
ALTER TABLE relay_state ADD COLUMN db_id TEXT NOT NULL DEFAULT '';
UPDATE relay_state SET db_id = lower(hex(randomblob(16)));
)sql",
};

std::string newer_schema_message(const Db& db, int v) {
  return "database " + db.path() + " has schema version " + std::to_string(v) +
         ", newer than this switchboard understands (" + std::to_string(current_schema_version()) +
         "); use a newer switchboard binary or another database file";
}

int read_version(Db& db) {
  db.exec("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)");
  auto st = db.prepare("SELECT version FROM schema_version");
  if (st.step()) {
    return static_cast<int>(st.int64(0));
  }
  st.reset();
  db.exec("INSERT INTO schema_version(version) VALUES (0)");
  return 0;
}

}  // namespace

int current_schema_version() {
  return static_cast<int>(kMigrations.size());
}

void require_current_schema(Db& db) {
  // Read-only: the table may not exist (another application's SQLite file, or one the daemon
  // never migrated), and this reader must not create it as read_version does.
  auto has_table = db.prepare(
      "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'schema_version'");
  has_table.step();
  int v = 0;
  if (has_table.int64(0) > 0) {
    auto st = db.prepare("SELECT version FROM schema_version");
    if (st.step()) {
      v = static_cast<int>(st.int64(0));
    }
  }
  if (v <= 0) {  // version 0: the row of a first migration that never committed its steps
    throw Error(0, db.path() + " is not a switchboard database (no schema version)");
  }
  if (v > current_schema_version()) {
    throw Error(0, newer_schema_message(db, v));
  }
  if (v < current_schema_version()) {
    throw Error(0, "database " + db.path() + " has schema version " + std::to_string(v) +
                       ", older than this switchboard's (" +
                       std::to_string(current_schema_version()) +
                       "); start the new daemon (`switchboard run` with this binary) first: "
                       "it upgrades the file when it starts (README: Upgrading)");
  }
}

void migrate(Db& db, int target) {
  // Under the write lock from the first read of the version: two processes that start on one
  // file after an upgrade (the daemon and a cron'd `customers import`) both read the old version
  // otherwise, and the second ran a step again ("table call_lines already exists").
  try {
    db.exec("BEGIN IMMEDIATE");
  } catch (const Error& e) {
    throw Error(e.code, database_error(db.path(), e.code, e.what()));
  }
  int v = 0;
  try {
    v = read_version(db);
    if (v > current_schema_version()) {
      throw Error(0, newer_schema_message(db, v));
    }
    const bool fresh = v == 0;  // a new file is simply created; an upgrade may take a while
    for (; v < std::min(target, current_schema_version()); ++v) {
      if (!fresh) {
        logger("storage")->info("[{}] upgrading the database schema from version {} to {}",
                                db.path(), v, v + 1);
      }
      try {
        const Migration& m = kMigrations[static_cast<std::size_t>(v)];
        if (m.step != nullptr) {
          m.step(db);
        } else {
          db.exec(m.sql);
        }
      } catch (const std::exception& e) {
        throw Error(0, "upgrading the schema of " + db.path() + " from version " +
                           std::to_string(v) + " to " + std::to_string(v + 1) + ": " + e.what());
      }
      db.exec("UPDATE schema_version SET version = " + std::to_string(v + 1));
    }
    db.exec("COMMIT");  // every step at once: a crash in the middle leaves the file as it was
  } catch (...) {
    db.exec("ROLLBACK");
    throw;
  }
}

}  // namespace sb::storage
