#pragma once
// The order in which a conversation's replies go out (agents/records.cpp: due_sends,
// next_send_at), here so that the storage tests can check its plan against the schema.

namespace sb::storage {

// The condition that holds a reply back behind an earlier one of its conversation (SQL over
// `s`, the send, and `i`, its outbound interaction). The customer must read the answers in the
// order they were written: a reply that waits for a retry (a provider's throttle, a 5xx, a
// pause of the whole account: attempts or account_paused) or whose attempt is out (marked:
// Sender::marks_attempts, every social channel's) goes first, and the later ones of the
// conversation wait until its result is recorded (sent, or failed for good). Earlier means
// stored earlier (the outbound interaction's seq, in commit order). Replies none of which has
// been tried yet go out together, as they were written together (and email's, whose attempts
// are not marked, while the first is out). An interaction without a conversation holds nothing.
//
// It starts from the pending sends (sends_due; a handful at any time) and looks up each one's
// interaction, CROSS JOIN keeping that order: starting from the conversation instead read every
// interaction of it, on every pass of the send loop (0.73 s for a conversation of 100,000).
inline constexpr const char* kHeldBehindEarlier =
    "EXISTS (SELECT 1 FROM sends e CROSS JOIN interactions ci ON ci.id = e.interaction_id "
    "WHERE e.state = 'pending' "
    "AND (e.attempts > 0 OR e.account_paused != 0 OR e.attempt_started_at IS NOT NULL) "
    "AND ci.conversation_id = i.conversation_id AND ci.seq < i.seq)";

}  // namespace sb::storage
