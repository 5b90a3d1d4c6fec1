// The data path of one interaction, top to bottom. Everything here runs on the writer thread,
// inside the group-committed transaction (storage/writer.cpp), so a request is answered only
// after the COMMIT that holds its rows.
#include "storage/store.hpp"

#include <algorithm>
#include <boost/json.hpp>

#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "routing/identity_links.hpp"
#include "storage/bounces.hpp"
#include "storage/call_parties.hpp"
#include "storage/call_payload.hpp"
#include "storage/customers.hpp"
#include "storage/interaction_json.hpp"
#include "storage/reply_failure.hpp"

namespace sb::storage {
namespace json = boost::json;

struct Store::Statements {
  explicit Statements(Db& db)
      : find_dup(db.prepare("SELECT id, order_key, payload, state, content_hash FROM interactions "
                            "WHERE channel=?1 AND account=?2 AND external_id=?3")),
        find_identity(
            db.prepare("SELECT customer_id, handle FROM identities WHERE type=?1 AND value=?2")),
        find_username_holders(db.prepare(kUsernameHoldersSql)),
        // A username row (x_handle "annlee", from a customer file or the ingest API) names its
        // customer only while that customer holds no user id of the platform (?3, "x"): once
        // one is known, the id is what names the person, and the username may since have been
        // renamed away and taken by a stranger (X recycles names), whom the row would merge
        // into the customer. identities_by_customer: a few rows per customer.
        find_username_row(db.prepare(
            "SELECT customer_id FROM identities i WHERE type=?1 AND value=?2 AND NOT EXISTS "
            "(SELECT 1 FROM identities o WHERE o.customer_id = i.customer_id AND o.type = ?3)")),
        set_handle(db.prepare("UPDATE identities SET handle=?3 WHERE type=?1 AND value=?2")),
        release_username(db.prepare(kReleaseUsernameSql)),
        // Rule 3 of storage/call_parties.hpp: a customer that a guessed call direction made
        // (table guessed_customers) and that the CRM has not named since does not count.
        is_guessed_customer(
            db.prepare("SELECT 1 FROM guessed_customers g JOIN customers c ON c.id = g.customer_id "
                       "WHERE g.customer_id = ?1 AND c.external_id IS NULL")),
        mark_guessed(
            db.prepare("INSERT OR IGNORE INTO guessed_customers(customer_id) VALUES (?1)")),
        unmark_guessed(db.prepare("DELETE FROM guessed_customers WHERE customer_id=?1")),
        get_customer(db.prepare("SELECT name, tier, tags FROM customers WHERE id=?1")),
        insert_customer(db.prepare(
            "INSERT INTO customers(id, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)")),
        insert_identity(
            db.prepare("INSERT OR IGNORE INTO identities(type, value, customer_id, handle) "
                       "VALUES (?1, ?2, ?3, ?4)")),
        // A recorded key only. No key names a conversation by its id: an id is no secret
        // (every email reply carries its own), and the key would let anyone into any thread.
        find_conv_key(
            db.prepare("SELECT c.id, c.queue FROM conversation_keys k JOIN conversations c "
                       "ON c.id = k.conversation_id WHERE k.key = ?1")),
        insert_conv(db.prepare(
            "INSERT INTO conversations(id, customer_id, channel, account, subject, queue, "
            "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?7, ?6, ?6)")),
        insert_conv_key(db.prepare(
            "INSERT OR IGNORE INTO conversation_keys(key, conversation_id) VALUES (?1, ?2)")),
        // The subject fallback: the conversation last given the key, if one of its messages
        // is from within the window around this one's time (by_conversation index).
        find_subject_conv(db.prepare(
            "SELECT c.id, c.queue FROM conversation_keys k JOIN conversations c "
            "ON c.id = k.conversation_id WHERE k.key = ?1 AND EXISTS (SELECT 1 FROM "
            "interactions i WHERE i.conversation_id = c.id AND i.occurred_at BETWEEN ?2 AND ?3 "
            "AND i.received_at BETWEEN ?4 AND ?5)")),
        set_conv_key(db.prepare(
            "INSERT OR REPLACE INTO conversation_keys(key, conversation_id) VALUES (?1, ?2)")),
        route_conv(db.prepare("UPDATE conversations SET queue=?2, updated_at=?3 WHERE id=?1")),
        insert_interaction(db.prepare(
            "INSERT INTO interactions(id, channel, account, external_id, kind, direction, "
            "conversation_id, customer_id, queue, priority, state, order_key, occurred_at, "
            "received_at, payload, queued_seq, held, content_hash, last_event_at) VALUES (?1, ?2, "
            "?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
            "CASE WHEN ?16 THEN last_insert_rowid() END, ?17, nullif(?18, ''), ?14)")),
        update_call(db.prepare(
            "UPDATE interactions SET queue=?2, priority=?3, state=?4, order_key=?5, payload=?6, "
            "queued_seq=CASE WHEN ?7 THEN last_insert_rowid() ELSE queued_seq END, held=?8, "
            "last_event_at=?9 WHERE id=?1")),
        insert_outbox(db.prepare("INSERT INTO outbox(interaction_id, queue, priority, created_at) "
                                 "VALUES (?1, ?2, ?3, ?4)")),
        upsert_cursor(db.prepare(
            "INSERT INTO cursors(account, scope, value, updated_at) VALUES (?1, ?2, ?3, ?4) "
            "ON CONFLICT(account, scope) DO UPDATE SET value=excluded.value, "
            "updated_at=excluded.updated_at")),
        insert_attachment(
            db.prepare("INSERT INTO attachments(interaction_id, idx, filename, content_type, data) "
                       "VALUES (?1, ?2, ?3, ?4, ?5)")) {
    auto any = db.prepare("SELECT EXISTS (SELECT 1 FROM guessed_customers)");
    maybe_guessed = any.step() && any.int64(0) != 0;
  }

  Stmt find_dup, find_identity, find_username_holders, find_username_row, set_handle,
      release_username, is_guessed_customer, mark_guessed, unmark_guessed, get_customer,
      insert_customer, insert_identity, find_conv_key, insert_conv, insert_conv_key,
      find_subject_conv, set_conv_key, route_conv, insert_interaction, update_call, insert_outbox,
      upsert_cursor, insert_attachment;
  // False while table guessed_customers is known to be empty (read once, set by every mark and
  // never cleared, so a rolled-back mark leaves it true): a message then takes no mark off.
  bool maybe_guessed = false;
};

namespace {

struct CustomerMatch {
  std::string id, name, tier;
  std::vector<std::string> tags;
  bool is_new = false;
  bool by_phone = false;  // found through a stored phone identity (Found::by_phone)
  // The sender's other identities (Inbound::also_from) that name another customer and were
  // left with it, for one log line: "" when none (always, for a single identity).
  std::string held_elsewhere{};
};

struct Conversation {
  std::string id;
  std::string queue;  // sticky queue, "" when never routed
  bool existing = false;
};

std::optional<std::string> lookup_identity(Store::Statements& st, std::string_view type,
                                           std::string_view value) {
  st.find_identity.bind_static(1, type).bind_static(2, value);
  std::optional<std::string> id;
  if (st.find_identity.step()) {
    id = st.find_identity.text(0);
  }
  st.find_identity.reset();
  return id;
}

// The customer of the user of platform `type` whose stored handle is `username`. There is one
// such user at most (match_customer moves a username to whoever last wrote under it), except
// in a database written before it did: users of several customers then carry it and nothing
// tells which holds it now, so none is taken (as the import refuses such a line).
std::optional<std::string> username_holder(Store::Statements& st, std::string_view type,
                                           const std::string& username) {
  st.find_username_holders.bind_static(1, type).bind_static(2, username);
  std::optional<std::string> id;
  bool several = false;
  while (st.find_username_holders.step()) {
    std::string_view c = st.find_username_holders.text_view(0);
    several = several || (id && *id != c);
    if (!id) {
      id = std::string(c);
    }
  }
  st.find_username_holders.reset();
  return several ? std::nullopt : id;
}

// Whom an identity names, without writing anything.
struct Found {
  std::string customer_id;    // "" when nobody
  bool exact = false;         // the identity itself is stored
  std::string stored_handle;  // exact: the handle stored with it
  bool attach = false;        // found through a link: store the identity with that customer
  bool by_phone = false;      // the stored identity that names the customer is a phone number
};

// Exact match on the canonical identity. Only when it is unknown (a miss: the common path costs
// one primary-key lookup, as before), the identity may name the same person as an identity of
// another type (routing/identity_links.hpp), looked up both ways, as the import does:
//  - from a message's type: x 123 sent by "AnnLee" is the customer of x_handle "annlee" (a
//    customer file's username) if that customer holds no X user id yet (find_username_row:
//    the username may have moved on to a stranger); whatsapp +14155550111 the customer of
//    phone +14155550111.
//  - to it: x_handle "annlee" (the ingest API's from.platform/handle) is the customer of the X
//    user whose stored handle is "annlee" (username_holder: the schema 9 index, no scan); phone
//    +14155550111 (a call) the customer of whatsapp +14155550111.
// `attach`: the identity is then stored with that customer, so the next match is exact, except
// a username found through a stored handle: that only says who holds the username now, and
// stored as an x_handle it would keep naming that customer after the name moved to someone
// else. Such a message looks the holder up again each time.
Found find_customer(Store::Statements& st, const Identity& id, const std::string& username) {
  Found f;
  st.find_identity.bind_static(1, id.type).bind_static(2, id.value);
  if (st.find_identity.step()) {
    f.customer_id = st.find_identity.text(0);
    f.stored_handle = st.find_identity.text(1);
    f.exact = true;
    f.by_phone = id.type == "phone";
  }
  st.find_identity.reset();
  if (f.exact) {
    return f;
  }
  std::optional<std::string> linked;
  if (const IdentityLink* from = link_from(id.type)) {
    const std::string& key = from->by_username ? username : id.value;
    if (from->by_username && !key.empty()) {
      st.find_username_row.bind_static(1, from->linked_type).bind_static(2, key);
      st.find_username_row.bind_static(3, id.type);
      if (st.find_username_row.step()) {
        linked = st.find_username_row.text(0);
      }
      st.find_username_row.reset();
    } else if (!key.empty()) {
      linked = lookup_identity(st, from->linked_type, key);
    }
    f.attach = true;
    f.by_phone = linked && from->linked_type == "phone";
  } else if (const IdentityLink* to = link_to(id.type)) {
    linked = to->by_username ? username_holder(st, to->type, id.value)
                             : lookup_identity(st, to->type, id.value);
    f.attach = !to->by_username;
  }
  if (linked) {
    f.customer_id = std::move(*linked);
  }
  return f;
}

// Name, tier and tags of customer m.id, as the rules see them.
void read_customer(Store::Statements& st, CustomerMatch& m) {
  st.get_customer.bind_static(1, m.id);
  if (st.get_customer.step()) {
    m.name = st.get_customer.text(0);
    m.tier = st.get_customer.text(1);
    auto tags = st.get_customer.text_view(2);
    if (tags.size() > 2) {
      // Kept in a variable: a range-for over json::parse(...).as_array() would iterate an
      // array whose value was destroyed at the end of the range expression (before C++23).
      json::value parsed = json::parse(tags);
      for (const auto& t : parsed.as_array()) {
        m.tags.emplace_back(t.as_string());
      }
    }
  }
  st.get_customer.reset();
}

// How the ingest API's request named an identity of this type (the only channel that gives
// several): for the log line of match_customer.
std::string_view from_field(const Identity& id) {
  if (id.type == "email") {
    return "from.email";
  }
  if (id.type == "phone") {
    return "from.phone";
  }
  return "from.handle";
}

// Stores what identity `id` of the sender (found as `f`) adds to customer `owner`, the one the
// message was matched to: the identity itself when nobody has it yet, or when a link names
// `owner` by it (Found::attach); the username the message shows, taken off the platform's
// other users (match_customer).
void keep_identity(Store::Statements& st, const Identity& id, const std::string& username,
                   const Found& f, const std::string& owner) {
  if (!f.exact && (f.customer_id.empty() || f.attach)) {
    st.insert_identity.bind_static(1, id.type).bind_static(2, id.value);
    st.insert_identity.bind_static(3, owner).bind_static(4, id.handle).run();
  }
  if (!username.empty() && (!f.exact || username != username_key(f.stored_handle))) {
    if (f.exact) {
      st.set_handle.bind_static(1, id.type).bind_static(2, id.value);
      st.set_handle.bind_static(3, id.handle).run();
    }
    st.release_username.bind_static(1, id.type).bind_static(2, username);
    st.release_username.bind_static(3, id.value).run();
  }
}

// The customer of a message's sender (find_customer); unknown senders get a new customer. A
// known X, Telegram or Instagram user who writes under another username than the one stored
// with the id gets it stored instead (the same username in other letter case, or with '@', is
// not another: no write, so the common path writes nothing more). A username is stored for
// one user at a time: whoever last wrote under it (platforms recycle names: X does), so when a
// message shows one that other users of the platform still carry, it is taken off them (their
// handle becomes ''), and `customers import` of a username adopts its current holder, never the
// previous one. The channels send the username a user has when the message is fetched (X's
// includes.users, Telegram's from.username), so the last message stored tells. No cache holds
// handles: the statements read the table.
//
// `also`: the sender's other identities (Inbound::also_from, the ingest API's only), looked up
// only when there are any, so a channel that gives one identity pays nothing more. `from`
// decides first, then each of them in order: the first that names a customer wins, and a
// sender none names is one new customer. The customer then gains each of them that no customer
// has (the primary's writes, keep_identity). One that names another customer stays with that
// one, neither moved nor shared: one identity names one customer, and a web form's fields are
// no proof that two customers are one person. CustomerMatch::held_elsewhere says which.
CustomerMatch match_customer(Store::Statements& st, const Identity& from, std::int64_t now,
                             const std::vector<Identity>& also = {}) {
  CustomerMatch m;
  const std::string username = message_username(from);
  const Found found = find_customer(st, from, username);
  struct Other {
    const Identity& id;
    std::string username;
    Found found;
  };
  std::vector<Other> others;
  others.reserve(also.size());
  const Identity* matched_by = &from;
  const Found* winner = &found;
  for (const Identity& a : also) {
    std::string name = message_username(a);
    Found f = find_customer(st, a, name);
    others.push_back(Other{a, std::move(name), std::move(f)});
  }
  if (found.customer_id.empty()) {
    for (const Other& o : others) {
      if (!o.found.customer_id.empty()) {
        matched_by = &o.id;
        winner = &o.found;
        break;
      }
    }
  }
  // A username found through a stored handle (x_handle "annlee" held by some X user now) says
  // who holds the name, not who sent this: it may pick the customer, but lends that customer
  // none of the sender's other identities (a form naming someone else's username would tie
  // the submitter's e-mail to them for good).
  const bool weak = !winner->customer_id.empty() && !winner->exact && !winner->attach;
  m.id = winner->customer_id;
  m.by_phone = winner->by_phone;
  if (m.id.empty()) {
    m.id = new_ulid();
    m.name = from.name;
    m.is_new = true;
    st.insert_customer.bind_static(1, m.id).bind_static(2, m.name).bind(3, now);
    st.insert_customer.run();
  }
  if (!weak || winner == &found) {
    keep_identity(st, from, username, found, m.id);
  }
  for (const Other& o : others) {
    if (weak && &o.found != winner) {
      continue;
    }
    if (!o.found.customer_id.empty() && o.found.customer_id != m.id) {
      m.held_elsewhere += m.held_elsewhere.empty() ? "" : ", ";
      m.held_elsewhere += std::string(from_field(o.id)) + " " + o.id.value +
                          " belongs to customer " + o.found.customer_id;
      continue;
    }
    keep_identity(st, o.id, o.username, o.found, m.id);
  }
  if (!m.held_elsewhere.empty()) {
    m.held_elsewhere += ", matched " + m.id + " by " + std::string(from_field(*matched_by));
  }
  if (!m.is_new) {
    read_customer(st, m);
  }
  return m;
}

// Issue 4: a subject matches only the same customer's conversations, and only when they hold a
// message from within 14 days of this one, by the messages' own times (an initial sync stores
// years of mail at once) and by when we received them: the Date header is the sender's word,
// and a forged one would reach a conversation of any age.
constexpr std::int64_t kSubjectWindowMs = 14LL * 24 * 3600 * 1000;
// The flag of a mail whose Reply-To is not the matched customer's (reply_to_foreign).
constexpr const char* kReplyToDiffers = "reply_to_differs";

// Whether `in` names a Reply-To (kept only when it differs from From) that is no identity of
// customer `customer_id`. Anyone can write a customer's address in From; an answer goes to
// Reply-To (reply_recipient). Such a message is flagged `reply_to_differs` and never joins a
// conversation by its subject, so a forged "Re: <their order>" neither reads the customer's
// thread nor draws the agent's answer to the forger. A customer's own second address (an
// identity of theirs) is no stranger; a web form's mail (From a no-reply address) is flagged
// but still answered at Reply-To.
bool reply_to_foreign(Store::Statements& st, const Inbound& in, const std::string& customer_id) {
  if (!in.reply_to) {
    return false;
  }
  if (customer_id.empty()) {
    return true;
  }
  st.find_identity.bind_static(1, in.reply_to->type).bind_static(2, in.reply_to->value);
  bool theirs = st.find_identity.step() && st.find_identity.text(0) == customer_id;
  st.find_identity.reset();
  return !theirs;
}

bool has_flag(const Inbound& in, std::string_view flag) {
  return std::find(in.flags.begin(), in.flags.end(), flag) != in.flags.end();
}

// Mail no person wrote (email's detect_flags): an out-of-office answer, a bounce. A rule may
// send it to a queue of its own ("noise", override_sticky), but it does not become its
// conversation's sticky queue, or the customer's real answer, days later, would follow it
// there. Not `bulk`: a Google Group adds Precedence: list, List-ID and List-Unsubscribe to
// every mail it hands on, so for a team whose support address is a Group every customer mail
// is bulk, and sticky routing would be off for all of them.
bool machine_sent(const Inbound& in) {
  return has_flag(in, "auto_reply") || has_flag(in, "bounce");
}

// Whether `in` may join a conversation by its subject. An auto-reply or a bounce never does:
// a mailer daemon is one "customer" for every bounce it sends, under one fixed subject
// ("Undelivered Mail Returned to Sender"), so bounces about different customers' mail would
// merge into one conversation; an auto-reply's subject is the program's. They thread by their
// references only (a bounce's report names the returned message: Inbound::report).
bool threads_by_subject(const Inbound& in) {
  return !has_flag(in, "auto_reply") && !has_flag(in, "bounce");
}

// First thread_lookup key that names a conversation wins; then the subject fallback; otherwise
// a new conversation, which open_conversation inserts once its queue is known. Every
// thread_record key (and the subject key) then points at it, so later messages find it.
// `by_subject` false: only thread_lookup keys (reply_to_foreign); the message records no
// subject key either, so the customer's next mail does not follow it into its conversation.
Conversation thread(Store::Statements& st, const Inbound& in, const CustomerMatch& cust,
                    std::int64_t now, bool by_subject = true) {
  Conversation c;
  auto found = [&](Stmt& q) {
    if (q.step()) {
      c.id = q.text(0);
      c.queue = q.text(1);
      c.existing = true;
    }
    q.reset();
  };
  for (const auto& key : in.thread_lookup) {
    st.find_conv_key.bind_static(1, key);
    found(st.find_conv_key);
    if (c.existing) {
      break;
    }
  }
  std::string subject_key;
  if (by_subject && !in.subject_key.empty() && !cust.id.empty()) {
    subject_key = "subject:" + in.channel + ":" + in.account + ":" + cust.id + ":" + in.subject_key;
  }
  if (!c.existing && !subject_key.empty() && !cust.is_new) {
    std::int64_t at = in.occurred_at_ms ? in.occurred_at_ms : now;
    st.find_subject_conv.bind_static(1, subject_key);
    st.find_subject_conv.bind(2, at - kSubjectWindowMs).bind(3, at + kSubjectWindowMs);
    st.find_subject_conv.bind(4, now - kSubjectWindowMs).bind(5, now + kSubjectWindowMs);
    found(st.find_subject_conv);
  }
  if (!c.existing) {
    c.id = new_ulid();
  }
  for (const auto& key : in.thread_record) {
    st.insert_conv_key.bind_static(1, key).bind_static(2, c.id).run();
  }
  if (!subject_key.empty()) {
    st.set_conv_key.bind_static(1, subject_key).bind_static(2, c.id).run();
  }
  return c;
}

void open_conversation(Store::Statements& st, const Inbound& in, const Conversation& c,
                       const std::string& customer_id, const std::string& queue, std::int64_t now) {
  st.insert_conv.bind_static(1, c.id);
  if (customer_id.empty()) {
    st.insert_conv.bind_null(2);
  } else {
    st.insert_conv.bind_static(2, customer_id);
  }
  st.insert_conv.bind_static(3, in.channel).bind_static(4, in.account);
  st.insert_conv.bind_static(5, in.subject).bind(6, now).bind_static(7, queue).run();
}

// Rules decide queue and priority; a conversation already routed somewhere stays there
// (sticky) unless the matching rule says override_sticky, or that queue is no longer
// configured (a reload or restart renamed or dropped it): no agent may claim there, and after a
// restart /v1/queues no longer lists it, so the rules decide as for a new conversation, and
// enqueue() makes their queue the sticky one.
Route route(const Rules& rules, const Inbound& in, const CustomerMatch& cust,
            const Conversation& conv, std::string_view added_flag = {}) {
  Route r = rules.decide(RuleSubject{in, cust.tier, cust.tags, cust.is_new, added_flag});
  if (conv.existing && !conv.queue.empty() && !r.override_sticky && rules.configured(conv.queue)) {
    r.queue = conv.queue;
  }
  return r;
}

// Queues an interaction (the relay projects the outbox row into Redis) and, when it `sticks`
// (not machine_sent), remembers the queue on an existing conversation for sticky routing (a new
// one was inserted with it). The outbox row is the connection's last insert: the interaction's
// row, written next, keeps its seq (queued_seq, last_insert_rowid()) for a re-projection after
// Redis lost data.
void enqueue(Store::Statements& st, const std::string& interaction_id, const Route& r,
             const Conversation& conv, std::int64_t now, bool sticks) {
  st.insert_outbox.bind_static(1, interaction_id).bind_static(2, r.queue);
  st.insert_outbox.bind_static(3, r.priority).bind(4, now).run();
  if (conv.existing && sticks) {
    st.route_conv.bind_static(1, conv.id).bind_static(2, r.queue).bind(3, now).run();
  }
}

struct Stored {
  IngestOutcome outcome;
  std::string payload;
  std::string customer_id;  // "" when nobody was matched
  bool customer_is_new = false;
  bool customer_by_phone = false;  // CustomerMatch::by_phone
};

// Stores one new interaction (not a duplicate). `queue_now` false: kept out of the queues (an
// unfinished call), routed later.
// `match_from` false: `from` is kept in the payload as sent, not matched to a customer (a held
// call's caller, which may still prove to be our own line).
// `held`: an ended call held back from the queues (column `held`, Store::release_held_calls).
Stored store_new(Store::Statements& st, const Rules& rules, const Inbound& in, bool queue_now,
                 std::int64_t order_key, std::int64_t now, bool match_from = true,
                 bool held = false) {
  CustomerMatch cust;
  // Mail From our own address (flag `from_us`, BatchChain::set_aside_own_mail) is matched by
  // the address the poller found for the customer, or to none, as a call from a withheld
  // number is: every form submitter would otherwise be one customer, our support address.
  const bool from_us = has_flag(in, "from_us");
  const std::optional<Identity>& who = from_us ? in.customer_address : in.from;
  if (who && match_from) {
    cust = match_customer(st, *who, now, from_us ? std::vector<Identity>{} : in.also_from);
    if (!cust.held_elsewhere.empty()) {
      logger("storage")->info("[{}:{}] {}: {}", in.channel, in.account, in.external_id,
                              cust.held_elsewhere);
    }
  }
  const bool foreign = match_from && reply_to_foreign(st, in, cust.id);
  Conversation conv = thread(st, in, cust, now, !foreign && threads_by_subject(in));
  const bool sticks = !machine_sent(in);
  // Rules see the flag the payload gets (a rule may send such mail to a review queue).
  Route r = route(rules, in, cust, conv, foreign ? kReplyToDiffers : "");
  if (!conv.existing) {
    open_conversation(st, in, conv, cust.id, queue_now && sticks ? r.queue : "", now);
  }

  StoredMeta meta{new_ulid(),
                  conv.id,
                  cust.id,
                  cust.name,
                  cust.tier,
                  cust.is_new,
                  now,
                  queue_now ? r.queue : "",
                  queue_now ? r.priority : ""};
  std::vector<std::string> flags;
  if (foreign) {
    flags.emplace_back(kReplyToDiffers);
  }
  std::string payload = interaction_json(in, meta, flags);
  if (queue_now) {
    enqueue(st, meta.id, r, conv, now, sticks);
  }
  auto& ins = st.insert_interaction;
  ins.bind_static(1, meta.id).bind_static(2, in.channel).bind_static(3, in.account);
  ins.bind_static(4, in.external_id).bind_static(5, in.kind).bind_static(6, in.direction);
  ins.bind_static(7, conv.id);
  if (cust.id.empty()) {
    ins.bind_null(8);
  } else {
    ins.bind_static(8, cust.id);
  }
  ins.bind_static(9, meta.queue).bind_static(10, meta.priority);
  ins.bind_static(11, queue_now ? "queued" : "pending_call").bind(12, order_key);
  ins.bind(13, in.occurred_at_ms ? in.occurred_at_ms : now).bind(14, now);
  ins.bind_static(15, payload).bind(16, queue_now ? 1 : 0).bind(17, held ? 1 : 0);
  ins.bind_static(18, in.content_hash).run();
  for (std::size_t i = 0; i < in.attachments.size(); ++i) {
    const auto& a = in.attachments[i];
    if (a.stored) {
      st.insert_attachment.bind_static(1, meta.id).bind(2, static_cast<std::int64_t>(i));
      st.insert_attachment.bind_static(3, a.filename).bind_static(4, a.content_type);
      st.insert_attachment.bind_blob(5, a.data).run();
    }
  }
  return Stored{IngestOutcome{meta.id, false, "", true}, std::move(payload), cust.id, cust.is_new,
                cust.by_phone};
}

// Rule 3 of storage/call_parties.hpp counts only customers something firm named. One that a call
// made while nothing told the call's direction (taken for inbound) may be our own line: it is
// marked, and a call whose direction is known that names it as its customer takes the mark off.
void note_call_customer(Store::Statements& st, const std::string& customer_id, bool is_new,
                        bool direction_known) {
  if (customer_id.empty()) {
    return;
  }
  if (!direction_known && is_new) {
    st.mark_guessed.bind_static(1, customer_id).run();
    st.maybe_guessed = true;
  } else if (direction_known && !is_new) {
    st.unmark_guessed.bind_static(1, customer_id).run();
  }
}

// Any interaction but a call names its customer firmly too, as migration 14 counted it: a
// caller a guessed call made who then writes on WhatsApp or through the ingest API is a
// customer, not our own line. Only a customer found through a phone number can be a guessed one
// (a call names its customer by phone; an identity of another type was added by a message,
// which took the mark off, or by the CRM, whose external_id counts already), so the others cost
// no statement, nor does anyone while no customer is guessed.
void note_message_customer(Store::Statements& st, const Stored& s) {
  if (s.customer_by_phone && !s.customer_is_new && st.maybe_guessed) {
    st.unmark_guessed.bind_static(1, s.customer_id).run();
  }
}

// The interaction stored under (channel, account, `external_id`), with its content hash ("" for
// none: the row was stored without one).
struct StoredCopy {
  std::string id;
  std::string content_hash;
};

std::optional<StoredCopy> find_stored(Store::Statements& st, const Inbound& in,
                                      const std::string& external_id) {
  st.find_dup.bind_static(1, in.channel).bind_static(2, in.account).bind_static(3, external_id);
  std::optional<StoredCopy> out;
  if (st.find_dup.step()) {
    out = StoredCopy{st.find_dup.text(0), st.find_dup.text(4)};
  }
  st.find_dup.reset();
  return out;
}

// Whether `in` is stored already; nullopt: it is not, and `external_id` says under which id to
// store it. An interaction is a duplicate of the row with its external id, unless both carry
// a content hash (Inbound::content_hash) and the two differ: then it is another message under
// an id already taken (a reused or forged Message-ID), whose own id is the external id with
// "#" and the first 16 hex digits of its hash, deterministic so that fetching it again finds
// it. The common path (an id not stored yet, or the same message again) costs the one lookup it
// always did; only such another message costs a second. A row stored without a hash (before
// schema 19, or by a channel that sets none) matches any content: a message under its id is
// taken for it, as before.
std::optional<IngestOutcome> find_duplicate(Store::Statements& st, const Inbound& in,
                                            std::string& external_id) {
  external_id = in.external_id;
  auto stored = find_stored(st, in, external_id);
  if (stored && !in.content_hash.empty() && !stored->content_hash.empty() &&
      stored->content_hash != in.content_hash) {
    external_id = in.external_id + "#" + in.content_hash.substr(0, 16);
    stored = find_stored(st, in, external_id);
  }
  if (stored) {
    return IngestOutcome{std::move(stored->id), true, ""};
  }
  return std::nullopt;
}

}  // namespace

Store::Store(Writer& writer, std::shared_ptr<const Rules> rules)
    : writer_(writer), rules_(std::move(rules)) {}

Store::~Store() = default;

Store::Statements& Store::statements(Db& db) {
  if (!st_) {
    st_ = std::make_unique<Statements>(db);
  }
  return *st_;
}

void Store::set_rules(std::shared_ptr<const Rules> rules) {
  std::lock_guard lock(rules_mu_);
  rules_ = std::move(rules);
}

std::shared_ptr<const Rules> Store::rules() const {
  std::lock_guard lock(rules_mu_);
  return rules_;
}

void Store::submit(std::vector<Inbound> items, std::optional<CursorUpdate> cursor, Done done) {
  auto outcomes = std::make_shared<std::vector<IngestOutcome>>();
  auto batch = std::make_shared<std::vector<Inbound>>(std::move(items));
  writer_.submit(
      Job{[this, batch, outcomes, cursor = std::move(cursor)](Db& db) {
            auto& st = statements(db);
            auto rules = this->rules();
            std::int64_t now = now_ms();
            outcomes->clear();
            outcomes->reserve(batch->size());
            std::string external_id;
            for (const auto& in : *batch) {
              if (auto dup = find_duplicate(st, in, external_id)) {
                outcomes->push_back(std::move(*dup));
              } else {
                // Another message under an id already stored gets a copy with its own id (the
                // batch stays as it came: a job may run twice); rare enough for its attachments'
                // bytes.
                std::optional<Inbound> other;
                if (external_id != in.external_id) {
                  other.emplace(in);
                  other->external_id = external_id;
                  logger("storage")->info(
                      "[{}:{}] {} was stored already with other content: this one is stored as {}",
                      in.channel, in.account, in.external_id, external_id);
                }
                Stored stored = store_new(st, *rules, other ? *other : in, true, 0, now);
                note_message_customer(st, stored);
                if (!in.report.message_id.empty()) {
                  record_bounce(db, in, stored.outcome.id, now);
                }
                outcomes->push_back(std::move(stored.outcome));
              }
            }
            if (cursor) {
              st.upsert_cursor.bind_static(1, cursor->account).bind_static(2, cursor->scope);
              st.upsert_cursor.bind_static(3, cursor->value).bind(4, now).run();
            }
          },
          [batch, outcomes, done = std::move(done)](const std::string& error) {
            if (!error.empty()) {
              // One outcome at least: a cursor alone (an empty batch) that failed must not read
              // as done, or its caller goes on as if it were committed.
              outcomes->assign(std::max<std::size_t>(batch->size(), 1),
                               IngestOutcome{"", false, error});
            }
            done(std::move(*outcomes));
          }});
}

// Folds one call event into the call's interaction (created on the first event). The call is
// queued once: when its status first becomes final; that final status is what rules see.
// A child leg's event (CallEventInput::child_leg) folds into its parent's interaction the same
// way, keyed by the parent's id (so it costs no extra query), but never names the customer,
// direction or lines of the call: those are the parent's own events' to tell (save click-to-call,
// below, whose customer is the leg's callee).
IngestOutcome Store::apply_call_event(Db& db, const Inbound& in, std::int64_t order_key,
                                      bool child_leg, bool may_hold, bool legs_follow) {
  if (!call_folder_ || !in.call) {
    throw Error(0, "call events are not enabled");
  }
  auto& st = statements(db);
  if (!lines_) {
    lines_ = std::make_unique<CallLines>(db);
  }
  auto rules = this->rules();
  std::int64_t now = now_ms();
  st.find_dup.bind_static(1, in.channel).bind_static(2, in.account);
  st.find_dup.bind_static(3, in.external_id);
  bool exists = st.find_dup.step();
  std::string id, stored_payload, state;
  std::int64_t stored_order = 0;
  if (exists) {
    id = st.find_dup.text(0);
    stored_order = st.find_dup.int64(1);
    stored_payload = st.find_dup.text(2);
    state = st.find_dup.text(3);
  }
  st.find_dup.reset();
  std::optional<CallPayload> stored;
  if (exists) {
    stored = read_call_payload(stored_payload);
    if (!stored) {
      throw Error(0, "the stored payload of call interaction " + id + " has no readable \"call\"");
    }
  }
  CallFold f = exists ? call_folder_(stored->call, stored_order, *in.call, order_key)
                      : call_folder_(std::nullopt, 0, *in.call, order_key);

  // Who the customer is (storage/call_parties.hpp): the call's stated direction, else the one
  // this account's lines tell (stored with the call), else customer records (not stored: a
  // later event that states the direction may still correct it).
  RawParties raw = child_leg ? RawParties{} : raw_parties(in);
  // An event that names no party (a PBX's `completed` with only call_id, the 4-hour sweep's) of
  // a call whose caller is not matched yet: the parties its earlier events named, as stored.
  // Only for a call stored without a direction: one stored with it keeps our line as `to` and
  // nobody as `from` when its callee could not be read, and our line is never the customer.
  if (exists && !child_leg && !raw.from && !raw.to && stored->customer_id.empty() &&
      !stored->from_value.empty() && stored->call.direction.empty()) {
    raw = stored_parties(stored_payload);
  }
  // A customer record named firmly (rule 3 of storage/call_parties.hpp): not one only a call
  // taken for inbound made (guessed_customers), whose number may be our own line.
  auto firm_customer = [&st](const Identity& id) {
    std::string customer = find_customer(st, id, message_username(id)).customer_id;
    if (customer.empty()) {
      return false;
    }
    st.is_guessed_customer.bind_static(1, customer);
    bool guessed = st.is_guessed_customer.step();
    st.is_guessed_customer.reset();
    return !guessed;
  };
  // A direction this event states that contradicts the stored one replaces it: a provider states
  // the same direction in every event that states one, so the stored one was inferred from the
  // account's lines (rule 2), which a number learned wrongly misleads (a Telnyx transfer that
  // passed the caller's number on as its caller ID). Firm as rule 2 is, the call's own word wins.
  std::string_view event_direction = child_leg ? std::string_view{} : in.call->direction;
  bool overruled = exists && !event_direction.empty() && !stored->call.direction.empty() &&
                   stored->call.direction != event_direction;
  if (overruled) {
    f.merged.direction = std::string(event_direction);
    f.changed = true;
  }
  std::string direction = f.merged.direction;
  bool stated = !direction.empty() && !child_leg;
  if (direction.empty() && !child_leg) {
    Inferred guess = lines_->infer_direction(in.account, raw, firm_customer);
    direction = guess.direction;
    if (guess.from_lines) {
      f.merged.direction = direction;
      f.changed = true;
    }
  }
  Parties parties = parties_for(raw, direction);
  bool was_undirected = !exists || stored->call.direction.empty() || overruled;
  if (overruled && parties.customer) {
    lines_->forget(in.account, *parties.customer);  // the number that misled rule 2
  }
  // Our side of a call that states its direction is one of our lines, unless it is a customer's
  // number: a Telnyx transfer or a <Dial callerId> passes the caller's number on as the caller ID
  // of the leg it places (`call.initiated` direction=outgoing, from = the customer), and learned,
  // that number made the customer's every later call and every call to them misrouted.
  // (A call whose direction the lines told wrongly took our line for its caller: that is no
  // customer's number; the record made of it stays, no longer referred to by the call.)
  if (stated && was_undirected && parties.line &&
      ((overruled && stored->from_value == parties.line->value) || !firm_customer(*parties.line))) {
    lines_->remember(in.account, *parties.line);
  }
  // Click-to-call (Twilio): the REST API calls our agent first (Direction=outbound-api, To =
  // client:alice, a SIP address or the agent's phone), and the TwiML of that call <Dial>s the
  // customer as a child leg (outbound-dial, To = the customer). So an outbound call whose first
  // leg to a phone number (not one of our lines) rang another number than the call's own To is a
  // click-to-call, and that leg's callee is its customer, whatever is known of the call's To: the
  // agent's phone may be a customer record already (an earlier click-to-call named it before its
  // leg reported, or the agent once called in from it), and was taken for the customer of every
  // such call. (A Voice SDK call whose TwiML <Dial>s the number in its own To is no such call.)
  // The call's To: this event's, or for a leg's event, the customer its parent's events named.
  // An outbound call whose callee is not a customer's number (none could be read, or it is one
  // of our lines) takes its customer from that leg too, whichever of the call's and the leg's
  // events come first (the leg's is in f.merged.legs). Until one names them, such a call has no
  // customer; ended before (Twilio posts the call's and the leg's callbacks separately), it is
  // held like a call awaiting its legs.
  std::optional<Identity> leg_callee;
  for (const auto& leg : f.merged.legs) {
    Identity dialled{"phone", leg.to, "", ""};
    if (leg.to.starts_with('+') && !lines_->is_line(in.account, dialled)) {
      leg_callee = std::move(dialled);
      break;
    }
  }
  std::string call_to = child_leg ? (exists ? stored->from_value : std::string())
                                  : (parties.customer ? parties.customer->value : std::string());
  bool click_to_call = direction == "outbound" && leg_callee && leg_callee->value != call_to;
  bool customer_from_leg =
      direction == "outbound" &&
      (click_to_call || ((!parties.customer || lines_->is_line(in.account, *parties.customer)) &&
                         (!child_leg || (exists && stored->customer_id.empty()))));
  if (customer_from_leg) {
    parties.customer = leg_callee;
  }
  // Unknown direction: a caller is named only once the call ends (as inbound, the common case).
  // A call that ends before anything tells its direction is held back from the queues for a
  // while: Telnyx states the direction in call.initiated only, delivers out of order, and on an
  // account whose lines are not learned yet a call.hangup first could not tell our number from
  // the customer's. Queued at once, an outbound call went out with our own line as its caller,
  // and the call.initiated that came a moment later corrected the database but not the queue
  // entry. Held, it waits (its parties kept as sent, no customer) for an event that tells, or
  // for release_held_calls, which takes it for inbound. Only where a later event will tell
  // (`may_hold`, CallEventInput::direction_follows): a PBX that leaves the direction out never
  // does, and its calls are taken for inbound at once.
  bool hold_direction = may_hold && direction.empty() && !child_leg;
  // A call that ended missed by the legs it dialled, as far as their callbacks told yet: a leg's
  // answer may come later (Twilio posts the call's and each leg's callbacks separately; of a ring
  // group, the legs that lost end canceled the moment one answers, and the one that answered
  // reports when it hangs up, with the caller's own call). Queued as it stood, an answered call
  // went to the "missed calls" queue. Held, it is queued by the second release of held calls
  // that finds it (the daemon: 10-20 s later, once its first event is 30 s old), or at once by an
  // event of its own that tells of an answer (a <Dial action> request). Its customer is named
  // now: its direction is known.
  bool hold_legs = legs_follow && !child_leg && f.final && f.awaits_legs;
  // Click-to-call ended before the leg that names its customer reported: held the same way, and
  // queued by the leg's event that names the customer, or by the next release as it stands.
  bool hold_customer = legs_follow && !child_leg && f.final && customer_from_leg &&
                       !parties.customer && (!exists || stored->customer_id.empty());
  bool hold = hold_direction || hold_legs || hold_customer;
  bool ended = (f.final && !hold_direction) || (exists && state != "pending_call");
  std::optional<Identity> customer;
  if ((!direction.empty() || ended) && (!child_leg || customer_from_leg)) {
    customer = parties.customer;
  }
  std::optional<Identity> line = direction.empty() ? raw.to : parties.line;

  if (!exists) {
    Inbound first = in;
    first.call = f.merged;
    bool held = hold && f.final;
    // No customer yet because the direction is unknown (the call not ended): the caller as
    // sent, not matched, for the event that settles it (a PBX's ending event may name no party).
    // A call whose direction is known but whose customer could not be read (an outbound call
    // to `client:alice` or an extension) keeps nobody: its `from` would be our own line.
    bool unmatched = (hold_direction && f.final) || (direction.empty() && !customer && !child_leg);
    first.from = unmatched ? raw.from : customer;
    first.to.clear();
    if (line) {
      first.to.push_back(*line);
    }
    if (!direction.empty()) {
      first.direction = direction;
    }
    Stored stored_call =
        store_new(st, *rules, first, f.became_final && !hold, f.order_key, now, !unmatched, held);
    if (!unmatched) {
      note_call_customer(st, stored_call.customer_id, stored_call.customer_is_new,
                         !direction.empty());
    }
    return stored_call.outcome;
  }

  // The caller is matched by the first event that names one (a recording callback, without
  // From, may be the first to arrive), and replaced when it was taken for an inbound caller
  // before anything told the direction and the other party proves to be the customer.
  // A click-to-call whose own To was taken for its customer before its leg reported is corrected
  // the same way.
  bool caller_now =
      customer &&
      (stored->customer_id.empty() ||
       (was_undirected && !direction.empty() && stored->from_value != customer->value) ||
       (click_to_call && stored->from_value != customer->value));
  // A held call keeps its caller as sent, for release_held_calls to name.
  bool keep_from = hold_direction && f.final && raw.from && stored->from_value.empty();
  // Ended, no longer held, not queued yet: queue it now (also when this event changes nothing,
  // as the release of a held call does).
  // (A leg's event queues nothing, but the one that names a held click-to-call's customer.)
  bool routed_now = f.final && !hold && (!child_leg || (customer_from_leg && caller_now)) &&
                    state == "pending_call";
  if (!f.changed && !caller_now && !keep_from && !routed_now) {
    return IngestOutcome{id, true, "", false};  // a duplicate or stale delivery
  }
  if (keep_from) {
    stored_payload = with_unmatched_from(stored_payload, *raw.from);
    stored = read_call_payload(stored_payload);
    if (!stored) {
      throw Error(0, "the payload of call interaction " + id + " lost its \"call\"");
    }
  }
  if (caller_now) {
    CustomerMatch cust = match_customer(st, *customer, now);
    note_call_customer(st, cust.id, cust.is_new, !direction.empty());
    stored_payload = with_caller(stored_payload, *customer, cust.id, cust.name, cust.tier,
                                 cust.is_new, direction.empty() ? std::nullopt : line, direction);
    stored = read_call_payload(stored_payload);
    if (!stored) {
      throw Error(0, "the payload of call interaction " + id + " lost its \"call\"");
    }
    auto set = db.prepare(
        "UPDATE interactions SET customer_id=?2, direction=coalesce(nullif(?3, ''), direction) "
        "WHERE id=?1");
    set.bind_static(1, id).bind_static(2, cust.id).bind_static(3, direction).run();
    auto conv = db.prepare("UPDATE conversations SET customer_id=?2 WHERE id=?1");
    conv.bind_static(1, stored->conversation_id).bind_static(2, cust.id).run();
  } else if (stated && was_undirected && customer && !stored->customer_id.empty() &&
             stored->from_value == customer->value) {
    // The caller it was taken for is its customer indeed: the call now states its direction
    // (stored below), which names them firmly, as it would have from the start (rule 3).
    st.unmark_guessed.bind_static(1, stored->customer_id).run();
  }
  std::string queue = stored->queue, priority = stored->priority;
  if (routed_now) {
    Inbound routed = in;
    routed.call = f.merged;
    CustomerMatch cust;
    cust.id = stored->customer_id;
    cust.tier = stored->customer_tier;
    cust.is_new = stored->customer_is_new;
    if (!cust.id.empty()) {
      read_customer(st, cust);  // the payload has no tags; customer_tag rules need them
    }
    Conversation conv{stored->conversation_id, "", false};
    Route r = route(*rules, routed, cust, conv);
    queue = r.queue;
    priority = r.priority;
    conv.existing = true;  // stored with the call's first event; now it learns its queue
    enqueue(st, id, r, conv, now, true);
    state = "queued";
  }
  std::string text =
      rewrite_call_payload(stored_payload, *stored, f.merged, routed_now ? &queue : nullptr,
                           routed_now ? &priority : nullptr);
  st.update_call.bind_static(1, id).bind_static(2, queue).bind_static(3, priority);
  // Held: ended but not queued (no direction yet, missed by the legs known, or a leg's event on
  // such a call); what release_held_calls looks for.
  bool held = state == "pending_call" && f.final;
  st.update_call.bind_static(4, state).bind(5, f.order_key).bind_static(6, text);
  st.update_call.bind(7, routed_now ? 1 : 0)
      .bind(8, held ? 1 : 0)
      .bind(9, now)
      .run();  // enqueue() was the last insert
  return IngestOutcome{id, false, "", false};
}

void Store::submit_call_event(CallEventInput ev, Done done) {
  auto outcome = std::make_shared<IngestOutcome>();
  auto event = std::make_shared<CallEventInput>(std::move(ev));
  writer_.submit(Job{[this, event, outcome](Db& db) {
                       *outcome =
                           apply_call_event(db, event->call, event->order_key, event->child_leg,
                                            event->direction_follows, event->legs_follow);
                     },
                     [outcome, done = std::move(done)](const std::string& error) {
                       if (!error.empty()) {
                         *outcome = IngestOutcome{"", false, error, false};
                       }
                       done({*outcome});
                     }});
}

void Store::submit_provider_statuses(std::vector<ProviderStatus> statuses, Done done) {
  auto outcomes = std::make_shared<std::vector<IngestOutcome>>();
  auto items = std::make_shared<std::vector<ProviderStatus>>(std::move(statuses));
  writer_.submit(Job{
      [items, outcomes](Db& db) {
        outcomes->clear();  // a job may run twice (Writer::run_batch)
        auto find = db.prepare(
            "SELECT interaction_id FROM sends WHERE channel=?1 AND account=?2 AND provider_id=?3");
        auto fail = db.prepare(
            "UPDATE sends SET state='failed', last_error=?2, updated_at=?3 WHERE "
            "interaction_id=?1");
        // The same report delivered again (Meta retries until it gets a 200) is ignored by the
        // unique index events_provider_status (schema.cpp, 15 -> 16).
        auto event = db.prepare(
            "INSERT OR IGNORE INTO events(interaction_id, at, actor, type, detail) "
            "VALUES (?1, ?2, ?3, 'provider_status', ?4)");
        for (const auto& s : *items) {
          find.bind(1, s.channel).bind(2, s.account).bind(3, s.provider_id);
          if (!find.step()) {
            find.reset();
            outcomes->push_back(IngestOutcome{"", false, "unknown message " + s.provider_id});
            continue;
          }
          std::string iid = find.text(0);
          find.reset();
          std::int64_t at = s.at_ms ? s.at_ms : now_ms();
          if (s.status == "failed") {
            // Failed after it went out: the parent is told, and back to work when finished
            // (a repeated report finds the send failed and tells nobody again).
            tell_parent_of_failure(db, iid, s.error.empty() ? "failed" : s.error, at);
            fail.bind(1, iid).bind(2, s.error.empty() ? "failed" : s.error).bind(3, at).run();
          }
          json::object detail{{"status", s.status}};
          if (!s.error.empty()) {
            detail["error"] = s.error;
          }
          event.bind(1, iid).bind(2, at).bind(3, s.channel).bind(4, json::serialize(detail)).run();
          outcomes->push_back(IngestOutcome{iid, db.changes() == 0, ""});
        }
      },
      [items, outcomes, done = std::move(done)](const std::string& error) {
        if (!error.empty()) {
          outcomes->assign(items->size(), IngestOutcome{"", false, error});
        }
        done(std::move(*outcomes));
      }});
}

Db& Store::reader() {
  if (!read_db_) {
    read_db_ = std::make_unique<Db>(writer_.path(), true);
  }
  return *read_db_;
}

std::optional<std::string> Store::cursor(const std::string& account, const std::string& scope) {
  std::lock_guard lock(read_mu_);
  auto st = reader().prepare("SELECT value FROM cursors WHERE account=?1 AND scope=?2");
  st.bind(1, account).bind(2, scope);
  if (st.step()) {
    return st.text(0);
  }
  return std::nullopt;
}

std::optional<std::int64_t> Store::cursor_written_at(const std::string& account,
                                                     const std::string& scope) {
  std::lock_guard lock(read_mu_);
  auto st = reader().prepare("SELECT updated_at FROM cursors WHERE account=?1 AND scope=?2");
  st.bind(1, account).bind(2, scope);
  if (st.step()) {
    return st.int64(0);
  }
  return std::nullopt;
}

std::vector<std::string> Store::sent_here(const std::vector<std::string>& ids) {
  std::vector<std::string> found;
  if (ids.empty()) {
    return found;
  }
  std::lock_guard lock(read_mu_);
  // One indexed lookup each: the second term lets SQLite use the partial index
  // sends_by_planned_id (schema 27), whose WHERE a bound parameter alone does not imply.
  auto st =
      reader().prepare("SELECT 1 FROM sends WHERE planned_id=?1 AND planned_id != '' LIMIT 1");
  // A reply stored before schema 25 kept no planned_id; one sent names its Message-ID as its
  // provider_id. sends_by_provider (channel, account, provider_id) needs the account, which
  // the poller's imap account is not: the email accounts with sends are listed first, each
  // found by one index seek (a loose index scan: SELECT DISTINCT would read every email send).
  std::vector<std::string> accounts;
  auto list = reader().prepare(
      "WITH RECURSIVE a(name) AS ("
      "  SELECT min(account) FROM sends WHERE channel='email'"
      "  UNION ALL"
      "  SELECT (SELECT min(account) FROM sends WHERE channel='email' AND account > a.name)"
      "  FROM a WHERE a.name IS NOT NULL) "
      "SELECT name FROM a WHERE name IS NOT NULL");
  while (list.step()) {
    accounts.push_back(list.text(0));
  }
  auto by_provider = reader().prepare(
      "SELECT 1 FROM sends WHERE channel='email' AND account=?1 AND provider_id=?2 LIMIT 1");
  auto sent_before_planned = [&](const std::string& id) {
    for (const auto& account : accounts) {
      by_provider.bind(1, account).bind(2, id);
      const bool hit = by_provider.step();
      by_provider.reset();
      if (hit) {
        return true;
      }
    }
    return false;
  };
  for (const auto& id : ids) {
    if (id.empty()) {
      continue;
    }
    st.bind(1, id);
    const bool planned = st.step();
    st.reset();
    if (planned || sent_before_planned(id)) {
      found.push_back(id);
    }
  }
  return found;
}

}  // namespace sb::storage
