#pragma once
// A reply given up on tells its parent, and puts it back to work when nobody holds it any more:
// the customer must not be left unanswered with nobody told. On the writer thread, in the
// transaction that records the failure (or the parent's finish).
#include <cstdint>
#include <string>

#include "storage/sqlite.hpp"

namespace sb::storage {

// The reply `outbound_id` failed: given up on by the send loop (its send still `pending`), or
// reported failed after it went out (`sent`: a WhatsApp/Meta status webhook, an email bounce).
// Call before the send's state turns `failed`; a send already `failed` was told before and is
// left alone (a repeated webhook or bounce requeues nothing). Adds a `send_failed` event to the
// parent {outbound_id, error, back_to_work, and queue and priority when back to work}; a parent
// `done` goes back to its queue (outbox row, queue_round+1, `send_failed` in its payload).
void tell_parent_of_failure(Db& db, const std::string& outbound_id, const std::string& error,
                            std::int64_t at);

// The parent `iid` was just finished (state `done`, in this transaction): when a reply to it
// failed while it was held and nothing came after (the latest of its claim, reply and
// send_failed events is that failure, with back_to_work false), it goes back to work now, with
// a `send_failed` event {..., back_to_work: true, on_finish: true}.
void requeue_on_finish(Db& db, const std::string& iid, std::int64_t at);

}  // namespace sb::storage
