"""Lua scripts of the archiver: claim due/idle sessions, freeze one, snapshot a batch.

They follow the Redis layout in docs/ARCHITECTURE.md; every key is built from the prefix passed
in ARGV (the store's `key(...)` naming), so nothing here hard-codes a prefix.
"""

# KEYS: due, activity. ARGV: prefix, now, limit, lease_until, idle_offset, idle_scan_limit,
# number of types n, then n (type, idle cutoff) pairs.
# Returns {next idle offset, idle exhausted (0/1), id, outcome, id, outcome, ...}.
CLAIM = """
local prefix, now, limit, lease = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local idle_offset, scan_limit, ntypes = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local cutoffs, types, max_cutoff = {}, {}, nil
for i = 0, ntypes - 1 do
  local t, c = ARGV[8 + 2 * i], tonumber(ARGV[9 + 2 * i])
  cutoffs[t] = c
  types[#types + 1] = t
  if max_cutoff == nil or c > max_cutoff then max_cutoff = c end
end
local out = {}
local function forget(id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  for _, t in ipairs(types) do redis.call('ZREM', prefix .. ':idx:type:' .. t, id) end
  out[#out + 1] = id
  out[#out + 1] = 'missing'
end
local claimed = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  local meta = prefix .. ':s:' .. id
  local m = redis.call('HMGET', meta, 'status', 'session_type')
  if not m[1] then
    forget(id)
  else
    -- An `expired` status here was set by an earlier run that did not finish.
    local outcome = m[1] == 'expired' and 'expired' or 'ended'
    if m[1] == 'active' then
      redis.call('HSET', meta, 'status', 'expired')
      redis.call('ZREM', KEYS[2], id)
      redis.call('ZREM', prefix .. ':idx:type:' .. m[2], id)
      outcome = 'expired'
    end
    redis.call('ZADD', KEYS[1], lease, id)
    out[#out + 1] = id
    out[#out + 1] = outcome
  end
  claimed = claimed + 1
end
local skipped, examined, exhausted = 0, 0, 0
while claimed < limit and max_cutoff ~= nil do
  if examined >= scan_limit then break end
  local chunk = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', max_cutoff, 'WITHSCORES',
                           'LIMIT', idle_offset + skipped, 200)
  if #chunk == 0 then exhausted = 1 break end
  for i = 1, #chunk, 2 do
    local id, score = chunk[i], tonumber(chunk[i + 1])
    examined = examined + 1
    local meta = prefix .. ':s:' .. id
    local m = redis.call('HMGET', meta, 'status', 'session_type', 'last_activity_at')
    if not m[1] then
      forget(id)
      claimed = claimed + 1
    elseif m[1] ~= 'active' then
      -- ended but still listed: the due index brings it to the archiver
      redis.call('ZREM', KEYS[2], id)
    elseif cutoffs[m[2]] ~= nil and score <= cutoffs[m[2]] then
      redis.call('HSET', meta, 'status', 'abandoned', 'ended_at', m[3] or now)
      redis.call('ZREM', KEYS[2], id)
      redis.call('ZREM', prefix .. ':idx:type:' .. m[2], id)
      redis.call('ZADD', KEYS[1], lease, id)
      out[#out + 1] = id
      out[#out + 1] = 'abandoned'
      claimed = claimed + 1
    else
      skipped = skipped + 1
    end
    if claimed >= limit then break end
  end
end
if max_cutoff == nil then exhausted = 1 end
local result = {idle_offset + skipped, exhausted}
for _, v in ipairs(out) do result[#result + 1] = v end
return result
"""

# KEYS: meta, due, activity. ARGV: prefix, id.
# Makes a still-active session expired (so later writes are rejected) and due right away, so a
# crash before the archive finishes leaves it for the next cleanup run. Returns the old status.
FREEZE = """
local m = redis.call('HMGET', KEYS[1], 'status', 'session_type')
if not m[1] then return false end
if m[1] == 'active' then
  redis.call('HSET', KEYS[1], 'status', 'expired')
  redis.call('ZREM', KEYS[3], ARGV[2])
  redis.call('ZREM', ARGV[1] .. ':idx:type:' .. m[2], ARGV[2])
end
redis.call('ZADD', KEYS[2], 0, ARGV[2])
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
)
USER_ID, SESSION_TYPE = META_FIELDS.index("user_id"), META_FIELDS.index("session_type")

# KEYS: none (each session's keys derive from the prefix). ARGV: prefix, ids...
# Returns per id {meta values (HMGET META_FIELDS), events, context pairs, result pairs}.
SNAPSHOT = """
local prefix = ARGV[1]
local fields = {FIELDS}
local out = {}
for i = 2, #ARGV do
  local meta = prefix .. ':s:' .. ARGV[i]
  out[#out + 1] = {
    redis.call('HMGET', meta, unpack(fields)),
    redis.call('LRANGE', meta .. ':ev', 0, -1),
    redis.call('HGETALL', meta .. ':ctx'),
    redis.call('HGETALL', meta .. ':ir'),
  }
end
return out
""".replace("FIELDS", ", ".join(f"'{name}'" for name in META_FIELDS))
