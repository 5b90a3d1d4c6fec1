// The agent routes of SPEC section 3 "Agents": ack, release, transfer, reply, and GET
// /v1/queues (claim: claim_route.cpp; extend and the list of claims: held_routes.cpp).
#include <algorithm>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <cctype>

#include "agents/scripts.hpp"
#include "agents/service.hpp"
#include "core/ids.hpp"
#include "core/json_problem.hpp"
#include "core/log.hpp"
#include "core/time.hpp"
#include "routing/identity.hpp"
#include "routing/rules.hpp"
#include "storage/interaction_json.hpp"

namespace sb::agents {
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::size_t kMaxReplyBytes = 64 * 1024;

// Parses a JSON object body; an empty body is an empty object.
std::optional<json::object> body_object(std::string_view body, std::string& error) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return json::object{};
  }
  return parse_json_object(body, error);
}

bool valid_queue_name(std::string_view q) {
  if (q.empty() || q.size() > 64) {
    return false;
  }
  for (char c : q) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

// At most this long: a UUID or ULID fits many times over, and a key is stored with its reply.
constexpr std::size_t kMaxIdempotencyKey = 200;

// The request's Idempotency-Key header (the common convention: Stripe's, the IETF httpapi
// draft's): "" when absent; nullopt, with `error` set, when present but not 1-200 printable
// ASCII characters. Taken as sent: a quoted structured-field string keeps its quotes, which does
// no harm as a client sends its key the same way on every attempt.
std::optional<std::string> idempotency_key(const http::Request& r, std::string& error) {
  auto v = r.header ? r.header("Idempotency-Key") : std::string_view();
  // Absent: http/server.cpp answers a default string_view, whose data() is null; a header sent
  // empty points into the request, and is refused below rather than taken for no key.
  if (v.data() == nullptr) {
    return std::string();
  }
  bool printable = std::all_of(v.begin(), v.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
  if (v.empty() || v.size() > kMaxIdempotencyKey || !printable) {
    error = "header Idempotency-Key must be 1 to " + std::to_string(kMaxIdempotencyKey) +
            " printable ASCII characters (a UUID, say), one per answer; this one has " +
            std::to_string(v.size()) + (printable ? " characters" : " bytes, not all printable");
    return std::nullopt;
  }
  return std::string(v);
}

// The 422 no_sender message: what is missing, so that the operator knows whether a config
// change would help. Ingested posts and calls have no way back to the customer at all ("not
// supported yet" read as a missing feature); email needs an smtp account for its imap one.
std::string no_sender_message(const std::string& channel, const std::string& account) {
  std::string what = "replies through channel \"" + channel + "\" (account \"" + account + "\")";
  if (channel == "api") {
    return what +
           " are not possible: an ingested interaction has no way back to the customer; answer "
           "from the system that posted it";
  }
  if (channel == "voice") {
    return what + " are not possible: a call cannot be answered with a message; call back";
  }
  if (channel == "email") {
    return what + " need a [[channels.smtp]] with for = \"" + account + "\"; none is configured";
  }
  return what + " need that account in the config; it is not configured now";
}

// Why an answer to `parent` would go to a mail system rather than a person, "" when it would
// not: a bounce (flag `bounce`: a delivery report, or mail from MAILER-DAEMON), or a recipient
// whose local part is MAILER-DAEMON, the sender of reports, which a reply reaches as a new
// undeliverable message or not at all. Not postmaster: RFC 5321 4.5.1 makes it the mail
// system's administrator, a person, who may write to us about a customer's mail and be
// answered.
std::string mail_system_recipient(const json::object& parent, const json::object* recipient) {
  if (auto* flags = parent.if_contains("flags"); flags && flags->is_array()) {
    for (const auto& f : flags->get_array()) {
      if (f.is_string() && f.get_string() == "bounce") {
        return "it is a bounce (flag \"bounce\"), a mail system's report";
      }
    }
  }
  auto* type = recipient ? recipient->if_contains("type") : nullptr;
  auto* value = recipient ? recipient->if_contains("value") : nullptr;
  if (!type || !value || !type->is_string() || !value->is_string() ||
      type->get_string() != "email") {
    return {};
  }
  std::string address(value->get_string());
  std::string local = address.substr(0, address.find('@'));
  std::transform(local.begin(), local.end(), local.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (local == "mailer-daemon") {
    return "it would go to " + address + ", a mail system's address";
  }
  return {};
}

std::string id_body(const std::string& id, const char* status) {
  return json::serialize(json::object{{"id", id}, {"status", status}});
}

// What a JSON value is, for a message about a field of the wrong type.
const char* json_kind(const json::value& v) {
  if (v.is_bool()) {
    return "true or false";
  }
  if (v.is_number()) {
    return "a number";
  }
  if (v.is_array()) {
    return "an array";
  }
  return v.is_object() ? "an object" : "null";
}

}  // namespace

// With Retry-After as the claim's: Redis was away for this request, and the same request again
// is the way on (a lost reply's retry is recognised).
http::Response Service::redis_unavailable(const std::string& message) {
  auto res = http::error(503, "redis_unavailable", message);
  res.headers.emplace_back("Retry-After", "1");
  return res;
}

// Authenticates the agent and parses the JSON body: the common start of the POST routes.
Service::Call Service::agent_call(const http::Request& r) const {
  Call c;
  auto auth = agent_auth(r);
  if (!auth.agent) {
    c.denied = std::move(auth.denied);
    return c;
  }
  c.agent = std::move(auth.agent);
  std::string err;
  auto body = body_object(r.body, err);
  if (!body) {
    c.denied = http::error(400, "invalid_json", err);
    return c;
  }
  c.body = std::move(*body);
  return c;
}

void Service::Recent::put(const std::string& id, const std::string& agent) {
  if (by_id.insert_or_assign(id, agent).second) {
    order.push_back(id);
  }
  if (order.size() > 4096) {
    by_id.erase(order.front());
    order.pop_front();
  }
}

http::Response Service::not_held(const std::string& id, const config::Agent& agent,
                                 const char* verb, const FinishResult& f) {
  auto row = records_.find(id);
  if (!row) {
    return http::error(404, "not_found", "no interaction has the id " + id);
  }
  // Held by nobody (waiting, finished, dead-lettered): Redis's index does not know its queue,
  // the record does. Who finished it, or why it was moved, is told only to agents of its queue.
  // (An outbound interaction has its parent's queue: 403 for others, "claim it first" for them.)
  if (f.status == Hold::not_held && !row->queue.empty() &&
      std::find(agent.queues.begin(), agent.queues.end(), row->queue) == agent.queues.end()) {
    return item_forbidden(agent, verb, id, row->queue);
  }
  std::string msg = "interaction " + id + " is not held by agent " + agent.id;
  // (Put back to work since, its state `queued`: a reply given up on after the finish,
  // Records::send_result. Its finisher is old news then.)
  auto done = finished_.by_id.find(id);
  if (f.status == Hold::not_held && done != finished_.by_id.end() && row->state != "queued") {
    msg += ": agent " + done->second + " finished it";
  } else if (f.status == Hold::not_held && row->state == "done") {
    msg += ": it is finished";
  } else if (f.status == Hold::not_held && row->state == "dead") {
    msg += ": its claim timed out max_deliveries times and it was moved to " +
           ops_.dead_stream(row->queue.empty() ? "?" : row->queue) +
           "; transfer it to put it back to work";
  } else if (f.status == Hold::other && is_released(f.holder)) {
    msg += ": it was released and waits in its queue";
  } else if (f.status == Hold::other) {
    msg += ": agent " + f.holder + " holds it";
  } else if (f.status == Hold::gone) {
    // The README's fix for a broken key is DEL; an operator's SET replaces a stream. Either way
    // the entry this agent held went with the stream.
    msg += f.refusal.starts_with("NOGROUP")
               ? ": its stream " + f.stream + " was deleted since it was claimed"
               : ": its stream " + f.stream + " was replaced by a key that is not a stream";
    msg += ", and the entry held there with it (" + f.refusal + "); nobody holds it now";
  } else {
    msg += ": claim it first (it is waiting, finished, or its claim timed out)";
  }
  return http::error(409, "not_held", msg);
}

Service::Awaitable Service::finish(http::Request& r, const char* what) {
  auto auth = agent_auth(r);
  if (!auth.agent) {
    co_return *auth.denied;
  }
  const auto& agent = *auth.agent;
  const std::string id = r.params["id"];
  bool ack = std::string_view(what) == "ack";
  // (GCC 12 miscompiles co_await inside ?:, hence the if.)
  FinishResult f;
  if (ack) {
    f = co_await ops_.ack(id, agent.id, &agent.queues);
  } else {
    f = co_await ops_.release(id, agent.id, &agent.queues);
  }
  if (!f.error.empty()) {
    if (ack) {
      unsure_acks_.put(id, agent.id);
    } else {
      unsure_releases_.put(id, agent.id);
    }
    co_return redis_unavailable(std::string("cannot ") + what + ": " + f.error);
  }
  if (f.status == Hold::foreign) {
    co_return item_forbidden(agent, what, id, f.queue);
  }
  std::string queue;
  bool repeated = false;  // this agent's ack or release again, after its first was answered
  if (f.status == Hold::held) {
    queue = ops_.queue_of_stream(f.stream);
  } else if (ack && f.status == Hold::not_held) {
    queue = co_await acked_before(id, agent.id);  // a retry of an ack whose reply was lost
    if (queue.empty()) {
      // A retry of an ack whose 200 was lost on its way (or a client that sends it twice):
      // answered as the first was, as a retried transfer is, and nothing is recorded again.
      repeated = co_await finished_before(id, agent);
    }
  } else if (!ack && f.status == Hold::other &&
             (f.holder == released_by(agent.id) || f.holder == kReleasedConsumer)) {
    // A retry of a lost release reply. (Released by another agent: it claimed the item after
    // this agent's release, so the retry is too late.)
    queue = co_await released_before(id, agent.id);
    // Otherwise a repeat of a release that was answered: the item still waits, released by this
    // agent (a claim by anyone ends that), so the repeat is answered as the first was.
    repeated = queue.empty() && f.holder == released_by(agent.id);
  }
  if (repeated) {
    co_return http::json(200, id_body(id, ack ? "done" : "released"));
  }
  if (queue.empty()) {
    co_return not_held(id, agent, what, f);
  }
  json::object d{{"queue", queue}};
  if (ack) {
    records_.event(id, agent.id, "finish", json::serialize(d), "done");
    finished_.put(id, agent.id);
    co_return http::json(200, id_body(id, "done"));
  }
  records_.event(id, agent.id, "release", json::serialize(d), "queued");
  // For another agent's claim: this agent's own claims pass the item over, and one woken here
  // would find nothing and sleep again, the wake-up spent.
  waiters_.notify(queue, 1, agent.id);
  co_return http::json(200, id_body(id, "released"));
}

Service::Awaitable Service::transfer(http::Request& r) {
  auto call = agent_call(r);
  if (call.denied) {
    co_return *call.denied;
  }
  const auto& agent = *call.agent;
  auto* body = &call.body;
  const std::string id = r.params["id"];
  auto* qv = body->if_contains("queue");
  if (!qv || !qv->is_string() || !valid_queue_name(qv->as_string())) {
    co_return http::error(400, "invalid_field",
                          "field \"queue\" is required: a queue name of letters, digits, '-', "
                          "'_' or '.' (at most 64)");
  }
  std::string queue(qv->as_string());
  auto row = records_.find(id);
  if (!row) {
    co_return http::error(404, "not_found", "no interaction has the id " + id);
  }
  std::string priority = row->priority.empty() ? "normal" : row->priority;
  if (auto* pv = body->if_contains("priority"); pv && !pv->is_null()) {
    if (!pv->is_string() || !is_priority(pv->as_string())) {
      co_return http::error(400, "invalid_field",
                            "field \"priority\" must be one of urgent, high, normal, low");
    }
    priority = pv->as_string();
  }
  // Only into a queue the configuration names. A mistyped name would otherwise be taken: the item
  // would wait where no agent may claim, the conversation's later messages would follow it there
  // (sticky routing), and every such name would add series to /v1/queues and /metrics for good.
  if (std::string known; !configured_queue(queue, known)) {
    co_return http::error(422, "unknown_queue",
                          "queue \"" + queue +
                              "\" is not known: a transfer moves an item into the "
                              "default queue, a rule's queue or an agent's queue (" +
                              known + "); nothing was moved");
  }
  json::error_code ec;
  auto payload = json::parse(row->payload, ec);
  if (!ec && payload.is_object()) {
    payload.as_object()["queue"] = queue;
    payload.as_object()["priority"] = priority;
  }
  auto new_payload = ec ? row->payload : json::serialize(payload);
  std::int64_t at = now_ms();
  if (row->state == "dead") {
    co_return co_await transfer_dead(*row, agent, queue, priority, new_payload, at);
  }
  auto f = co_await ops_.transfer(id, agent.id, &agent.queues, queue, priority, new_payload, at);
  if (!f.error.empty()) {
    co_return redis_unavailable("cannot transfer: " + f.error);
  }
  if (f.status == Hold::foreign) {
    co_return item_forbidden(agent, "transfer", id, f.queue);
  }
  if (f.status == Hold::not_held) {
    // Two agents of a dead letter's queue transferring it at once: the one whose request read the
    // row after the other's commit lands here (the item is no longer dead), and is told what
    // happened rather than 403 for the queue it went to.
    auto back = records_.back_to_work(id);
    if (back && back->actor != agent.id &&
        std::find(agent.queues.begin(), agent.queues.end(), back->from_queue) !=
            agent.queues.end()) {
      co_return http::error(409, "not_held",
                            "interaction " + id + " is no longer in " +
                                ops_.dead_stream(back->from_queue) + ": agent " + back->actor +
                                " put it back to work in queue " + back->queue +
                                "; nothing was moved");
    }
  }
  if (f.status == Hold::not_held || f.status == Hold::other || f.status == Hold::gone) {
    co_return not_held(id, agent, "transfer", f);
  }
  if (f.status == Hold::refused) {  // Redis works; that one key is broken
    co_return http::error(503, "queue_unavailable",
                          "cannot transfer to queue " + queue + ": its stream " +
                              ops_.stream(queue, priority) + " refuses entries (" + f.refusal +
                              "); nothing was moved, agent " + agent.id + " still holds " + id);
  }
  Transfer t{agent.id, queue, priority, f.new_entry_id, at, "", "", ""};
  if (f.status == Hold::repeated) {
    // Redis did this transfer on an earlier attempt whose reply was lost (answered 503), which
    // recorded nothing; the record follows now, once (the periodic pass may have made it
    // already), from the note Redis kept of that attempt while it has it.
    auto kept = transfer_of_note(f.note);
    bool same = kept && kept->entry_id == f.new_entry_id;
    record_transfer(*row, same ? *kept : t, true, same ? f.note : "");
  } else {
    if (auto earlier = transfer_of_note(f.earlier_note)) {
      // Replaced by this one before it was recorded (or before its record's HDEL came): its
      // record goes first, so that this one's queue stays.
      record_transfer(*row, *earlier, true, "");
    }
    // From the stream Redis moved it out of: the row the route read may not show an earlier
    // transfer whose record is still on its way (that one, just above).
    set_origin(t, f.stream);
    record_transfer(*row, t, false, f.note);
  }
  waiters_.notify(queue);
  co_return http::json(200, json::serialize(json::object{{"id", id},
                                                         {"status", "transferred"},
                                                         {"queue", queue},
                                                         {"priority", priority},
                                                         {"entry_id", f.new_entry_id}}));
}

// Nobody holds a dead letter: who may put it back to work is whoever works its queue (as for
// every other action on it), and where to is any configured queue (checked by the caller), as
// for a transfer. The move is the transfer script's, from the dead-letter entry; unlike a
// transfer of a held item, the answer waits for the record's commit: the row's state goes from
// `dead` back to `queued`, and a 200 before that would leave a reader of the timeline (or an
// agent's ack after a claim) seeing a dead item that Redis hands out. Should the daemon stop
// between the move and the commit, the note in {prefix}:transfer-unrecorded records it at the next
// periodic pass; Redis has the item in exactly one place either way (one script).
Service::Awaitable Service::transfer_dead(const InteractionRow& row, const config::Agent& agent,
                                          const std::string& queue, const std::string& priority,
                                          const std::string& new_payload, std::int64_t at) {
  const std::string& id = row.id;
  auto dead = records_.dead_letter_of(row);
  if (std::find(agent.queues.begin(), agent.queues.end(), dead.queue) == agent.queues.end()) {
    co_return item_forbidden(agent, "transfer", id, dead.queue);
  }
  const std::string dead_key = ops_.dead_stream(dead.queue);
  // The database's fields, should the dead-letter stream have lost the entry (MAXLEN, an
  // operator's XDEL): the item is then put back to work from the database, which holds all of
  // it, rather than left dead for good with nothing an agent could do.
  const EntryOrigin origin{row.conversation_id, row.customer_id, row.channel, row.kind};
  auto f = co_await ops_.transfer(id, agent.id, &agent.queues, queue, priority, new_payload, at,
                                  &dead, &origin);
  if (!f.error.empty()) {
    co_return redis_unavailable("cannot transfer: " + f.error + "; it stays in " + dead_key +
                                " unless Redis ran the transfer: retry it");
  }
  if (f.status == Hold::refused) {
    co_return http::error(503, "queue_unavailable",
                          "cannot transfer to queue " + queue + ": its stream " +
                              ops_.stream(queue, priority) + " refuses entries (" + f.refusal +
                              "); nothing was moved, " + id + " stays in " + dead_key);
  }
  if (f.status != Hold::held && f.status != Hold::repeated) {
    // Another agent's transfer took it out first (its record may still be on its way). Or, for
    // a dead letter recorded before dead-letter entries were named, the entry is not among the
    // stream's newest 1000 (searched) or the stream lost it: rebuilding it then could add a
    // second entry, so an operator decides.
    co_return http::error(
        409, "not_held",
        dead.entry_id.empty()
            ? "interaction " + id + " is not among the newest 1000 entries of " + dead_key +
                  ": another transfer put it back to work, or the entry is older or was "
                  "trimmed; it was dead-lettered by an earlier version, which did not record "
                  "its entry, so it is not rebuilt from the database; nothing was moved"
            : "interaction " + id + " is no longer in " + dead_key +
                  ": another transfer put it back to work (its record may still be on its "
                  "way); nothing was moved");
  }
  if (f.rebuilt) {
    logger("agents")->warn(
        "[agents:{}] interaction {}: its dead-letter entry {} was gone from {} (trimmed: "
        "MAXLEN or XDEL); agent {} put it back to work from the database, into {}",
        dead.queue, id, dead.entry_id, dead_key, agent.id, ops_.stream(queue, priority));
  }
  Transfer t{agent.id, queue, priority, f.new_entry_id, at, "", "", dead_key, f.rebuilt};
  bool late = f.status == Hold::repeated;
  std::string note = f.note;
  if (late) {
    // A retry whose first reply was lost: the record follows now from Redis's note of the first
    // attempt while it has one (Records::transferred writes it once).
    auto kept = transfer_of_note(f.note);
    bool same = kept && kept->entry_id == f.new_entry_id;
    if (same) {
      t = *kept;
    } else {
      note.clear();
    }
  } else if (auto earlier = transfer_of_note(f.earlier_note)) {
    record_transfer(row, *earlier, true, "");
  }
  auto err = co_await record_transfer_committed(row, t, late, note);
  if (!err.empty()) {
    co_return http::error(503, "database_unavailable",
                          "interaction " + id + " was moved out of " + dead_key + " into " +
                              ops_.stream(queue, priority) +
                              ", but its record was not committed (" + err +
                              "): retry the same transfer to have it recorded");
  }
  waiters_.notify(queue);
  co_return http::json(200, json::serialize(json::object{{"id", id},
                                                         {"status", "transferred"},
                                                         {"queue", queue},
                                                         {"priority", priority},
                                                         {"entry_id", f.new_entry_id},
                                                         {"from_dead_letters", dead_key},
                                                         {"rebuilt", t.rebuilt}}));
}

Service::Awaitable Service::reply(http::Request& r) {
  auto call = agent_call(r);
  if (call.denied) {
    co_return *call.denied;
  }
  const auto& agent = *call.agent;
  auto* body = &call.body;
  const std::string id = r.params["id"];
  std::string key_error;
  auto key = idempotency_key(r, key_error);
  if (!key) {
    co_return http::error(400, "invalid_header", key_error);
  }
  auto* tv = body->if_contains("text");
  if (!tv || tv->is_null()) {
    co_return http::error(400, "invalid_field", "field \"text\" (the answer) is required");
  }
  if (!tv->is_string()) {
    co_return http::error(
        400, "invalid_field",
        "field \"text\" (the answer) must be a string, not " + std::string(json_kind(*tv)));
  }
  if (tv->as_string().empty()) {
    co_return http::error(400, "invalid_field", "field \"text\" (the answer) is empty");
  }
  // Only white space (Unicode's too: NBSP, U+3000), zero-width, control and format characters
  // or blank letters: a customer would get a blank message.
  if (!has_visible_character(std::string_view(tv->as_string()))) {
    co_return http::error(400, "invalid_field",
                          "field \"text\" (the answer) has no visible character: it is only "
                          "white space, zero-width, control or format characters");
  }
  if (tv->as_string().size() > kMaxReplyBytes) {
    co_return http::error(400, "invalid_field", "field \"text\" is longer than 65536 bytes");
  }
  auto parent = records_.find(id);
  if (!parent) {
    co_return http::error(404, "not_found", "no interaction has the id " + id);
  }
  // A retry of a reply whose answer was lost is answered as the first was, whether or not the
  // agent still holds the item (it may have acked since, or its claim timed out): the customer
  // must not get the answer twice.
  if (!key->empty()) {
    if (auto earlier = records_.keyed_reply(id, agent.id, *key)) {
      co_return replayed_reply(id, agent.id, *key, tv->as_string(), *earlier);
    }
  }
  auto f = co_await ops_.holds(id, agent.id, &agent.queues);
  if (!f.error.empty()) {
    co_return redis_unavailable("cannot check the claim: " + f.error);
  }
  if (f.status == Hold::foreign) {
    co_return item_forbidden(agent, "reply to", id, f.queue);
  }
  if (f.status != Hold::held) {
    co_return not_held(id, agent, "reply to", f);
  }
  const Sender* sender = senders_.find(parent->channel, parent->account);
  if (!sender) {
    co_return http::error(422, "no_sender", no_sender_message(parent->channel, parent->account));
  }
  if (std::string too_long = sender->refuse_text(parent->channel, parent->kind, tv->as_string());
      !too_long.empty()) {
    co_return http::error(400, "invalid_field", too_long + "; nothing was stored or sent");
  }
  json::object parent_json;
  json::error_code pec;
  if (auto pv = json::parse(parent->payload, pec); !pec && pv.is_object()) {
    parent_json = pv.as_object();
  }
  // Never to ourselves: a Reply-To naming our support address (or mail we sent) would bring the
  // answer back in as a new message. The channel's own addresses are passed over; when nobody
  // else is named, nothing is stored or sent.
  auto ours = [sender](std::string_view type, std::string_view value) {
    return sender->own_identity(type, value);
  };
  const json::object* recipient = storage::reply_recipient(parent_json, ours);
  if (!recipient) {
    if (const json::object* self = storage::reply_recipient(parent_json)) {
      auto* v = self->if_contains("value");
      std::string address = v && v->is_string() ? std::string(v->get_string()) : "";
      co_return http::error(
          422, "reply_to_self",
          id + " names only our own address (" + address + ", account \"" + parent->account +
              "\") to answer: the reply would come back to our own mailbox; nothing was stored "
              "or sent");
    }
  }
  // A bounce's sender takes no answers: the reply would bounce in turn, or be read by no one,
  // while the agent believes the customer was answered.
  if (std::string why = mail_system_recipient(parent_json, recipient); !why.empty()) {
    co_return http::error(422, "reply_to_bounce",
                          id + " cannot be answered: " + why +
                              "; answer the customer's own message instead; nothing was stored "
                              "or sent");
  }
  std::string out_id = new_ulid();
  std::int64_t now = now_ms();
  json::object o{{"id", out_id},
                 {"channel", parent->channel},
                 {"account", parent->account},
                 {"kind", parent->kind},
                 {"direction", "outbound"},
                 {"external_id", out_id},
                 {"conversation_id", parent->conversation_id},
                 {"agent", agent.id}};
  if (auto* c = parent_json.if_contains("customer")) {
    o["customer"] = *c;
  }
  // SPEC section 5: an identity or null. Ours here would be the channel's own address, which
  // only its sender knows (the SMTP account's From, the bot's id): null rather than a guess.
  o["from"] = nullptr;
  json::array to;  // where the sender delivers it (the email sender picks the same address)
  if (recipient) {
    to.push_back(*recipient);
  }
  o["to"] = std::move(to);
  if (auto* s = parent_json.if_contains("subject")) {
    o["subject"] = *s;
  }
  o["text"] = tv->as_string();
  o["occurred_at"] = format_rfc3339(now);
  o["received_at"] = format_rfc3339(now);
  o["in_reply_to"] = parent->external_id;
  // A channel that keeps a thread's chain (email's References): the parent's chain and the
  // parent, so a later reply to this reply still names the whole thread.
  if (auto* refs = parent_json.if_contains("references"); refs && refs->is_array()) {
    json::array chain = refs->as_array();
    chain.emplace_back(parent->external_id);
    o["references"] = std::move(chain);
  }
  // Every interaction carries these (SPEC section 5), so that timeline clients need no special
  // case for replies. Queue and priority are the parent's as it is now (after any transfer): the
  // queue the reply was made from, as the row records too (Records::reply sets both from the
  // row as it is when the reply is committed).
  o["attachments"] = json::array();
  o["flags"] = json::array();
  o["queue"] = parent->queue;
  o["priority"] = parent->priority;
  std::string out_payload = json::serialize(o);
  auto stored =
      co_await records_.reply(*parent, agent.id, out_id, out_payload, *key,
                              sender->planned_thread_keys(out_id, parent->conversation_id),
                              sender->planned_id(out_id, parent->conversation_id));
  if (!stored.error.empty()) {
    co_return http::error(503, "database_unavailable", "the reply was not stored: " + stored.error);
  }
  if (stored.repeated) {  // an attempt with the same key was committed while this one ran
    auto earlier = records_.keyed_reply(id, agent.id, *key);
    if (!earlier) {  // (committed, so the read connection sees it; kept as a value, not a crash)
      co_return http::error(
          503, "database_unavailable",
          "reply " + stored.outbound_id + " with this Idempotency-Key cannot be read");
    }
    co_return replayed_reply(id, agent.id, *key, tv->as_string(), *earlier);
  }
  sends_.kick();
  // `in_reply_to` here is the parent's interaction id (as since the first version), while the
  // stored reply's `in_reply_to` is the parent's external id (SPEC section 5): `parent_id`
  // names the interaction id unambiguously (README: Agents).
  co_return http::json(202, json::serialize(json::object{{"id", out_id},
                                                         {"in_reply_to", id},
                                                         {"parent_id", id},
                                                         {"send", {{"state", "pending"}}}}));
}

// The answer to a reply whose Idempotency-Key `key` `agent` already used for `parent_id`: the
// first answer, with the send's state as it is now, when the text is the same; otherwise the
// client reused a key for a different answer, a bug that must not pass silently (422, as the
// IETF httpapi draft says for a key reused with another payload).
http::Response Service::replayed_reply(const std::string& parent_id, const std::string& agent,
                                       const std::string& key, std::string_view text,
                                       const KeyedReply& earlier) {
  if (earlier.text != text) {
    return http::error(422, "idempotency_key_reused",
                       "Idempotency-Key \"" + key + "\" was used by agent " + agent +
                           " for reply " + earlier.outbound_id + " to " + parent_id +
                           " with a different text; nothing was stored or sent: use a new key "
                           "for a new answer");
  }
  logger("agents")->info("[agents] {}'s reply to {} repeated with its Idempotency-Key: {} again",
                         agent, parent_id, earlier.outbound_id);
  auto res =
      http::json(202, json::serialize(json::object{{"id", earlier.outbound_id},
                                                   {"in_reply_to", parent_id},
                                                   {"parent_id", parent_id},
                                                   {"send", {{"state", earlier.send_state}}}}));
  res.headers.emplace_back("Idempotent-Replayed", "true");
  return res;
}

Service::Awaitable Service::queues(http::Request& r) {
  if (auto denied = reader_denied(r)) {
    co_return *denied;
  }
  json::array out;
  auto now = now_ms();
  // Shared with concurrent /metrics scrapes and other callers (queue_stats).
  auto all = co_await queue_stats();
  for (const auto& [q, s] : *all) {
    if (s.error.find("WRONGTYPE") != std::string::npos) {
      // This queue's own keys (a stream key an operator overwrote): the others are still
      // listed (DESIGN-NOTES invariant 4), as in /metrics.
      out.push_back(
          json::object{{"queue", q}, {"error", "cannot read queue " + q + ": " + s.error}});
      continue;
    }
    if (!s.error.empty()) {
      co_return redis_unavailable("cannot read the queues: " + s.error);
    }
    std::int64_t depth = 0, claimed = 0, oldest = -1;
    bool exact = true;
    json::object by;
    for (int i = 0; i < 4; ++i) {
      const auto& p = s.by_priority[i];
      depth += p.waiting;
      claimed += p.claimed;
      exact = exact && p.exact;
      if (p.oldest_ms >= 0 && (oldest < 0 || p.oldest_ms < oldest)) {
        oldest = p.oldest_ms;
      }
      by[kPriorities[i]] = {{"depth", p.waiting}, {"claimed", p.claimed}, {"depth_exact", p.exact}};
    }
    out.push_back(
        json::object{{"queue", q},
                     {"depth", depth},
                     // false: depth is a lower bound (kStatsCountLimit, scripts.cpp kStatsBody).
                     {"depth_exact", exact},
                     {"claimed", claimed},
                     // Integers: Boost.JSON writes doubles as "1.5E0", which some clients choke on.
                     {"oldest_waiting_s", oldest < 0 ? 0 : (now - oldest) / 1000},
                     {"oldest_waiting_ms", oldest < 0 ? 0 : now - oldest},
                     {"dead_letters", s.dead},
                     {"priorities", std::move(by)}});
  }
  co_return http::json(200, json::serialize(json::object{{"queues", std::move(out)}}));
}

void Service::add_routes(http::Router& router) {
  // Gates (http::Gate): a request whose body is still to come is refused on its header when its
  // token is unknown, before the body is read. The handlers check again, as they must for the
  // bodies that came with their header.
  http::Gate agent = [this](const http::Request& r) { return agent_auth(r).denied; };
  http::Gate reader = [this](const http::Request& r) { return reader_denied(r); };
  router.add(
      "POST", "/v1/agent/claim", [this](http::Request& r) { return claim(r); }, agent);
  router.add(
      "POST", "/v1/agent/interactions/{id}/ack",
      [this](http::Request& r) { return finish(r, "ack"); }, agent);
  router.add(
      "POST", "/v1/agent/interactions/{id}/release",
      [this](http::Request& r) { return finish(r, "release"); }, agent);
  router.add(
      "POST", "/v1/agent/interactions/{id}/transfer",
      [this](http::Request& r) { return transfer(r); }, agent);
  router.add(
      "POST", "/v1/agent/interactions/{id}/reply", [this](http::Request& r) { return reply(r); },
      agent);
  router.add(
      "POST", "/v1/agent/interactions/{id}/extend", [this](http::Request& r) { return extend(r); },
      agent);
  router.add(
      "GET", "/v1/agent/claims", [this](http::Request& r) { return claims(r); }, agent);
  router.add(
      "GET", "/v1/queues", [this](http::Request& r) { return queues(r); }, reader);
  router.add(
      "GET", "/v1/customers/{id}", [this](http::Request& r) { return customer(r); }, reader);
  router.add(
      "GET", "/v1/customers/{id}/interactions", [this](http::Request& r) { return timeline(r); },
      reader);
  router.add(
      "GET", "/v1/interactions/{id}/attachments/{n}",
      [this](http::Request& r) { return attachment(r); }, reader);
}

}  // namespace sb::agents
