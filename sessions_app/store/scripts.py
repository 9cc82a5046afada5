"""The store's Lua scripts. Each is one atomic Redis call on one shard; every key it touches
comes from keys.py via KEYS (the session's keys and its shard's indexes), none is built in
Lua, so each call maps to one Redis Cluster slot. A question about sessions whose ids are not
known yet takes two steps: a script returns ids from an index, a second (ROWS, SNAPSHOT, CLAIM)
is given their keys.
"""

# Scripts that write: with REDIS_WAIT_REPLICAS set they wait for replicas (execute_durably).
WRITES = frozenset({"create", "apply", "extend", "end", "delete", "idem_claim", "idem_release"})

# Status checks shared by the write scripts. Returns an error table or nil.
_GUARD = """
local function guard(m, now)
  if not m[1] then return {-1} end
  if m[1] ~= 'active' then return {-2, m[1]} end
  if tonumber(m[2]) <= tonumber(now) then return {-2, 'expired'} end
  return nil
end
"""

# KEYS: meta, due, activity, user index, type index, idempotency key, events, context,
#       results, event ids
# (The idempotency key is in the session's slot: the store draws the id in the key's shard.
# A caller-chosen id in another shard: use_idempotency 0 and a placeholder; see IDEM_CLAIM.)
# ARGV: id, now, expires_at, redis_expire_ms, use_idempotency, idempotency_ttl, body hash,
#       max live sessions of this user (0: no cap), max live sessions in all (0: no cap),
#       field, value...
# Returns {1, id} created, {0, id} the idempotency key's earlier session, {-6, id} the key was
# used with another body, {-7} the id is in use, {-8, scope, cap} a live-session cap is reached.
CREATE = """
if ARGV[5] == '1' then
  local existing = redis.call('GET', KEYS[6])
  if existing then
    local sep = string.find(existing, '|', 1, true)
    local id = string.sub(existing, 1, sep - 1)
    if string.sub(existing, sep + 1) ~= ARGV[7] then return {-6, id} end
    return {0, id}
  end
end
if redis.call('EXISTS', KEYS[1], KEYS[7], KEYS[8], KEYS[9], KEYS[10]) > 0 then return {-7} end
local user_cap, total_cap = tonumber(ARGV[8]), tonumber(ARGV[9])
if user_cap > 0 and redis.call('ZCARD', KEYS[4]) >= user_cap then return {-8, 'user', user_cap} end
if total_cap > 0 and redis.call('ZCARD', KEYS[3]) >= total_cap then
  return {-8, 'total', total_cap}
end
redis.call('HSET', KEYS[1], unpack(ARGV, 10))
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
if ARGV[5] == '1' then
  redis.call('SET', KEYS[6], ARGV[1] .. '|' .. ARGV[7], 'EX', ARGV[6])
  redis.call('HSET', KEYS[1], 'idem_key', KEYS[6])
end
return {1, ARGV[1]}
"""

# Every write to a live session: events (deduplicated by event id), context and result keys
# set or removed, meta fields set, counters moved; all or nothing, in one call.
# KEYS: meta, events, context, results, activity, event ids
# ARGV: 1 id, 2 now, 3 per-type query limits ("equity=1000 crypto=..."), 4 per-type max events
#       (0: none), 5 per-type max context+result bytes (0: none), 6 number of events n, then n times
#       (event id or '', kind, event JSON without its opening brace or '' for a write that only
#       moves counters (no timeline entry: its id is still recorded), "field incr ..." integer
#       counters, "field incr ..." float counters),
#       then sections, each a count then its items: context sets (key, JSON), context removals
#       (key), result sets (key, JSON), result removals (key), meta sets (field, value),
#       "field incr ..." integer counters, "field incr ..." float counters.
# Returns {1, per event: seq, -1 (duplicate event id) or -2 (counters only, applied)} or an error
# table:
# {-1} missing, {-2, status}, {-4, limit} query limit, {-9, limit} event cap, {-10, limit} bytes.
APPLY = (
    _GUARD
    + """
local m = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'query_count', 'redis_expire_ms',
                      'session_type', 'event_count')
local err = guard(m, ARGV[2])
if err then return err end
local n = tonumber(ARGV[6])
local fresh, seen, queries, added, has_ids = {}, {}, 0, 0, false
local i = 7
for e = 1, n do
  local eid = ARGV[i]
  local dup = false
  if eid ~= '' then
    has_ids = true
    dup = seen[eid] or redis.call('SISMEMBER', KEYS[6], eid) == 1
    seen[eid] = true
  end
  fresh[e] = not dup
  if not dup and ARGV[i + 2] ~= '' then
    added = added + 1
    if ARGV[i + 1] == 'query' then queries = queries + 1 end
  end
  i = i + 5
end
if queries > 0 then
  local limit = tonumber(string.match(ARGV[3], m[5] .. '=(%d+)'))
  if tonumber(m[3] or 0) + queries > limit then return {-4, limit} end
end
local seq = tonumber(m[6] or 0)
local max_events = tonumber(string.match(ARGV[4], m[5] .. '=(%d+)') or 0)
if added > 0 and max_events > 0 and seq + added > max_events then return {-9, max_events} end
-- Parse the sections before writing anything, so a cap failure changes nothing.
local j = i
local sections = {}
for s = 1, 5 do
  local count = tonumber(ARGV[j])
  local width = (s == 2 or s == 4) and 1 or 2
  sections[s] = {j + 1, count, width}
  j = j + 1 + count * width
end
local int_incr, float_incr = ARGV[j], ARGV[j + 1]
local max_bytes = tonumber(string.match(ARGV[5], m[5] .. '=(%d+)') or 0)
if max_bytes > 0 and (sections[1][2] > 0 or sections[3][2] > 0) then
  -- Bytes after the change: current sizes, minus replaced or removed values, plus new ones.
  local total = 0
  for _, spec in ipairs({{KEYS[3], 1, 2}, {KEYS[4], 3, 4}}) do
    local hash, sets, dels = spec[1], sections[spec[2]], sections[spec[3]]
    local vals = redis.call('HVALS', hash)
    for _, v in ipairs(vals) do total = total + #v end
    for k = 0, sets[2] - 1 do
      local key, value = ARGV[sets[1] + 2 * k], ARGV[sets[1] + 2 * k + 1]
      total = total + #value - redis.call('HSTRLEN', hash, key)
    end
    for k = 0, dels[2] - 1 do total = total - redis.call('HSTRLEN', hash, ARGV[dels[1] + k]) end
  end
  if total > max_bytes then return {-10, max_bytes} end
end
local out = {1}
i = 7
local expire = m[4]
-- Counter moves summed per field first: one HINCRBY per field, however many events.
local int_sums, float_sums = {}, {}
local function sum(into, text)
  for f, v in string.gmatch(text, '(%S+) (%S+)') do into[f] = (into[f] or 0) + tonumber(v) end
end
local ids = {}
for e = 1, n do
  if fresh[e] then
    if ARGV[i] ~= '' then ids[#ids + 1] = ARGV[i] end
    sum(int_sums, ARGV[i + 3])
    sum(float_sums, ARGV[i + 4])
    if ARGV[i + 2] ~= '' then
      redis.call('RPUSH', KEYS[2], '{"seq":' .. seq .. ',' .. ARGV[i + 2])
      out[#out + 1] = seq
      seq = seq + 1
    else
      out[#out + 1] = -2
    end
  else
    out[#out + 1] = -1
  end
  i = i + 5
end
if #ids > 0 then redis.call('SADD', KEYS[6], unpack(ids)) end
-- The timeline and the id set expire with the session: set once, when they are created
-- (extend moves them later).
if added > 0 and tonumber(m[6] or 0) == 0 then redis.call('PEXPIREAT', KEYS[2], expire) end
if has_ids and redis.call('PTTL', KEYS[6]) == -1 then redis.call('PEXPIREAT', KEYS[6], expire) end
local targets = {KEYS[3], KEYS[3], KEYS[4], KEYS[4], KEYS[1]}
for s = 1, 5 do
  local first, count, width = sections[s][1], sections[s][2], sections[s][3]
  if count > 0 then
    if width == 2 then
      redis.call('HSET', targets[s], unpack(ARGV, first, first + 2 * count - 1))
      if s ~= 5 then redis.call('PEXPIREAT', targets[s], expire) end
    else
      redis.call('HDEL', targets[s], unpack(ARGV, first, first + count - 1))
    end
  end
end
sum(int_sums, int_incr)
sum(float_sums, float_incr)
for f, v in pairs(int_sums) do redis.call('HINCRBY', KEYS[1], f, string.format('%d', v)) end
for f, v in pairs(float_sums) do
  redis.call('HINCRBYFLOAT', KEYS[1], f, string.format('%.17g', v))
end
if added > 0 then
  redis.call('HSET', KEYS[1], 'last_activity_at', ARGV[2], 'event_count', seq)
else
  redis.call('HSET', KEYS[1], 'last_activity_at', ARGV[2])
end
redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
return out
"""
)

# KEYS: meta, due, events, context, results, event ids
# ARGV: id, now, seconds to add, per-type max TTL hours ("equity=168 ..."), grace seconds
EXTEND = (
    _GUARD
    + """
local m = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'created_at', 'session_type')
local err = guard(m, ARGV[2])
if err then return err end
local max_hours = tonumber(string.match(ARGV[4], m[4] .. '=(%d+)'))
local new = tonumber(m[2]) + tonumber(ARGV[3])
local cap = tonumber(m[3]) + max_hours * 3600
if new > cap + 0.001 then
  return {-5, string.format('%.6f', cap - tonumber(m[2])), max_hours, m[4]}
end
local expire_ms = math.floor((new + tonumber(ARGV[5])) * 1000)
redis.call('HSET', KEYS[1], 'expires_at', string.format('%.6f', new), 'redis_expire_ms', expire_ms)
redis.call('ZADD', KEYS[2], new, ARGV[1])
for i = 1, 6 do
  if i ~= 2 then redis.call('PEXPIREAT', KEYS[i], expire_ms) end
end
return {1, string.format('%.6f', new)}
"""
)

# KEYS: meta, due, activity, type index of the session's type (read first with DELETE_INFO)
# ARGV: id, now, status. An active session past its expiry may only end as `expired`.
# Returns {1} or {-1} missing, {-2, status} not active, {-3, type} wrong type index given.
END = """
local m = redis.call('HMGET', KEYS[1], 'status', 'session_type', 'expires_at')
if not m[1] then return {-1} end
if m[1] ~= 'active' then return {-2, m[1]} end
if ARGV[3] ~= 'expired' and tonumber(m[3]) <= tonumber(ARGV[2]) then return {-2, 'expired'} end
if string.sub(KEYS[4], -#m[2] - 1) ~= ':' .. m[2] then return {-3, m[2]} end  -- stale type
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'ended_at', ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return {1}
"""

# KEYS: meta. Returns {user_id, session_type, idempotency key} or {} when not live.
# What delete needs to name every key it touches.
DELETE_INFO = """
local m = redis.call('HMGET', KEYS[1], 'user_id', 'session_type', 'idem_key')
if not m[2] then return {} end
return {m[1] or '', m[2], m[3] or ''}
"""

# KEYS: meta, events, context, results, event ids, due, activity, user index, type index,
#       idempotency key (or a placeholder). ARGV: id.
DELETE = """
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[10])
for i = 6, 9 do redis.call('ZREM', KEYS[i], ARGV[1]) end
return existed
"""

# KEYS: index zset. ARGV: max score, cursor id ('' for none), limit.
# Newest first; skips members at the cursor's score (within 1.5 us, the cursor's rounding) that
# were on earlier pages: equal scores come in descending id order. Returns {id, score, ...}, at
# most limit; the rows are read by ROWS (their keys are only known from the ids).
INDEX_PAGE = """
local limit = tonumber(ARGV[3])
local out = {}
local offset = 0
while #out < 2 * limit do
  local batch = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[1], '-inf', 'WITHSCORES',
                           'LIMIT', offset, limit)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local id, score = batch[i], batch[i + 1]
    local tie = math.abs(tonumber(score) - tonumber(ARGV[1])) < 0.0000015
    if not (ARGV[2] ~= '' and tie and id >= ARGV[2]) then
      out[#out + 1] = id
      out[#out + 1] = score
      if #out >= 2 * limit then break end
    end
  end
  offset = offset + limit
end
return out
"""

# KEYS: meta keys (one shard). ARGV: field names. HMGET of each: the rows of listed ids.
ROWS = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HMGET', KEYS[i], unpack(ARGV)) end
return out
"""

# KEYS: meta, context, intermediate results, events. ARGV: number of recent events, number of
# recent queries (looked for among the last 200 events). Queries come newest first.
# One reply instead of a MULTI pipeline: fewer commands to encode and parse.
GET = """
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return {} end
local n, q = tonumber(ARGV[1]), tonumber(ARGV[2])
local events, queries = {}, {}
if n > 0 then events = redis.call('LRANGE', KEYS[4], -n, -1) end
if q > 0 then
  local tail = events
  -- Read further back only when the recent events are not the whole timeline already.
  if n < 200 and redis.call('LLEN', KEYS[4]) > n then
    tail = redis.call('LRANGE', KEYS[4], -200, -1)
  end
  for i = #tail, 1, -1 do
    if string.find(tail[i], '"kind":"query"', 1, true) then
      queries[#queries + 1] = tail[i]
      if #queries >= q then break end
    end
  end
end
return {meta, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), events, queries}
"""

# KEYS: meta, events. ARGV: start, stop (LRANGE indexes). Returns {status or false, count,
# events}. `status`, not `event_count`: a live session without events has no counter yet.
TIMELINE = """
local m = redis.call('HMGET', KEYS[1], 'status', 'event_count')
if not m[1] then return {false, 0, {}} end
return {m[1], tonumber(m[2] or 0), redis.call('LRANGE', KEYS[2], ARGV[1], ARGV[2])}
"""

# KEYS: meta, events. ARGV: n. The last n queries among all events, newest scanned first in
# chunks, so a session with many messages still yields its queries. Returns JSON events.
RECENT_QUERIES = """
local n = tonumber(ARGV[1])
local total = redis.call('LLEN', KEYS[2])
local out = {}
local stop = total - 1
while stop >= 0 and #out < n do
  local start = math.max(stop - 199, 0)
  local chunk = redis.call('LRANGE', KEYS[2], start, stop)
  for i = #chunk, 1, -1 do
    if string.find(chunk[i], '"kind":"query"', 1, true) then
      out[#out + 1] = chunk[i]
      if #out >= n then break end
    end
  end
  stop = start - 1
end
return out
"""

# KEYS: an index zset. ARGV: limit. Its top ids, highest score first: {id, score, ...}.
INDEX_TOP = """
return redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
"""

# KEYS: activity index, then one type index per session type. Returns their sizes.
COUNTS = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('ZCARD', KEYS[i]) end
return out
"""

# KEYS: meta keys. Returns 1/0 per key: which sessions are live.
EXISTS = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('EXISTS', KEYS[i]) end
return out
"""

# ---- the archiver's scripts (archive/ runs them), one shard per call: pick candidates, claim
# them (given their keys), freeze one, snapshot a batch.

# KEYS: due, activity. ARGV: now, due limit, idle cutoff (the latest of all types; '' for none),
# idle offset, idle limit. Returns {due ids}, {idle ids}, idle exhausted (0/1): read only.
CLAIM_CANDIDATES = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local idle, exhausted = {}, 1
local want = tonumber(ARGV[5])
if ARGV[3] ~= '' and want > 0 then
  idle = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', ARGV[4], want)
  if #idle >= want then exhausted = 0 end
end
return {due, idle, exhausted}
"""

# KEYS: due, activity, the shard's type indexes (ntypes of them, in ARGV's type order), then
# the meta key of each candidate. ARGV: now, lease_until, ntypes, then ntypes (type, idle
# cutoff) pairs, then per candidate (id, 'd' due or 'i' idle).
# Candidates were read by CLAIM_CANDIDATES; each is checked again here (another run may have
# claimed it meanwhile). Returns {skipped idle candidates, id, outcome, id, outcome, ...}.
CLAIM = """
local now, lease, ntypes = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local cutoffs = {}
for i = 0, ntypes - 1 do cutoffs[ARGV[4 + 2 * i]] = tonumber(ARGV[5 + 2 * i]) end
local first = 4 + 2 * ntypes
local out = {}
local skipped = 0
local function unlist(id)
  redis.call('ZREM', KEYS[2], id)
  for t = 1, ntypes do redis.call('ZREM', KEYS[2 + t], id) end
end
local c = 0
for a = first, #ARGV, 2 do
  c = c + 1
  local id, kind, meta = ARGV[a], ARGV[a + 1], KEYS[2 + ntypes + c]
  if kind == 'd' then
    local score = redis.call('ZSCORE', KEYS[1], id)
    if score and tonumber(score) <= now then
      local m = redis.call('HMGET', meta, 'status')
      if not m[1] then
        redis.call('ZREM', KEYS[1], id)
        unlist(id)
        out[#out + 1] = id
        out[#out + 1] = 'missing'
      else
        -- An `expired` status here was set by an earlier run that did not finish.
        local outcome = m[1] == 'expired' and 'expired' or 'ended'
        if m[1] == 'active' then
          redis.call('HSET', meta, 'status', 'expired')
          unlist(id)
          outcome = 'expired'
        end
        redis.call('ZADD', KEYS[1], lease, id)
        out[#out + 1] = id
        out[#out + 1] = outcome
      end
    end
  else
    local score = redis.call('ZSCORE', KEYS[2], id)
    if score then
      local m = redis.call('HMGET', meta, 'status', 'session_type', 'last_activity_at')
      if not m[1] then
        redis.call('ZREM', KEYS[1], id)
        unlist(id)
        out[#out + 1] = id
        out[#out + 1] = 'missing'
      elseif m[1] ~= 'active' then
        -- ended but still listed: the due index brings it to the archiver
        redis.call('ZREM', KEYS[2], id)
      elseif cutoffs[m[2]] ~= nil and tonumber(score) <= cutoffs[m[2]] then
        redis.call('HSET', meta, 'status', 'abandoned', 'ended_at', m[3] or ARGV[1])
        unlist(id)
        redis.call('ZADD', KEYS[1], lease, id)
        out[#out + 1] = id
        out[#out + 1] = 'abandoned'
      else
        skipped = skipped + 1
      end
    end
  end
end
local result = {skipped}
for _, v in ipairs(out) do result[#result + 1] = v end
return result
"""

# KEYS: meta, due, activity, the shard's type indexes. ARGV: id.
# Makes a still-active session expired (so later writes are rejected) and due right away, so a
# crash before the archive finishes leaves it for the next cleanup run. Returns the old status.
FREEZE = """
local m = redis.call('HMGET', KEYS[1], 'status')
if not m[1] then return false end
if m[1] == 'active' then
  redis.call('HSET', KEYS[1], 'status', 'expired')
  for i = 3, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return m[1]
"""

# Meta fields the snapshot reads, in the staging table's column order; `status` first (a
# session without it is gone).
META_FIELDS = (
    "status",
    "user_id",
    "session_type",
    "assets",
    "tags",
    "purpose",
    "source",
    "device",
    "ip",
    "created_at",
    "last_activity_at",
    "expires_at",
    "ended_at",
    "preferences",
    "metadata",
    "query_count",
    "cache_hits",
    "error_count",
    "message_count",
    "tool_call_count",
    "total_execution_ms",
    "tokens_in",
    "tokens_out",
    "cost",
    # The AIECS counters and the tool-duration sum, so they survive the archive.
    "request_count",
    "total_processing_time",
    "tool_duration_ms",
    # The archive time the snapshot stamps once (ARCHIVE_TIME_FIELD).
    "archived_at",
)
USER_ID, SESSION_TYPE = META_FIELDS.index("user_id"), META_FIELDS.index("session_type")
# The meta field holding a claimed session's archive time (epoch seconds), set once by the
# snapshot: a re-run after a crash writes the session into the same archive day (the partition
# key), so its upsert finds the row the first run wrote instead of adding one in another day.
ARCHIVE_TIME_FIELD = "archived_at"
ARCHIVE_TIME = META_FIELDS.index(ARCHIVE_TIME_FIELD)

# A query event adds 1 to the meta hash's field QUERY_TYPE_FIELD + its query type (core.py),
# so the archive has each session's query-type counts without parsing its events.
QUERY_TYPE_FIELD = "qt:"

# KEYS: meta, events, context, results of each session (4 per session, one shard). ARGV: the
# archive time, stamped on each session still in Redis that has none yet.
# Returns per session {meta values (as HMGET META_FIELDS would), events, context pairs, result
# pairs, query-type counts [type, count, ...]}: one HGETALL of the meta hash gives both.
SNAPSHOT = (
    """
local fields = {FIELDS}
local at = {}
for k, name in ipairs(fields) do at[name] = k end
local out = {}
for i = 1, #KEYS, 4 do
  local all = redis.call('HGETALL', KEYS[i])
  local meta, types = {}, {}
  for k = 1, #fields do meta[k] = false end
  for k = 1, #all, 2 do
    local name = all[k]
    local slot = at[name]
    if slot then
      meta[slot] = all[k + 1]
    elseif string.sub(name, 1, PREFIX_LEN) == 'PREFIX' then
      types[#types + 1] = string.sub(name, PREFIX_LEN + 1)
      types[#types + 1] = all[k + 1]
    end
  end
  if #all > 0 and not meta[STAMP] then
    redis.call('HSET', KEYS[i], 'STAMP_FIELD', ARGV[1])
    meta[STAMP] = ARGV[1]
  end
  out[#out + 1] = {
    meta,
    redis.call('LRANGE', KEYS[i + 1], 0, -1),
    redis.call('HGETALL', KEYS[i + 2]),
    redis.call('HGETALL', KEYS[i + 3]),
    types,
  }
end
return out
""".replace("FIELDS", ", ".join(f"'{name}'" for name in META_FIELDS))
    .replace("STAMP_FIELD", ARCHIVE_TIME_FIELD)
    .replace("STAMP", str(ARCHIVE_TIME + 1))  # Lua counts from 1
    .replace("PREFIX_LEN", str(len(QUERY_TYPE_FIELD)))
    .replace("PREFIX", QUERY_TYPE_FIELD)
)


# KEYS: activity index. ARGV: cutoff, limit. Active ids idle since before the cutoff.
LIST_IDLE = """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
"""

# KEYS: the type indexes. ARGV: cutoff, limit. Active ids created before the cutoff.
LIST_OLD = """
local out = {}
for i = 1, #KEYS do
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])) do
    out[#out + 1] = id
  end
end
return out
"""

# A create under an idempotency key whose session (a caller-chosen id) is in another shard
# than the key: two steps instead of one script. IDEM_CLAIM reserves the key first, CREATE runs
# in the session's shard, IDEM_RELEASE frees the key if the create was refused. A crash between
# the steps leaves a key naming a session that does not exist; the store then frees it and
# creates (same body hash, so the same request) instead of answering with a missing session.
# KEYS: idempotency key. ARGV: id, body hash, ttl. Returns {1} reserved, {0, id} the key's
# session (same body), {-6, id} the key was used with another body.
IDEM_CLAIM = """
local existing = redis.call('GET', KEYS[1])
if existing then
  local sep = string.find(existing, '|', 1, true)
  local id = string.sub(existing, 1, sep - 1)
  if string.sub(existing, sep + 1) ~= ARGV[2] then return {-6, id} end
  return {0, id}
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[2], 'EX', ARGV[3])
return {1}
"""

# KEYS: idempotency key. ARGV: session id. Deletes the key only if it names that session.
IDEM_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: idempotency key. Its value, or nil (read only).
IDEM_GET = """
return redis.call('GET', KEYS[1])
"""

SCRIPTS = {
    "idem_get": IDEM_GET,
    "idem_claim": IDEM_CLAIM,
    "idem_release": IDEM_RELEASE,
    "index_page": INDEX_PAGE,
    "index_top": INDEX_TOP,
    "rows": ROWS,
    "list_idle": LIST_IDLE,
    "list_old": LIST_OLD,
    "create": CREATE,
    "apply": APPLY,
    "extend": EXTEND,
    "end": END,
    "delete_info": DELETE_INFO,
    "delete": DELETE,
    "get": GET,
    "timeline": TIMELINE,
    "recent_queries": RECENT_QUERIES,
    "counts": COUNTS,
    "exists": EXISTS,
}
