#include "agents/scripts.hpp"

namespace sb::agents {
namespace {

// Shared helpers, prepended to the scripts that need them.
constexpr const char* kHelpers = R"lua(
local function field(f, name)
  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end
  return ''
end
-- The entry held under `iid` (hash value "<stream> <id>"): key, id, pending info or nil.
-- nil and {-4, stream, error} when its stream is gone: deleted (NOGROUP; the README's fix for a
-- broken key is DEL) or replaced by another type (an operator's SET: WRONGTYPE). The entry went
-- with it, so nobody holds it: the index entry is dropped. An error raised here would fail the
-- whole script run, and with it every other agent's call batched into it (QueueOps), on every
-- retry.
local function holder(held, iid)
  local v = redis.call('HGET', held, iid)
  if not v then return nil end
  local sp = string.find(v, ' ', 1, true)
  local key, id = string.sub(v, 1, sp - 1), string.sub(v, sp + 1)
  local p = redis.pcall('XPENDING', key, 'agents', id, id, 1)
  if type(p) == 'table' and p.err then
    redis.call('HDEL', held, iid)
    return nil, nil, nil, {-4, key, p.err}
  end
  if #p == 0 then
    redis.call('HDEL', held, iid)  -- acknowledged by someone else (a plain Redis client)
    return nil
  end
  return key, id, p[1]
end
-- Whether an entry in stream `key` is in one of `queues` (" general vip ", or "*" for any: the
-- daemon's own calls), and the entry's queue. `head` is "{prefix}:q:"; the queue is what lies
-- between it and the last ':' (QueueOps::queue_of_stream). A key of another shape is not ours
-- to judge.
local function in_queues(key, head, queues)
  if queues == '*' or string.sub(key, 1, #head) ~= head then return true, '' end
  local rest = string.sub(key, #head + 1)
  local q = string.match(rest, '^(.*):[^:]*$') or rest
  return string.find(queues, ' ' .. q .. ' ', 1, true) ~= nil, q
end
-- Parks again the current way the released entries an earlier version left in the streams
-- KEYS[1..4]: idle `r` (kReleaseIdleMs) plus the time since the release. Those versions parked
-- with claim_timeout + 1 s, which after a restart that raised claim_timeout was below it: no
-- claim took the entry, and the counts had it claimed. Which claim_timeout they used is not
-- known: the time since the release is taken as the idle time past the current `ct` + 1 s (0
-- when below), which is what their own rule made of it under this claim_timeout, so the
-- releaser's wait ends when it did. Entries idle at least `rmin` (kReleasedIdleMinMs) are
-- parked the current way already. Consumer and delivery count stay. The released consumers are
-- found in XPENDING's summary (XINFO CONSUMERS is not in the README's ACL list). At most 1000
-- moved per run: false when some are left for the next.
local function repark(r, rmin, ct, released)
  local left = 1000
  for i = 1, 4 do
    local s = redis.pcall('XPENDING', KEYS[i], 'agents')
    if type(s) == 'table' and not s.err and s[4] then  -- none pending: s[4] is false
      for _, c in ipairs(s[4]) do
        local name = c[1]
        if name == released or string.sub(name, 1, #released + 1) == released .. ':' then
          local from = '-'
          repeat
            local p = redis.call('XPENDING', KEYS[i], 'agents', from, '+', 100, name)
            for _, e in ipairs(p) do
              if e[3] < rmin then
                if left == 0 then return false end
                left = left - 1
                redis.call('XCLAIM', KEYS[i], 'agents', name, 0, e[1], 'IDLE',
                           string.format('%.0f', r + math.max(e[3] - ct - 1000, 0)),
                           'RETRYCOUNT', e[4], 'JUSTID')
              end
            end
            if p[1] then from = '(' .. p[#p][1] end
          until #p < 100
        end
      end
    end
  end
  return true
end
)lua";

// KEYS: the queue's streams urgent, high, normal, low; dead-letter stream; held hash; the hash
// of dead letters not yet recorded ({prefix}:dead-unrecorded).
// ARGV: claim_timeout ms, max_deliveries, sweep ("1": look for idle entries first), queue name,
// the idle time a release gives its entry (kReleaseIdleMs, kFinish's ARGV[1]), the released
// pseudo-consumer (kReleasedConsumer), kReleasedIdleMinMs, repark ("1": the first run on this
// queue since the daemon started, which first parks an earlier version's released entries again:
// repark in kHelpers), then one consumer per claim: the claims of one turn of the io loop share one
// script run (QueueOps), which saves Redis the script's fixed cost (about 4 us quiet, 10-20 us with
// the machine busy) for all but one of them. No consumer and sweep "1": the daemon's periodic pass
// (QueueOps::sweep), which only moves the entries past max_deliveries to the dead letters: an
// item whose agents went away would otherwise wait for a claim that never comes, counted as
// waiting, its record `claimed`.
// Per claim, per priority, most urgent first: entries idle past claim_timeout (timed out, or
// released) come first because they are the oldest (XPENDING IDLE + XCLAIM: XAUTOCLAIM's effect
// without its COUNT*10 scan limit); an entry delivered max_deliveries times that timed out again
// goes to the dead-letter stream instead. An entry the claiming consumer itself released less
// than claim_timeout ago (held by `_released:<consumer>`, idle below release idle + claim_timeout;
// one an earlier version parked that repark has not reached yet: below 2 claim_timeout + 1 s,
// that version's rule) is passed over: SPEC's release is "for someone else", and the releaser's
// next claim would otherwise get the item straight back. Other consumers take it at once; after
// claim_timeout the releaser may too (a queue worked by one agent must not lose it). The bare
// `_released` of earlier versions names no releaser: anyone takes it. Then the next new entry
// (XREADGROUP >).
// The search for idle entries runs only when ARGV[3] is "1" (QueueOps asks for it every
// claim_timeout/10, at most 100 ms apart, right after a release, and after a claim passed over a
// released entry): a timed-out entry may wait that much longer.
// Returns {{found, stream, entry id, deliveries, fields[, 1 when never delivered before]} per
// consumer, dead letters, the dead-letter stream's refusal or '', 1 when a claim passed over an
// entry its consumer released (it waits for another claim, whose search must run) or 0, 1 when
// repark ran and left nothing to do (QueueOps then stops asking for it) or 0}. An entry the
// dead-letter stream refuses (not a stream) is left pending for its last holder, untouched, and
// is not handed out past max_deliveries. The dead letters to record, {id, "<queue> <dead entry
// id>", ...} (just "<queue>" from versions before), are read back from KEYS[7] in sweep runs: this
// run's, and any whose reply was lost on the way to the daemon (the connection dropped after the
// script ran). The daemon records them, then removes them (kForgetDead).
constexpr const char* kClaimBody = R"lua(
local idle, maxd, sweep = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local rmin = tonumber(ARGV[7])
-- XPENDING's idle time of an entry released claim_timeout ago: below it, its releaser passes.
-- An entry of an earlier version not parked again yet (repark's limit): its own rule.
local own_until = tonumber(ARGV[5]) + tonumber(ARGV[1])
local old_until = 2 * tonumber(ARGV[1]) + 1000
local reparked = ARGV[8] == '1' and repark(tonumber(ARGV[5]), rmin, tonumber(ARGV[1]), ARGV[6])
local nonempty = {}
local dead_refused = nil  -- the dead-letter key's error, once it refused an entry
-- Moves entry `pid` of stream `key`, delivered n - 1 times, to the dead letters, moved without
-- an XCLAIM: a script's writes are not undone when it fails later, so nothing is changed before
-- the XADD has worked. A dead-letter key that refuses it (an operator's SET) leaves the entry
-- where it is, pending for its last holder, and the refusal is reported: false then (the look
-- goes on past it).
local function bury(key, pid, n)
  local e = redis.call('XRANGE', key, pid, pid)[1]
  if not e then
    redis.call('XACK', key, 'agents', pid)  -- deleted behind our back: drop it
    return true
  end
  if dead_refused then return false end
  local f = e[2]
  f[#f + 1] = 'dead_from'; f[#f + 1] = key
  f[#f + 1] = 'deliveries'; f[#f + 1] = tostring(n - 1)
  local added = redis.pcall('XADD', KEYS[5], '*', unpack(f))
  if type(added) == 'table' and added.err then
    dead_refused = added.err
    return false
  end
  local iid = field(e[2], 'interaction_id')
  redis.call('XACK', key, 'agents', pid)
  redis.call('XDEL', key, pid)
  redis.call('HDEL', KEYS[6], iid)
  -- "<queue> <dead entry id>": the record names the entry, which a transfer out of the dead
  -- letters looks up (kTransfer) instead of reading the stream's payloads.
  redis.call('HSET', KEYS[7], iid, ARGV[4] .. ' ' .. added)
  return true
end
-- Returns the claim's reply or nil, and whether it passed over an entry its consumer released.
local function claim(consumer)
  local own = ARGV[6] .. ':' .. consumer
  local passed = false
  for i = 1, 4 do
    local key = KEYS[i]
    -- An empty stream has nothing new and nothing held (acks XDEL): one call instead of two
    -- (most queues use one or two of their four priorities). Asked once per run: claims do
    -- not delete entries, and nothing else runs while the script does.
    -- A key that is not a stream (an operator's SET: XLEN answers WRONGTYPE) holds nothing to
    -- claim: the queue's other streams go on, as the relay's rows for them do (relay/held.cpp).
    if nonempty[i] == nil then
      local n = redis.pcall('XLEN', key)
      nonempty[i] = type(n) == 'number' and n > 0
    end
    if nonempty[i] then
      -- The oldest entry idle past claim_timeout, found by XPENDING's IDLE filter (one pass
      -- over the pending list in C) and taken with XCLAIM, which counts the delivery.
      -- Read a page at a time, so that entries passed over (this consumer's own releases,
      -- dead letters the dead-letter key refuses) do not use up the look: at most 1000 entries.
      local from = '-'
      for _ = 1, sweep and 100 or 0 do
        local p = redis.call('XPENDING', key, 'agents', 'IDLE', idle, from, '+', 10)
        for _, pe in ipairs(p) do
          local pid, n = pe[1], pe[4] + 1
          from = '(' .. pid
          if pe[2] == own and pe[3] < (pe[3] >= rmin and own_until or old_until) then
            passed = true  -- this consumer released it lately: for someone else
          elseif n > maxd then
            bury(key, pid, n)
          else
            local e = redis.call('XCLAIM', key, 'agents', consumer, idle, pid)[1]
            if e and e[2] then
              redis.call('HSET', KEYS[6], field(e[2], 'interaction_id'), key .. ' ' .. e[1])
              return {1, key, e[1], n, e[2]}, passed
            end
            redis.call('XACK', key, 'agents', pid)  -- deleted behind our back: drop it
          end
        end
        if #p < 10 then break end
      end
      local r = redis.call('XREADGROUP', 'GROUP', 'agents', consumer, 'COUNT', 1, 'STREAMS', key,
                           '>')
      if r and r[1] and r[1][2][1] then
        local e = r[1][2][1]
        redis.call('HSET', KEYS[6], field(e[2], 'interaction_id'), key .. ' ' .. e[1])
        return {1, key, e[1], 1, e[2], 1}, passed
      end
    end
  end
  return nil, passed
end
-- No consumers: the daemon's periodic pass (Service::sweep_queues), for a queue nobody claims
-- from. Every entry idle past claim_timeout that no claim may take again goes to the dead
-- letters; the others stay for the next claim. At most 1000 looked at per stream and run.
local function sweep_only()
  for i = 1, 4 do
    local key = KEYS[i]
    local n = redis.pcall('XLEN', key)
    if type(n) == 'number' and n > 0 then
      local from = '-'
      for _ = 1, 10 do
        local p = redis.pcall('XPENDING', key, 'agents', 'IDLE', idle, from, '+', 100)
        if type(p) ~= 'table' or p.err or not p[1] then break end
        for _, e in ipairs(p) do
          if e[4] + 1 > maxd then bury(key, e[1], e[4] + 1) end
        end
        if #p < 100 then break end
        from = '(' .. p[#p][1]
      end
    end
  end
end
if sweep and #ARGV < 9 then sweep_only() end
local out = {}
local empty, any_passed = false, false
for j = 9, #ARGV do
  local r, passed = nil, false
  if not empty then r, passed = claim(ARGV[j]) end
  any_passed = any_passed or passed
  if r then
    out[#out + 1] = r
  else
    -- Nothing for this one, nor for the rest; but what it passed over (its own release) is for
    -- another consumer of the batch.
    empty = not passed
    out[#out + 1] = {0}
  end
end
return {out, sweep and redis.call('HGETALL', KEYS[7]) or {}, dead_refused or '',
        any_passed and 1 or 0, reparked and 1 or 0}
)lua";

// KEYS: held hash. ARGV: release idle ms, the released pseudo-consumer, "{prefix}:q:", then per
// call interaction id, consumer, mode (ack | release | give_back | check | extend), the consumer's
// queues ("
// a b ", or "*"): the acks, releases and checks of one turn of the io loop share one script run,
// like claims. Returns per call {1, stream, entry id} done; {0} not held by anyone; {-1, holder}
// held by another; {-3, queue} the entry is in a queue not among the consumer's (SPEC: an agent
// reaches only its own queues), checked before who holds it, so that the answer names nobody; {-4,
// stream, error} the entry's stream was deleted or replaced (holder), so nobody holds it.
// ack: XACK + XDEL, so the stream holds exactly the waiting and the held entries.
// release: to `_released:<consumer>` with the idle time kReleaseIdleMs (ARGV[1]), past any
// claim_timeout, and the delivery count it had before this delivery (a release is not a failed
// delivery), so the next claim of another consumer takes it at once; the consumer's own claims
// pass it over for claim_timeout (kClaim), which the idle time past release idle ms measures. The
// newest release counts: its releaser is in the name.
constexpr const char* kFinishBody = R"lua(
local function finish(iid, consumer, mode, queues)
  local key, id, p, gone = holder(KEYS[1], iid)
  if gone then
    local mine, queue = in_queues(gone[2], ARGV[3], queues)
    if not mine then return {-3, queue} end
  end
  if not key then return gone or {0} end
  local mine, queue = in_queues(key, ARGV[3], queues)
  if not mine then return {-3, queue} end
  if p[2] ~= consumer then return {-1, p[2]} end
  if mode == 'check' then return {1, key, id} end
  -- The same consumer claims its own entry again: its idle time starts from 0, so its
  -- claim_timeout starts again; JUSTID leaves the delivery count as it is.
  if mode == 'extend' then
    redis.call('XCLAIM', key, 'agents', consumer, 0, id, 'JUSTID')
    return {1, key, id}
  end
  if mode == 'ack' then
    redis.call('XACK', key, 'agents', id)
    redis.call('XDEL', key, id)
    redis.call('HDEL', KEYS[1], iid)
  else
    -- The index stays: a later call on it (a retry whose reply was lost, another agent's) is
    -- told it waits, held by `_released:<consumer>`, until a claim takes it (and indexes it
    -- again).
    -- give_back: the daemon's own, for an item no agent saw (QueueOps::give_back): anyone's.
    local to = mode == 'give_back' and ARGV[2] or ARGV[2] .. ':' .. consumer
    redis.call('XCLAIM', key, 'agents', to, 0, id, 'IDLE', ARGV[1],
               'RETRYCOUNT', math.max(p[4] - 1, 0), 'JUSTID')
  end
  return {1, key, id}
end
local out = {}
for j = 4, #ARGV, 4 do out[#out + 1] = finish(ARGV[j], ARGV[j + 1], ARGV[j + 2], ARGV[j + 3]) end
return out
)lua";

// KEYS: held hash, target stream, marker, the hash of transfers not yet recorded
// ({prefix}:transfer-unrecorded). ARGV: interaction id, consumer, target priority, new payload,
// marker value ("<consumer> <stream>"), marker ttl s, "{prefix}:q:", the consumer's queues (as
// kFinish), target queue, the time of the request (Unix ms). {-2, error}: the target stream
// refused the entry; {-3, queue}: the entry is in a queue not among the consumer's (the target
// need not be one of them); {-4, stream, error}: the entry's stream was deleted or replaced (as
// kFinish).
// Re-adds the entry's fields (priority and payload updated) to the target stream and
// acknowledges the old entry, atomically: {1, new id, old stream, note, earlier note or ''}.
// The note (JSON: agent, queue, priority, at, entry: the new id, from: the old stream) is what
// the record needs, kept in KEYS[4] until the daemon has recorded it (kForgetTransfers): the
// reply can be lost with the connection after the script ran, and the agent may never retry.
// An earlier note of the same item still there (not recorded yet, or its HDEL on its way) is
// replaced, and handed back so that the daemon records it first.
// A retry of a transfer that already happened (same agent, same target) answers {2, new id,
// note or ''} and adds nothing: while the new entry waits unclaimed, and also once another agent
// claimed it from the target queue (the first attempt's reply was lost, so the daemon may have
// yet to record the transfer: the retry records it, unless the periodic pass did).
// Out of the dead letters (KEYS[5], the dead-letter stream, and KEYS[6], the hash of dead letters
// not yet recorded, given; ARGV[11] the dead entry's id when its record names it, else ''): the
// same move, from the dead-letter entry instead of a held one. Nobody holds a dead letter, so the
// entry itself is what two agents race for: the first run deletes it (XDEL: the stream's length
// is the dead_letters count), a later one finds it gone and answers {0}, or {2, ...} when it is
// the same agent's retry to the same target. Without an id (a dead letter of an earlier version)
// the newest 1000 entries are searched. The fields the burial added (dead_from, deliveries) go:
// the new entry is a fresh delivery, counted from 1 by the consumer group. A dead entry its
// stream lost (trimmed) is rebuilt from ARGV[12..15], the database's fields, when nothing says
// another transfer took it: {1, new id, dead-letter stream, note, earlier note, 'rebuilt'}.
constexpr const char* kTransferBody = R"lua(
-- The note kept of the item's transfer, or '' (none, or the key is not a hash).
local function note_of(iid)
  local v = redis.pcall('HGET', KEYS[4], iid)
  return type(v) == 'string' and v or ''
end
-- The marker, {attempt, new id, dead entry id}: "<agent> <target>|<new id>|<dead entry id>",
-- the last part '' for a held item's transfer, nil in an earlier version's marker (it wrote the
-- first two parts only). nil when there is none.
local function marker()
  local m = redis.call('GET', KEYS[3])
  if not m then return nil end
  local sp = string.find(m, '|', 1, true)
  local rest = string.sub(m, sp + 1)
  local sp2 = string.find(rest, '|', 1, true)
  if not sp2 then return {string.sub(m, 1, sp - 1), rest, nil} end
  return {string.sub(m, 1, sp - 1), string.sub(rest, 1, sp2 - 1), string.sub(rest, sp2 + 1)}
end
-- A retry of this agent's transfer to this target whose reply was lost, when the marker says so
-- and `key`, `id` (the entry the item has now, or nil) are the new entry or nothing.
local function repeated(key, id)
  local m = marker()
  if m and m[1] == ARGV[5] and (not key or (key == KEYS[2] and id == m[2])) then
    return {2, m[2], note_of(ARGV[1])}
  end
  return nil
end
-- Adds fields `f` (priority and payload updated) to the target stream as a new entry, and
-- deletes the old entry `id` of `key` (acknowledged first when it was held), atomically. `dead`:
-- the dead-letter entry it takes the place of ('' for a held one), kept in the marker. Without
-- `key` nothing is deleted (the entry was rebuilt: its stream lost it).
local function move(f, key, id, held, dead)
  for i = 1, #f, 2 do
    if f[i] == 'priority' then f[i + 1] = ARGV[3] end
    if f[i] == 'payload' then f[i + 1] = ARGV[4] end
  end
  local fresh = redis.call('EXISTS', KEYS[2]) == 0
  -- A target key that is not a stream (an operator's SET) refuses the entry: nothing has moved.
  local nid = redis.pcall('XADD', KEYS[2], '*', unpack(f))
  if type(nid) == 'table' and nid.err then return {-2, nid.err} end
  if fresh then redis.pcall('XGROUP', 'CREATE', KEYS[2], 'agents', '0') end
  if held then
    redis.call('XACK', key, 'agents', id)
    redis.call('HDEL', KEYS[1], ARGV[1])
  end
  if key then redis.call('XDEL', key, id) end
  redis.call('SET', KEYS[3], ARGV[5] .. '|' .. nid .. '|' .. dead, 'EX', ARGV[6])
  local note = cjson.encode({agent = ARGV[2], queue = ARGV[9], priority = ARGV[3], at = ARGV[10],
                             entry = nid, from = key or KEYS[5], rebuilt = not key or nil})
  local earlier = note_of(ARGV[1])
  -- The move is done: a notes key that is not a hash (an operator's SET) costs only the note
  -- (the route still records the transfer; a lost reply's record then waits for a retry, as
  -- before).
  local kept = redis.pcall('HSET', KEYS[4], ARGV[1], note)
  if type(kept) == 'table' and kept.err then note = '' end
  return {1, nid, key or KEYS[5], note, earlier}
end
if KEYS[5] then
  local e = nil
  if ARGV[11] ~= '' then
    local r = redis.pcall('XRANGE', KEYS[5], ARGV[11], ARGV[11])
    if type(r) == 'table' and not r.err and r[1] and field(r[1][2], 'interaction_id') == ARGV[1] then
      e = r[1]
    end
  else
    local to = '+'
    for _ = 1, 10 do
      local r = redis.pcall('XREVRANGE', KEYS[5], to, '-', 'COUNT', 100)
      if type(r) ~= 'table' or r.err or not r[1] then break end
      for _, x in ipairs(r) do
        if field(x[2], 'interaction_id') == ARGV[1] then e = x; break end
      end
      if e or #r < 100 then break end
      to = '(' .. r[#r][1]
    end
  end
  local out
  if e then
    local f = {}
    for i = 1, #e[2], 2 do
      local name = e[2][i]
      if name ~= 'dead_from' and name ~= 'deliveries' then
        f[#f + 1] = name; f[#f + 1] = e[2][i + 1]
      end
    end
    out = move(f, KEYS[5], e[1], false, ARGV[11])
  else
    -- A retry of this agent's transfer of this very dead letter (a marker of an earlier version
    -- names none, nor does a record without the entry's id): its reply was lost.
    local m = marker()
    if m and m[1] == ARGV[5] and (m[3] == nil or ARGV[11] == '' or m[3] == ARGV[11]) then
      return {2, m[2], note_of(ARGV[1])}
    end
    -- Not there: another transfer took it out (the marker names this dead entry, or a note of a
    -- transfer not recorded yet is kept), or the stream lost it (MAXLEN, an operator's XDEL) and
    -- the item is in no stream at all. Then, given the database's fields (ARGV[12..15]:
    -- conversation_id, customer_id, channel, kind), it is rebuilt from them as the relay would
    -- have added it: the database is the source of truth. The marker then names the dead entry,
    -- so a second agent's transfer finds it moved. Only with the entry's id: without one the
    -- newest 1000 entries were searched, and the entry may be older, not gone.
    if ARGV[11] == '' or not ARGV[15] or (m and (m[3] == nil or m[3] == ARGV[11])) or
        note_of(ARGV[1]) ~= '' then
      return {0}
    end
    out = move({'interaction_id', ARGV[1], 'conversation_id', ARGV[12], 'customer_id', ARGV[13],
                'channel', ARGV[14], 'kind', ARGV[15], 'priority', ARGV[3], 'payload', ARGV[4]},
               nil, nil, false, ARGV[11])
    if out[1] == 1 then out[6] = 'rebuilt' end
  end
  -- Recorded as dead already (the daemon asks only then), or its record is on its way: that
  -- record must not come again after this transfer's and mark it dead once more.
  if out[1] == 1 then redis.pcall('HDEL', KEYS[6], ARGV[1]) end
  return out
end
local key, id, p, gone = holder(KEYS[1], ARGV[1])
if not key or p[2] ~= ARGV[2] then
  local again = repeated(key, id)
  if again then return again end
  if gone then
    local mine, queue = in_queues(gone[2], ARGV[7], ARGV[8])
    if not mine then return {-3, queue} end
  end
  if not key then return gone or {0} end
  local mine, queue = in_queues(key, ARGV[7], ARGV[8])
  if not mine then return {-3, queue} end
  return {-1, p[2]}
end
local mine, queue = in_queues(key, ARGV[7], ARGV[8])
if not mine then return {-3, queue} end
local e = redis.call('XRANGE', key, id, id)
if not e[1] then return {0} end
return move(e[1][2], key, id, true, '')
)lua";

// KEYS: the queue's four streams, then its dead-letter stream. ARGV: claim_timeout ms, the
// count limit (kStatsCountLimit), max_deliveries, then as kClaim's ARGV[5] to ARGV[8]: release
// idle, released pseudo-consumer, kReleasedIdleMinMs, repark ("1": first park an earlier
// version's released entries again, which would count as claimed). Returns per priority
// {waiting, claimed, oldest waiting entry id or '', 1 when waiting is exact or 0 when it is a
// lower bound}, the dead count, and 1 when repark ran and left nothing to do or 0; an error
// naming the key when one of the four, or the dead-letter key, is not a stream.
// waiting = not yet delivered to the group + pending entries idle past claim_timeout (timed out
// or released: the next claim takes them, a release any claim but its releaser's for
// claim_timeout) but those delivered max_deliveries times (bound for the dead letters at the
// next sweep); claimed = the pending entries not idle that long.
//
// Not yet delivered: Redis has no command that counts a range of a stream without reading it,
// and XINFO GROUPS's lag is not to be trusted. It is missing on Redis < 7, and on Redis 7 while
// an entry after the group's last-delivered id was deleted (the relay's sweep, an operator's
// XDEL); and once the group reads past such a deleted entry, Redis 7.0 counts the read as if
// the deleted entry had been read too, so the lag stays one too high for good (a phantom item).
// An uncapped XRANGE over the backlog instead held Redis for seconds per 50,000 entries on every
// unauthenticated /metrics scrape. So the script counts the stream from both ends in chunks:
// the entries up to `last` (held, or acked by a plain client without XDEL), of which the
// undelivered are XLEN minus these, and the entries after `last`. The first side is small in
// the daemon's own use (its acks delete their entries), and either side read to its end gives
// the exact count. When both sides are longer than the limit, Redis's lag stands in if it has
// one, else waiting is "at least the limit"; either is reported as not exact. A bounded read
// per stream whatever the backlog.
constexpr const char* kStatsBody = R"lua(
local limit, maxd = tonumber(ARGV[2]), tonumber(ARGV[3])
local reparked = ARGV[7] == '1' and
                 repark(tonumber(ARGV[4]), tonumber(ARGV[6]), tonumber(ARGV[1]), ARGV[5])
local chunk = math.min(100, limit)
-- The entries of `key` after `last`; nil and a lower bound when both sides exceed the limit.
local function undelivered(key, last)
  local total = redis.call('XLEN', key)
  local ahead, behind = 0, 0
  local from_a, from_b = '(' .. last, '-'
  while ahead < limit do
    local r = redis.call('XRANGE', key, from_b, last, 'COUNT', chunk)
    behind = behind + #r
    if #r < chunk then return total - behind end
    from_b = '(' .. r[#r][1]
    r = redis.call('XRANGE', key, from_a, '+', 'COUNT', chunk)
    ahead = ahead + #r
    if #r < chunk then return ahead end
    from_a = '(' .. r[#r][1]
  end
  return nil, ahead
end
local out = {}
for i = 1, 4 do
  local key = KEYS[i]
  local waiting, claimed, oldest, exact = 0, 0, '', 1
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'stream' and t ~= 'none' then
    return redis.error_reply('WRONGTYPE the stream key ' .. key .. ' is not a stream (it holds a ' ..
                             t .. ')')
  end
  if t == 'stream' then
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', key)) do
      local t = {}
      for j = 1, #g, 2 do t[g[j]] = g[j + 1] end
      if t['name'] == 'agents' then
        local last = t['last-delivered-id']
        local lag, least = undelivered(key, last)
        if not lag then
          -- Redis's lag may be off (above): a count the script could not make is not exact.
          lag, exact = t['lag'] or least, 0
        end
        local expired = redis.call('XPENDING', key, 'agents', 'IDLE', ARGV[1], '-', '+', 10000)
        if #expired == 10000 then exact = 0 end
        -- An expired entry delivered max_deliveries times is never handed out again: the next
        -- sweep moves it to the dead letters. It is neither waiting nor claimed.
        local due, first = 0, nil
        for _, e in ipairs(expired) do
          if e[4] >= maxd then due = due + 1 elseif not first then first = e[1] end
        end
        waiting = lag + #expired - due
        claimed = t['pending'] - #expired
        local r = redis.call('XRANGE', key, '(' .. last, '+', 'COUNT', 1)
        if r[1] then oldest = r[1][1] end
        if first then oldest = first end  -- older than anything not yet delivered
      end
    end
  end
  out[i] = {waiting, claimed, oldest, exact}
end
local t = redis.call('TYPE', KEYS[5])['ok']
if t ~= 'stream' and t ~= 'none' then
  return redis.error_reply('WRONGTYPE the dead-letter key ' .. KEYS[5] ..
                           ' is not a stream (it holds a ' .. t .. ')')
end
out[5] = redis.call('XLEN', KEYS[5])
out[6] = reparked and 1 or 0
return out
)lua";

// KEYS: the hash of dead letters not yet recorded. ARGV: interaction ids now recorded.
constexpr const char* kForgetDeadBody = R"lua(
return redis.call('HDEL', KEYS[1], unpack(ARGV))
)lua";

// KEYS: the hash of transfers not yet recorded. ARGV: interaction id, note, ...: the notes now
// recorded. A field is deleted only while it still holds that note: a later transfer of the same
// item, made while the earlier one was being recorded, keeps its own.
constexpr const char* kForgetTransfersBody = R"lua(
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
)lua";

// KEYS: the hash of transfers not yet recorded. Returns it (HGETALL): {interaction id, note,
// ...}. Small: a note stays there only from a transfer until its record is committed.
constexpr const char* kUnrecordedTransfersBody = R"lua(
return redis.call('HGETALL', KEYS[1])
)lua";

// After a claim whose reply was lost (the connection dropped after the script ran), the
// entries one consumer holds in a queue: the lost claim's entry is among them (lost_replies.cpp).
// KEYS: the queue's streams urgent, high, normal, low. ARGV: consumer, at most this many per
// stream. Returns {stream, entry id, deliveries, interaction id} per entry, most urgent first,
// oldest first within a priority.
constexpr const char* kHeldByBody = R"lua(
local out = {}
for i = 1, 4 do
  local p = redis.pcall('XPENDING', KEYS[i], 'agents', '-', '+', ARGV[2], ARGV[1])
  if type(p) == 'table' and not p.err then  -- NOGROUP: a stream no claim has used
    for _, e in ipairs(p) do
      local x = redis.call('XRANGE', KEYS[i], e[1], e[1])[1]
      if x then out[#out + 1] = {KEYS[i], e[1], e[4], field(x[2], 'interaction_id'), e[3]} end
    end
  end
end
return out
)lua";

// Hands an entry a lost claim took to the same consumer's next claim. KEYS: its stream, held
// hash. ARGV: entry id, consumer, deliveries, max_deliveries. Only while the consumer still
// holds it with that delivery count (nothing happened to it since it was listed), and never past
// max_deliveries: no claim hands an entry out that often (one delivered more often was meant
// for the dead letters), so no lost claim reply did either. Its claim_timeout starts again now,
// when the agent learns of it (XCLAIM with idle 0; JUSTID keeps the delivery count).
// Returns {0}, or {1, stream, entry id, deliveries, fields} as a claim does.
constexpr const char* kTakeBackBody = R"lua(
-- A stream deleted or replaced since held_by listed it (NOGROUP, WRONGTYPE): nothing to take.
local p = redis.pcall('XPENDING', KEYS[1], 'agents', ARGV[1], ARGV[1], 1)
if p.err then return {0} end
p = p[1]
if not p or p[2] ~= ARGV[2] or p[4] ~= tonumber(ARGV[3]) then return {0} end
if p[4] > tonumber(ARGV[4]) then return {0} end
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]
if not e then return {0} end
redis.call('XCLAIM', KEYS[1], 'agents', ARGV[2], 0, ARGV[1], 'JUSTID')
redis.call('HSET', KEYS[2], field(e[2], 'interaction_id'), KEYS[1] .. ' ' .. ARGV[1])
return {1, KEYS[1], ARGV[1], p[4], e[2]}
)lua";

// KEYS: streams that must have the `agents` group (BUSYGROUP when they do is fine).
constexpr const char* kEnsureGroupsBody = R"lua(
for i = 1, #KEYS do redis.pcall('XGROUP', 'CREATE', KEYS[i], 'agents', '0', 'MKSTREAM') end
return #KEYS
)lua";

}  // namespace

std::vector<std::string> lua_scripts() {
  return {std::string(kHelpers) + kClaimBody,
          std::string(kHelpers) + kFinishBody,
          std::string(kHelpers) + kTransferBody,
          std::string(kHelpers) + kStatsBody,
          kEnsureGroupsBody,
          kForgetDeadBody,
          std::string(kHelpers) + kHeldByBody,
          std::string(kHelpers) + kTakeBackBody,
          kForgetTransfersBody,
          kUnrecordedTransfersBody};
}

}  // namespace sb::agents
