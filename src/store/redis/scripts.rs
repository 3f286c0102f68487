//! The Lua scripts of the Redis store. Each runs atomically on the server, so
//! a check and the write it guards (a ticket's status, the audit head) cannot
//! be split by another replica. Every key a script names is under the
//! `{rollgate}` hash tag, so in a Cluster they all live in one slot; scripts
//! that build keys from a prefix (grant and ticket bodies) rely on that.
//!
//! Scripts are sent by SHA (`EVALSHA`); the store loads them again when a
//! restarted server answers `NOSCRIPT`.

use std::sync::LazyLock;

use redis::Script;

/// Stores a new ticket and indexes it.
/// KEYS: ticket hash, all-tickets index, status index.
/// ARGV: id, status, body, revision.
pub static CREATE_TICKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'body', ARGV[3], 'rev', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
return 1
",
    )
});

/// Compare-and-set of a ticket on its revision: 1 when replaced, 0 when the
/// stored revision was not the expected one (or the ticket does not exist).
/// A ticket stored without `rev` (by an older rollgate) is at revision 0.
/// The ticket moves from the index of its stored status to that of its new one.
/// Revisions are compared as the decimal strings the client writes.
/// KEYS: ticket hash, index of the new status.
/// ARGV: expected revision, new revision, new status, body, id, status index
/// prefix (`{rollgate}:tickets:`, so the old status's index shares the slot).
pub static UPDATE_TICKET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local old = redis.call('HGET', KEYS[1], 'status')
if not old or (redis.call('HGET', KEYS[1], 'rev') or '0') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'rev', ARGV[2], 'body', ARGV[4])
if old ~= ARGV[3] then
  redis.call('ZREM', ARGV[6] .. old, ARGV[5])
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[5])
return 1
",
    )
});

/// One page of a ticket index, newest first: `{last id scanned or '', body, …}`.
/// KEYS: the index. ARGV: exclusive upper bound (`(42`) or `+inf`, page size,
/// ticket key prefix.
pub static TICKET_PAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'LIMIT', 0, ARGV[2])
local out = {ids[#ids] or ''}
for _, id in ipairs(ids) do
  local body = redis.call('HGET', ARGV[3] .. id, 'body')
  if body then out[#out + 1] = body end
end
return out
",
    )
});

/// Stores a grant expiring at its `expires_at` and adds it to its indexes,
/// dropping their expired members; each index key expires with its
/// latest-expiring member.
/// KEYS: grant body, then the indexes (subject, namespace, user, all).
/// ARGV: jti, expires_at (Unix seconds), body, now (Unix seconds).
pub static PUT_GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[3], 'EXAT', ARGV[2])
local expiring, meta = KEYS[#KEYS - 1], KEYS[#KEYS]
redis.call('ZADD', expiring, ARGV[2], ARGV[1])
redis.call('HSET', meta, ARGV[1], ARGV[5])
for i = 2, #KEYS - 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[4])
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[1])
  local top = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
  redis.call('EXPIREAT', KEYS[i], top[2])
end
return 1
",
    )
});

/// Bodies of the live grants of an index, latest-expiring first: with the
/// (namespace, application, user) index and a limit, the webhook's one round trip.
/// KEYS: the index. ARGV: now, grant key prefix, most to return (0: all).
pub static LIST_GRANTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local jtis
if tonumber(ARGV[3]) > 0 then
  jtis = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
else
  jtis = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. ARGV[1])
end
local out = {}
for _, jti in ipairs(jtis) do
  local body = redis.call('GET', ARGV[2] .. jti)
  if body then out[#out + 1] = body end
end
return out
",
    )
});

/// Removes a grant and its index entries at once; 1 when the body existed.
/// KEYS: grant body, then its indexes. ARGV: jti.
pub static REVOKE_GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existed = redis.call('DEL', KEYS[1])
for i = 2, #KEYS - 1 do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
redis.call('HDEL', KEYS[#KEYS], ARGV[1])
return existed
",
    )
});

/// Takes the grants that expired unrevoked: removes each expired jti from the
/// expiring index and answers its stored JSON, so across replicas every
/// expiry is taken exactly once.
/// KEYS: the expiring index, the meta hash. ARGV: now, most to take.
pub static TAKE_EXPIRED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local jtis = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, jti in ipairs(jtis) do
  redis.call('ZREM', KEYS[1], jti)
  local meta = redis.call('HGET', KEYS[2], jti)
  redis.call('HDEL', KEYS[2], jti)
  if meta then out[#out + 1] = meta end
end
return out
",
    )
});

/// Compare-and-append to the audit stream. Appends entry `<seq>-0` only if
/// the stream's last entry is `<seq - 1>` with hash `prevHash`, and answers
/// `{1, seq, hash}`; otherwise appends nothing and answers `{0, head seq,
/// head hash}` so the client relinks its record and tries again.
///
/// Fairness: the first replica refused claims the next turn for 100 ms (the
/// turn key), during which only it may append; it knows the head from the
/// refusal, so its retry succeeds, and a replica appending in a tight loop
/// cannot starve the others.
/// Limits (an allowed admission): when the grant's use counter has reached
/// its maximum, or the application's rate window is full, nothing is
/// appended and the answer is `{2, 'used_up', max}` or `{2, 'rate', next
/// allowed unix time}`; otherwise the append counts against them.
/// Indexes: the record's seq goes into its namespace's and its
/// application's index and, unless it is an ADMISSION, its event's; the
/// index marker follows when it was current (records appended by a rollgate
/// without indexes are caught up by `INDEX_AUDIT`).
/// Operations: a record with an operation is added to its index; an
/// admitted change also opens the operation (the open-operations zset,
/// scored by seq), and its final ROLLOUT record closes it.
/// KEYS: the stream, the turn key, the operation index, the grant's use
/// counter, the application's rate window, the namespace index, the
/// application index, the index marker, the open operations, the
/// operation's lease, the event index (unused keys are still named).
/// ARGV: seq, prevHash, genesis hash, record hash, record JSON, replica id,
/// operation mark ('0' no operation, '1' index only, '2' open, '3' close),
/// max uses (0: none), use counter expiry (unix), rate limit (0: none),
/// window seconds, now (unix), '1' when the record has a namespace, '1' when
/// it has a namespace and an application, operation id, '1' when its event
/// is indexed.
pub static APPEND_AUDIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local seq, head = 0, ARGV[3]
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  seq = tonumber(string.match(last[1][1], '^(%d+)-'))
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'hash' then head = fields[i + 1] end
  end
end
local turn = redis.call('GET', KEYS[2])
local linked = string.format('%d', seq + 1) == ARGV[1] and head == ARGV[2]
if not linked or (turn and turn ~= ARGV[6]) then
  if not turn then
    redis.call('SET', KEYS[2], ARGV[6], 'PX', 100)
  end
  return {0, string.format('%d', seq), head}
end
local max_uses = tonumber(ARGV[8])
if max_uses > 0 then
  local used = tonumber(redis.call('GET', KEYS[4]) or '0')
  if used >= max_uses then
    if turn then redis.call('DEL', KEYS[2]) end
    return {2, 'used_up', ARGV[8]}
  end
end
local limit, window, now = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
if limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[5])
  if count >= limit then
    local nth = redis.call('ZRANGE', KEYS[5], count - limit, count - limit, 'WITHSCORES')
    if turn then redis.call('DEL', KEYS[2]) end
    return {2, 'rate', string.format('%d', tonumber(nth[2]) + window)}
  end
end
redis.call('XADD', KEYS[1], ARGV[1] .. '-0', 'hash', ARGV[4], 'record', ARGV[5])
if ARGV[7] ~= '0' then
  redis.call('ZADD', KEYS[3], ARGV[1], ARGV[1])
end
if ARGV[7] == '2' then
  redis.call('ZADD', KEYS[9], 'NX', ARGV[1], ARGV[15])
elseif ARGV[7] == '3' then
  redis.call('ZREM', KEYS[9], ARGV[15])
  redis.call('DEL', KEYS[10])
end
if ARGV[13] == '1' then
  redis.call('ZADD', KEYS[6], ARGV[1], ARGV[1])
end
if ARGV[14] == '1' then
  redis.call('ZADD', KEYS[7], ARGV[1], ARGV[1])
end
if ARGV[16] == '1' then
  redis.call('ZADD', KEYS[11], ARGV[1], ARGV[1])
end
if tonumber(redis.call('GET', KEYS[8]) or '0') == seq then
  redis.call('SET', KEYS[8], ARGV[1])
end
if max_uses > 0 then
  redis.call('INCR', KEYS[4])
  redis.call('EXPIREAT', KEYS[4], ARGV[9])
end
if limit > 0 then
  redis.call('ZADD', KEYS[5], now, ARGV[1])
  redis.call('EXPIRE', KEYS[5], window)
end
if turn then
  redis.call('DEL', KEYS[2])
end
return {1, ARGV[1], ARGV[4]}
",
    )
});

/// The limits of `APPEND_AUDIT`, read only: what an append of an allowed
/// admission would answer now, for a dry run. Writes nothing (the rate
/// window is counted above its cut-off instead of pruned), so a check never
/// counts against anything. Answers `{0, '', ''}` within the limits, else
/// `{2, 'used_up', max}` or `{2, 'rate', next allowed unix time}` as
/// `APPEND_AUDIT` does.
/// KEYS: the grant's use counter, the application's rate window.
/// ARGV: max uses (0: none), rate limit (0: none), window seconds, now (unix).
pub static CHECK_ADMISSION_LIMITS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local max_uses = tonumber(ARGV[1])
if max_uses > 0 then
  local used = tonumber(redis.call('GET', KEYS[1]) or '0')
  if used >= max_uses then
    return {2, 'used_up', ARGV[1]}
  end
end
local limit, window, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if limit > 0 then
  local after = '(' .. string.format('%d', now - window)
  local count = redis.call('ZCOUNT', KEYS[2], after, '+inf')
  if count >= limit then
    local nth = redis.call('ZRANGEBYSCORE', KEYS[2], after, '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
    return {2, 'rate', string.format('%d', tonumber(nth[2]) + window)}
  end
end
return {0, '', ''}
",
    )
});

/// Records of one operation, newest first: `{members scanned, last seq
/// scanned or '', entries}` with entries shaped as `XRANGE` answers them.
/// KEYS: the stream, the operation index. ARGV: exclusive upper bound
/// (`(42`) or `+inf`, page size.
pub static AUDIT_BY_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local seqs = redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[1], '-inf', 'LIMIT', 0, ARGV[2])
local out = {}
for _, s in ipairs(seqs) do
  local e = redis.call('XRANGE', KEYS[1], s .. '-0', s .. '-0')
  if #e > 0 then out[#out + 1] = e[1] end
end
return {#seqs, seqs[#seqs] or '', out}
",
    )
});

/// Records of a namespace, application or event index, newest first, as
/// `AUDIT_BY_OPERATION` answers them; or `{-1}` when the index marker is
/// behind the stream (records not indexed yet: run `INDEX_AUDIT` first).
/// KEYS: the stream, the index, the index marker. ARGV: exclusive upper
/// bound (`(42`) or `+inf`, page size.
pub static AUDIT_BY_INDEX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  local seq = tonumber(string.match(last[1][1], '^(%d+)-'))
  if tonumber(redis.call('GET', KEYS[3]) or '0') < seq then
    return {-1}
  end
end
local seqs = redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[1], '-inf', 'LIMIT', 0, ARGV[2])
local out = {}
for _, s in ipairs(seqs) do
  local e = redis.call('XRANGE', KEYS[1], s .. '-0', s .. '-0')
  if #e > 0 then out[#out + 1] = e[1] end
end
return {#seqs, seqs[#seqs] or '', out}
",
    )
});

/// Indexes records the marker has not covered yet (appended by a rollgate
/// without indexes, or before them), up to a batch, and moves the marker:
/// answers `{records indexed, marker}`. Idempotent, so replicas may race.
/// Every event but ADMISSION is indexed, as `APPEND_AUDIT` does.
/// KEYS: the stream, the index marker. ARGV: namespace index prefix,
/// application index prefix, batch size, event index prefix.
pub static INDEX_AUDIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local upto = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = '(' .. string.format('%d', upto) .. '-0'
local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', tonumber(ARGV[3]))
for _, e in ipairs(entries) do
  local seq = string.match(e[1], '^(%d+)-')
  local fields = e[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'record' then
      local ok, r = pcall(cjson.decode, fields[i + 1])
      if ok and type(r) == 'table' and type(r.namespace) == 'string' then
        redis.call('ZADD', ARGV[1] .. r.namespace, seq, seq)
        if type(r.applicationName) == 'string' then
          redis.call('ZADD', ARGV[2] .. r.namespace .. '/' .. r.applicationName, seq, seq)
        end
      end
      if ok and type(r) == 'table' and type(r.event) == 'string' and r.event ~= 'ADMISSION' then
        redis.call('ZADD', ARGV[4] .. r.event, seq, seq)
      end
    end
  end
  upto = tonumber(seq)
end
if #entries > 0 then
  redis.call('SET', KEYS[2], string.format('%d', upto))
end
return {#entries, string.format('%d', upto)}
",
    )
});

/// Takes or renews an operation's lease: 1 when `holder` has it now, 0 when
/// another holder's lease is still running.
/// KEYS: the lease. ARGV: holder, lifetime (ms).
pub static LEASE_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
",
    )
});

/// Gives a lease up if `holder` has it.
/// KEYS: the lease. ARGV: holder.
pub static RELEASE_OPERATION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});
