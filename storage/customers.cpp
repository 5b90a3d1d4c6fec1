#include "storage/customers.hpp"

#include <sqlite3.h>

#include <new>
#include <optional>
#include <string_view>
#include <vector>

#include <boost/json.hpp>

#include "core/ids.hpp"
#include "core/time.hpp"
#include "routing/identity_links.hpp"

namespace sb::storage {

const char* const kUsernameHoldersSql =
    "SELECT i.customer_id, c.external_id IS NOT NULL, coalesce(c.external_id, i.customer_id), "
    "i.type, i.value FROM identities i INDEXED BY identities_by_username "
    "LEFT JOIN customers c ON c.id = i.customer_id WHERE i.type=?1 "
    "AND lower(ltrim(i.handle, '@'))=?2 "
    "AND (i.type = 'x' OR i.type = 'telegram' OR i.type = 'instagram')";

const char* const kReleaseUsernameSql =
    "UPDATE identities INDEXED BY identities_by_username SET handle='' WHERE type=?1 "
    "AND lower(ltrim(handle, '@'))=?2 AND (type = 'x' OR type = 'telegram' OR type = 'instagram') "
    "AND value<>?3";

// The timeline's order is when each interaction happened: occurred_at (a Date header, a
// provider's timestamp, the ingest API's field), clamped at received_at, so that a source whose
// clock runs ahead cannot pin an interaction above everything that arrives after it. Newest
// first; interactions of one time (a Date header's second, an import that gives a date only)
// by id. The expression is interactions_by_customer's (storage/schema.cpp), spelt the same, or
// SQLite would not read the index in this order.
const char* const kTimelineSql =
    "SELECT id, payload FROM interactions WHERE customer_id = ?1 "
    "ORDER BY min(occurred_at, received_at) DESC, id DESC LIMIT ?2";

// The row value is the condition. SQLite 3.40 starts a range of an expression index at a single
// expression only, not at a row value holding one: the first term, implied by the row value,
// starts the scan at the cursor's time rather than at the newest (of the interactions of that
// very time, those above the cursor are read and passed over).
const char* const kTimelineAfterSql =
    "SELECT id, payload FROM interactions WHERE customer_id = ?1 "
    "AND min(occurred_at, received_at) <= ?2 AND (min(occurred_at, received_at), id) < (?2, ?3) "
    "ORDER BY min(occurred_at, received_at) DESC, id DESC LIMIT ?4";

const char* const kTimelineBelowIdSql =
    "SELECT id, payload FROM interactions WHERE customer_id = ?1 AND id < ?2 "
    "ORDER BY min(occurred_at, received_at) DESC, id DESC LIMIT ?3";

namespace {

// A customer that owns one of a record's identities, or a linked one.
struct Owner {
  std::size_t ident = 0;  // index in the record's identities
  std::string id, label;  // label: how an error names it (external_id, else id)
  bool named = false;     // it has an external_id (else a message created it)
  std::string via;        // the linked identity it was found by ("x 2244994999"); "" if exact
};

// The owners of `idents`, in their order; owned[k]: idents[k] itself has one. An identity no
// customer has may still name one through a linked identity (routing/identity_links.hpp):
// x_handle "annlee" is the X user who wrote as "AnnLee", phone +14155550111 that WhatsApp
// number and the reverse. Those owners count as the identity's, as customer matching would
// find them: the record takes over a customer a message created, and is refused for anyone
// else's. Only for an identity nobody has, as matching looks only when the exact one is
// unknown: a customer that has it was linked before (or split before these lookups existed,
// which a re-import cannot repair: that would take a merge).
//
// A username is the stored handle of one user at most: the daemon moves it to whoever last
// wrote under it (storage/store.cpp). A database written before it did may still hold it for
// users of several customers, one of whom renamed since and another took the name over, and
// nothing tells which is the current holder. Taking either could give a CRM customer a
// stranger's conversations, so such a record is refused: `ambiguous` says why, naming the
// users, and the file can give the user id instead.
std::vector<Owner> find_owners(Stmt& find_owner, Stmt& find_username_owners,
                               const std::vector<Identity>& idents, std::vector<bool>& owned,
                               std::string& ambiguous) {
  std::vector<Owner> owners;
  owned.assign(idents.size(), false);
  auto collect = [&](Stmt& st, std::size_t k, bool linked) {
    while (st.step()) {
      owners.push_back(Owner{k, st.text(0), st.text(2), st.int64(1) != 0,
                             linked ? st.text(3) + " " + st.text(4) : ""});
      owned[k] = owned[k] || !linked;
    }
    st.reset();
  };
  for (std::size_t k = 0; k < idents.size(); ++k) {
    const auto& ident = idents[k];
    find_owner.bind_static(1, ident.type).bind_static(2, ident.value);
    collect(find_owner, k, false);
    if (owned[k]) {
      continue;
    }
    if (const IdentityLink* to = link_to(ident.type)) {
      Stmt& st = to->by_username ? find_username_owners : find_owner;
      const std::size_t first = owners.size();
      st.bind_static(1, to->type).bind_static(2, ident.value);
      collect(st, k, true);
      bool several = false;
      for (std::size_t i = first + 1; i < owners.size(); ++i) {
        several = several || owners[i].id != owners[first].id;
      }
      if (several && ambiguous.empty()) {
        ambiguous = ident.type + " \"" + ident.value +
                    "\" is the last username seen for users of " + "more than one customer (";
        for (std::size_t i = first; i < owners.size(); ++i) {
          ambiguous += (i == first ? "" : ", ") + owners[i].via + " of " + owners[i].label;
        }
        ambiguous += "): give the user id instead";
      }
    } else if (const IdentityLink* from = link_from(ident.type); from && !from->by_username) {
      // A WhatsApp number from a file (JSON Lines "handles") and a caller's phone. A platform
      // id from a file brings no username to look for.
      find_owner.bind_static(1, from->linked_type).bind_static(2, ident.value);
      collect(find_owner, k, true);
    }
  }
  return owners;
}

}  // namespace

CustomerImporter::CustomerImporter(Db& db)
    : db_(db),
      find_ext_(db.prepare("SELECT id FROM customers WHERE external_id = ?1")),
      // name, tier and tags are NULL when the file does not give them (CustomerUpsert): the
      // stored value stays. A re-import of a file with fewer columns must not blank the rest.
      insert_(db.prepare("INSERT INTO customers(id, external_id, name, tier, tags, created_at, "
                         "updated_at) VALUES (?1, ?2, coalesce(?3, ''), coalesce(?4, ''), "
                         "coalesce(?5, '[]'), ?6, ?6)")),
      update_(db.prepare("UPDATE customers SET name=coalesce(?2, name), tier=coalesce(?3, tier), "
                         "tags=coalesce(?4, tags), updated_at=?5 WHERE id=?1")),
      adopt_(db.prepare("UPDATE customers SET external_id=?2, name=coalesce(nullif(?3, ''), name), "
                        "tier=coalesce(?4, tier), tags=coalesce(?5, tags), updated_at=?6 "
                        "WHERE id=?1")),
      // The owner of an identity, whether the CRM named it (an external_id; else a message
      // created it), how an error names it, and the identity (for a linked one).
      find_owner_(db.prepare(
          "SELECT i.customer_id, c.external_id IS NOT NULL, coalesce(c.external_id, "
          "i.customer_id), "
          "i.type, i.value FROM identities i LEFT JOIN customers c ON c.id = i.customer_id "
          "WHERE i.type=?1 AND i.value=?2")),
      // The same for the users of platform ?1 whose stored handle is username ?2.
      find_username_owners_(db.prepare(kUsernameHoldersSql)),
      // OR IGNORE: a record may list one identity twice; any other owner was refused before.
      insert_identity_(db.prepare("INSERT OR IGNORE INTO identities(type, value, customer_id, "
                                  "handle) VALUES (?1, ?2, ?3, ?4)")) {
  // A rejected record is undone with ROLLBACK TO, which SQLite 3.40 gets wrong at crash
  // recovery after a cache spill inside the savepoint (see Writer::run_batch). The import's
  // transactions are bounded (the caller commits every 20,000 records): they stay in memory.
  db_.exec("PRAGMA cache_spill=OFF");
}

void CustomerImporter::begin() {
  db_.exec("BEGIN IMMEDIATE");
}
void CustomerImporter::commit() {
  db_.exec("COMMIT");
}

CustomerImporter::Result CustomerImporter::upsert(const CustomerUpsert& rec, std::string& error) {
  std::int64_t now = now_ms();
  boost::json::array tags;
  for (const auto& t : rec.tags) {
    tags.emplace_back(t);
  }
  const std::string tags_json = boost::json::serialize(tags);
  // NULL for a field the record does not give; the statements keep the stored value then.
  auto bind_field = [](Stmt& st, int i, bool given, const std::string& v) -> Stmt& {
    return given ? st.bind_static(i, v) : st.bind_null(i);
  };
  db_.exec("SAVEPOINT rec");
  try {
    std::string id;
    find_ext_.bind_static(1, rec.external_id);
    if (find_ext_.step()) {
      id = find_ext_.text(0);
    }
    find_ext_.reset();
    bool existed = !id.empty();
    // Who owns each of the record's identities, looked up once.
    std::vector<bool> owned;
    std::string ambiguous;
    const std::vector<Owner> owners =
        find_owners(find_owner_, find_username_owners_, rec.identities, owned, ambiguous);
    if (!ambiguous.empty()) {
      error = ambiguous;
      db_.exec("ROLLBACK TO rec");
      db_.exec("RELEASE rec");
      return Result::rejected;
    }
    if (existed) {
      update_.bind_static(1, id);
      bind_field(update_, 2, rec.has_name, rec.name);
      bind_field(update_, 3, rec.has_tier, rec.tier);
      bind_field(update_, 4, rec.has_tags, tags_json).bind(5, now).run();
    } else {
      // A customer that a message created (it has no external_id) and that owns one of the
      // record's identities is the record's customer: the import names it and keeps its
      // interactions, rather than refusing the line. Identities of a second such customer are
      // still refused below (that would take a merge).
      for (const auto& o : owners) {
        if (!o.named) {
          id = o.id;
          adopt_.bind_static(1, id).bind_static(2, rec.external_id);
          bind_field(adopt_, 3, rec.has_name, rec.name);
          bind_field(adopt_, 4, rec.has_tier, rec.tier);
          bind_field(adopt_, 5, rec.has_tags, tags_json).bind(6, now).run();
          existed = true;
          break;
        }
      }
    }
    if (id.empty()) {
      id = new_ulid();
      insert_.bind_static(1, id).bind_static(2, rec.external_id);
      bind_field(insert_, 3, rec.has_name, rec.name);
      bind_field(insert_, 4, rec.has_tier, rec.tier);
      bind_field(insert_, 5, rec.has_tags, tags_json).bind(6, now).run();
    }
    for (const auto& o : owners) {
      if (o.id != id) {
        // Identities are unique: two customers sharing one is impossible by construction. A
        // linked one names the same person, so another customer having it would split them.
        const auto& ident = rec.identities[o.ident];
        error = ident.type + " \"" + ident.value + "\"";
        if (o.ident < rec.notes.size() && !rec.notes[o.ident].empty()) {
          // Else the message names a number the file never held.
          error += " (the file's " + rec.notes[o.ident] + ")";
        }
        error += " already belongs to customer " + o.label;
        if (!o.via.empty()) {
          error += " (as " + o.via + ")";
        }
        db_.exec("ROLLBACK TO rec");
        db_.exec("RELEASE rec");
        return Result::rejected;
      }
    }
    for (std::size_t k = 0; k < rec.identities.size(); ++k) {
      if (!owned[k]) {
        const auto& ident = rec.identities[k];
        insert_identity_.bind_static(1, ident.type).bind_static(2, ident.value);
        insert_identity_.bind_static(3, id).bind_static(4, ident.handle).run();
      }
    }
    db_.exec("RELEASE rec");
    return existed ? Result::updated : Result::inserted;
  } catch (const Error& e) {
    // Busy, disk full, I/O, out of memory: the database failed, not the record, and every
    // later record would fail the same way. Rejected one by one, each was printed as a bad line
    // and, SQLite having rolled the whole transaction back (it may, for these), the records
    // counted as imported before them in the batch were lost without a word. The caller
    // abandons the batch and says what was committed.
    switch (e.code & 0xff) {
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
      case SQLITE_NOMEM:
      case SQLITE_READONLY:
      case SQLITE_INTERRUPT:
      case SQLITE_IOERR:
      case SQLITE_CORRUPT:
      case SQLITE_FULL:
      case SQLITE_CANTOPEN:
      case SQLITE_PROTOCOL:
      case SQLITE_NOTADB:
        throw;
      default:
        break;
    }
    error = e.what();
    db_.exec("ROLLBACK TO rec");
    db_.exec("RELEASE rec");
    return Result::rejected;
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    error = e.what();
    db_.exec("ROLLBACK TO rec");
    db_.exec("RELEASE rec");
    return Result::rejected;
  }
}

std::optional<CustomerView> load_customer(Db& db, const std::string& id) {
  auto st = db.prepare(
      "SELECT id, coalesce(external_id, ''), name, tier, tags, created_at FROM customers "
      "WHERE id = ?1");
  st.bind(1, id);
  if (!st.step()) {
    return std::nullopt;
  }
  CustomerView v{st.text(0), st.text(1), st.text(2), st.text(3), st.text(4), st.int64(5), {}};
  auto ids = db.prepare(
      "SELECT type, value, handle FROM identities WHERE customer_id = ?1 ORDER BY type, value");
  ids.bind(1, id);
  while (ids.step()) {
    v.identities.push_back(Identity{ids.text(0), ids.text(1), "", ids.text(2)});
  }
  return v;
}

std::optional<std::string> find_customer_id(Db& db, const std::string& type,
                                            const std::string& value) {
  auto st = db.prepare("SELECT customer_id FROM identities WHERE type=?1 AND value=?2");
  st.bind(1, type).bind(2, value);
  if (st.step()) {
    return st.text(0);
  }
  return std::nullopt;
}

std::optional<std::string> find_customer_by_external_id(Db& db, const std::string& external_id) {
  auto st = db.prepare("SELECT id FROM customers WHERE external_id = ?1");
  st.bind(1, external_id);
  if (st.step()) {
    return st.text(0);
  }
  return std::nullopt;
}

std::vector<UsernameHolder> find_username_holders(Db& db, const std::string& type,
                                                  const std::string& username) {
  auto st = db.prepare(kUsernameHoldersSql);
  st.bind(1, type).bind(2, username);
  std::vector<UsernameHolder> out;
  while (st.step()) {
    out.push_back(UsernameHolder{st.text(0), Identity{st.text(3), st.text(4), "", ""}});
  }
  return out;
}

TimelinePage customer_timeline(Db& db, const std::string& customer_id, int limit,
                               const std::string& before, std::size_t max_bytes) {
  Stmt st;
  if (before.empty()) {
    st = db.prepare(kTimelineSql);
    st.bind(1, customer_id).bind(2, limit);
  } else {
    // The cursor's place in the timeline. An interaction's times are written once, so the page
    // may be read apart from this lookup (a reader's statements are separate transactions).
    // Whoever it belongs to now: a call taken from this customer for another since the page
    // before (a caller id corrected) still marks where that page ended, and the next one goes
    // on from there, nothing skipped or repeated.
    auto at = db.prepare("SELECT min(occurred_at, received_at) FROM interactions WHERE id = ?1");
    at.bind(1, before);
    if (at.step()) {
      st = db.prepare(kTimelineAfterSql);
      st.bind(1, customer_id).bind(2, at.int64(0)).bind(3, before).bind(4, limit);
    } else {
      // An id no interaction has: the answer it had when the timeline was ordered by id, the
      // customer's interactions of smaller ids.
      st = db.prepare(kTimelineBelowIdSql);
      st.bind(1, customer_id).bind(2, before).bind(3, limit);
    }
  }
  // A page of `limit` mails of up to a MiB each was built whole in memory, hundreds of MB for
  // one request: the page ends before the row that would take it past max_bytes (the row is
  // read, one at most, and dropped), and the caller's cursor continues from the last one kept.
  TimelinePage out;
  std::size_t bytes = 0;
  while (st.step()) {
    std::string_view payload = st.text_view(1);
    if (!out.rows.empty() && bytes + payload.size() > max_bytes) {
      out.cut = true;
      break;
    }
    bytes += payload.size();
    out.rows.push_back(TimelineRow{st.text(0), std::string(payload)});
  }
  return out;
}

}  // namespace sb::storage
