#pragma once
// The seam between the agent `reply` route and the channels that can answer.
//
// The agents layer stores an outbound interaction and a durable send job in one transaction,
// then hands the job to the Sender registered for the (channel, account) of the interaction
// being answered. The Sender talks to the provider (SMTP, Mastodon, X, Meta, Telegram) and
// reports one SendResult; the agents layer records it on the interaction (`pending`, `sent`,
// `failed`) and retries `retry` results with back-off. A job may be handed over more than
// once (a crash between the send and the commit of its result): senders pass `id` to the
// provider as an idempotency key where the provider has one.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sb {

struct OutboundMessage {
  std::string id;       // the outbound interaction id (idempotency key)
  std::string channel;  // channel of the conversation (email, mastodon, x, ...)
  std::string account;  // configured channel name
  std::string conversation_id;
  std::string text;         // the agent's answer, plain UTF-8
  std::string parent_json;  // the interaction being answered, as SPEC section 5 JSON
  std::string thread_json;  // optional: channel-specific threading data (e.g. References)
  // An earlier attempt of this send had an unknown outcome (SendResult::unknown): the provider
  // may have posted it already. A sender whose provider refuses a repeat (X's duplicate content)
  // may then take the refusal for the earlier attempt's success.
  bool maybe_sent = false;
  // When the first attempt that may have posted it started (Unix ms): the earliest attempt
  // whose outcome was unknown, or the one cut by a stop (interrupted()); 0: none known. A
  // provider whose idempotency key expires (Mastodon's hour) counts from it.
  std::int64_t uncertain_since_ms = 0;
  // The id the message goes out with, fixed when the reply was stored (Sender::planned_id,
  // sends.planned_id): every attempt carries it, whatever the channel's config says by then.
  // "": none stored (a reply stored by an older build, a channel that fixes none).
  std::string planned_id;
  // Our earlier replies that the interaction being answered names (its own id, in_reply_to,
  // references: the reply route stores ours under their interaction ids), each with the id it
  // went out with: its planned id, else the provider id its send recorded. Ones not here (not
  // sent, stored by an older build) are for the channel to derive as before.
  std::map<std::string, std::string> earlier_ids;
};

struct SendResult {
  enum class Status { sent, retry, failed };
  Status status = Status::failed;
  std::string provider_id;  // the provider's id of what was sent (Message-ID, status id, ...)
  std::string error;        // provider's message for retry/failed
  std::chrono::milliseconds retry_after{0};  // provider-requested delay for `retry` (0: default)
  // For `sent`: conversation keys (storage conversation_keys, the channel's thread_lookup
  // format) naming what was sent, so that the customer's answer to it joins the conversation
  // (e.g. "mastodon:<account>:<status id>"). Recorded with the result.
  std::vector<std::string> thread_keys;
  // The request reached the provider and no answer came (a timeout, a connection lost while
  // waiting): it may have been carried out. Remembered on the send (sends.maybe_sent). With
  // `retry` (a provider with an idempotency key, or one that refuses a repeat) it is told to the
  // later attempts (OutboundMessage::maybe_sent); with `failed` the sender gave up rather than
  // risk posting the answer twice (Telegram, Meta).
  bool unknown = false;
  // With `retry`: the provider refuses every reply of the account until retry_after has passed
  // (X's 24-hour posting limit; a Meta rate limit of the app, Page or WhatsApp number), and said
  // so; this reply did nothing wrong. The attempt is not
  // counted against the reply's maximum, and the wait may be as long as a day
  // (SendPolicy::max_account_wait) rather than the hour of other provider waits. The sender
  // logs the pause once and answers its account's other replies the same way until it ends,
  // without asking the provider.
  bool account_paused = false;
  // With `retry`: the provider throttles this reply (a rate limit of one recipient: WhatsApp's
  // 131056 pair rate limit; Meta's limits of a whole app or Page pause instead, account_paused)
  // and names no time it ends, while such limits may last up to an hour. The
  // attempt counts, but the back-off starts at SendPolicy::throttle_first_backoff rather than a
  // second, so that the reply's attempts span about an hour rather than two minutes. A
  // retry_after, when given, still wins.
  bool throttled = false;

  static SendResult sent(std::string provider_id) {
    return {Status::sent, std::move(provider_id), {}, {}, {}};
  }
  static SendResult retry(std::string error, std::chrono::milliseconds after = {}) {
    return {Status::retry, {}, std::move(error), after, {}};
  }
  // A retry once the account's pause ends (see `account_paused`).
  static SendResult paused(std::string error, std::chrono::milliseconds until) {
    SendResult r = retry(std::move(error), until);
    r.account_paused = true;
    return r;
  }
  // A retry with the longer back-off of a throttled sender (see `throttled`).
  static SendResult throttle(std::string error, std::chrono::milliseconds after = {}) {
    SendResult r = retry(std::move(error), after);
    r.throttled = true;
    return r;
  }
  // A retry after an attempt whose outcome is unknown (see `unknown`).
  static SendResult unknown_outcome(std::string error) {
    SendResult r = retry(std::move(error));
    r.unknown = true;
    return r;
  }
  static SendResult failed(std::string error) {
    return {Status::failed, {}, std::move(error), {}, {}};
  }
  // A failure after an attempt whose outcome is unknown, not retried (see `unknown`).
  static SendResult failed_unknown(std::string error) {
    SendResult r = failed(std::move(error));
    r.unknown = true;
    return r;
  }
};

class Sender {
 public:
  using Done = std::function<void(SendResult)>;
  virtual ~Sender() = default;
  // Starts one send; `done` is called exactly once, on any thread.
  virtual void send(OutboundMessage message, Done done) = 0;
  // A provider without an idempotency key (Telegram, Meta) posts a repeated request as a second
  // message, and X refuses it as duplicate content, which on a first attempt reads as a failure.
  // For such a sender the send loop commits a mark on the send before it hands an attempt over
  // (sends.attempt_started_at), and the attempt's result clears it: a pending send found with
  // the mark had its request out when the daemon stopped (kill -9, or a stop whose drain ended
  // first), and is settled with interrupted() instead of being handed over blindly. Mastodon
  // marks too: its Idempotency-Key lasts an hour, so a repeat is safe only inside it. Email (its
  // Message-ID is fixed when the reply is stored, planned_id, so a repeat is the same message to
  // a mail client) is handed over again. Any thread.
  virtual bool marks_attempts() const { return false; }
  // The result of an attempt of `m` whose request may have gone out and whose answer was never
  // learned, `why` saying how (only when marks_attempts()): an unknown outcome as the sender
  // gives it for a lost answer (Telegram and Meta: failed; X: retried, marked maybe_sent).
  // io thread of the send loop.
  virtual SendResult interrupted(const OutboundMessage& m, const std::string& why) {
    return SendResult::failed_unknown("outcome unknown: " + why + "; not retried");
  }
  // Whether the identity (its type and canonical value, as in the interaction JSON) is this
  // channel's own: the address we answer from, a mailbox we poll. An answer is never sent to
  // one of them (it would come back in as a new message, a loop): the reply route passes them
  // over when it picks the recipient, and refuses a reply that has no one else to go to.
  // Any thread.
  virtual bool own_identity(std::string_view type, std::string_view value) const { return false; }
  // The conversation keys (as SendResult::thread_keys) that the message sent for outbound
  // interaction `outbound_id` of `conversation_id` will carry, where the channel knows them
  // before sending (email: the Message-ID is derived from the id). The reply route records
  // them with the outbound interaction, in the transaction that stores it: an answer that
  // arrives before the send's result is committed (or after an attempt that reached the
  // customer although its outcome was never learned) still finds the conversation. Any thread.
  virtual std::vector<std::string> planned_thread_keys(std::string_view /*outbound_id*/,
                                                       std::string_view /*conversation_id*/) const {
    return {};
  }
  // The id the message sent for outbound interaction `outbound_id` of `conversation_id` will go
  // out with, where the channel fixes it before sending (email: its Message-ID); "" otherwise.
  // The reply route stores it with the outbound interaction (sends.planned_id), in the
  // transaction that stores it, and every attempt gets it back (OutboundMessage::planned_id):
  // a resend after a crash, or after the account's config changed, is the same message, and a
  // later reply names the id the customer's client has. Any thread.
  virtual std::string planned_id(std::string_view /*outbound_id*/,
                                 std::string_view /*conversation_id*/) const {
    return {};
  }
  // Why `text` cannot go as the answer to a `parent_kind` interaction of `channel`: over the
  // provider's length limit for it, named with the limit; "" when it can. The reply route
  // refuses such a reply (400) before storing it: accepted, it would only fail at the send,
  // after the 202 told the agent it was on its way. Any thread.
  virtual std::string refuse_text(std::string_view /*channel*/, std::string_view /*parent_kind*/,
                                  std::string_view /*text*/) const {
    return {};
  }
  // After a reload put new secrets into the sender's account (config::take_secrets), on the io
  // thread: ends a pause of the whole account (SendResult::account_paused) that was learned
  // under credentials the account no longer uses (X's 24-hour limits are another user's or
  // app's), and says whether one ended. The send loop then brings forward the replies it holds
  // until that pause's end, which the new credentials do not share.
  virtual bool end_pause_of_old_credentials() { return false; }
};

// Senders by (channel, account). Filled while the daemon starts; read-only afterwards.
class SenderRegistry {
 public:
  void add(const std::string& channel, const std::string& account, std::shared_ptr<Sender> s) {
    senders_[{channel, account}] = std::move(s);
  }
  Sender* find(const std::string& channel, const std::string& account) const {
    auto it = senders_.find({channel, account});
    return it == senders_.end() ? nullptr : it->second.get();
  }
  // `fn(channel, account, sender)` for each registration (a sender registered for several
  // channels, as Meta's, comes once per channel).
  template <typename Fn>
  void each(Fn&& fn) const {
    for (const auto& [key, sender] : senders_) {
      fn(key.first, key.second, *sender);
    }
  }

 private:
  std::map<std::pair<std::string, std::string>, std::shared_ptr<Sender>> senders_;
};

}  // namespace sb
