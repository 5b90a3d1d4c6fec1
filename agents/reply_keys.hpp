#pragma once
// How long a reply's Idempotency-Key answers (POST .../reply, agents/routes.cpp), and the sweep
// that forgets older keys.
//
// 24 hours, as Stripe keeps its keys: far longer than any client's retries of a lost answer
// (seconds to minutes, a queued job perhaps hours), and short enough that a key used again a
// day later is a new request, as a client written against Stripe's behaviour expects. Within
// the window a retry gets the first answer; after it, the same key makes a new reply.
//
// The lookups ignore older keys by themselves (Records::keyed_reply, Records::reply), so the
// sweep only keeps the table's key index small: it clears the key (the send row, its state and
// the outbound interaction stay) of replies older than the window.
#include <cstdint>
#include <functional>
#include <string>

#include "storage/writer.hpp"

namespace sb::agents {

constexpr std::int64_t kReplyKeyRetentionMs = 24LL * 3600 * 1000;

// Clears the Idempotency-Keys of replies made before `now_ms` - kReplyKeyRetentionMs, oldest
// first, in batches of at most 500 rows on the index sends_keys_by_age: each batch is a writer
// job of its own, queued behind the requests that arrived meanwhile, so no request waits for
// more than one small batch. At most 100 batches per call; the rest waits for the next sweep.
// `done` (optional) runs on the writer thread with the number of keys cleared and "" or the
// error that stopped the sweep.
void expire_reply_keys(
    storage::Writer& writer, std::int64_t now_ms,
    std::function<void(std::int64_t cleared, const std::string& error)> done = nullptr);

}  // namespace sb::agents
