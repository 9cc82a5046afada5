"""SQL of the archiver: stage a batch's sessions with COPY, upsert them, COPY their timelines.

ARCHIVE_BATCH upserts the staged sessions (their query-type counts come staged from the live
store's counters) into their archive day (the partition key, stamped once per session in Redis)
and returns the ids it *inserted*. Only those sessions' timeline chunks are then copied, straight
into the chunk table (COPY_TIMELINE: the text Redis held, no parse, no staging), and only they
are folded into the daily rollups. A re-run after a crash writes the same archive day, so it
updates its sessions, whose chunks committed with them, and copies and counts nothing twice.
"""

from sessions_app.archive.scripts import META_FIELDS

# Everything the snapshot reads is staged as text, straight from Redis (a field a session
# lacks stages as NULL); Postgres does the conversions.
STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS archive_stage_session (
    id text, FIELDS, context text, intermediate_results text, query_type_counts text,
    archive_time timestamptz
) ON COMMIT DELETE ROWS;
-- Inside a test's outer transaction nothing commits, so empty it explicitly.
DELETE FROM archive_stage_session;
""".replace("FIELDS", ", ".join(f"{name} text" for name in META_FIELDS))
COPY_SESSIONS = (
    "COPY archive_stage_session (id, {}, context, intermediate_results, query_type_counts, "
    "archive_time) FROM STDIN".format(", ".join(META_FIELDS))
)
# Chunks of newly inserted sessions only (none exists yet), so no ON CONFLICT is needed.
COPY_TIMELINE = (
    "COPY sessions_app_timelinechunk (session_id, chunk, events, archived_at) FROM STDIN"
)
UPSERT_SESSIONS = """
INSERT INTO sessions_app_session AS existing (
    id, archived_at, user_id, session_type, status, assets, tags, purpose, source, device, ip,
    created_at, last_activity_at, expires_at, ended_at, duration_seconds, context,
    intermediate_results, preferences, metadata, query_count, cache_hits, error_count,
    message_count, tool_call_count, total_execution_ms, tokens_in, tokens_out, cost,
    query_type_counts, request_count, total_processing_time, tool_duration_ms)
SELECT id, archive_time, COALESCE(user_id, ''), session_type, status,
    ARRAY(SELECT jsonb_array_elements_text(COALESCE(NULLIF(assets, ''), '[]')::jsonb)),
    ARRAY(SELECT jsonb_array_elements_text(COALESCE(NULLIF(tags, ''), '[]')::jsonb)),
    COALESCE(purpose, ''), COALESCE(source, ''), COALESCE(device, ''), NULLIF(ip, '')::inet,
    to_timestamp(created), to_timestamp(COALESCE(last_activity, created)),
    to_timestamp(expires_at::float8), to_timestamp(ended),
    GREATEST(COALESCE(ended, last_activity, created) - created, 0),
    context::jsonb, intermediate_results::jsonb,
    COALESCE(NULLIF(preferences, ''), '{}')::jsonb, COALESCE(NULLIF(metadata, ''), '{}')::jsonb,
    COALESCE(NULLIF(query_count, ''), '0')::numeric::int,
    COALESCE(NULLIF(cache_hits, ''), '0')::numeric::int,
    COALESCE(NULLIF(error_count, ''), '0')::numeric::int,
    COALESCE(NULLIF(message_count, ''), '0')::numeric::int,
    COALESCE(NULLIF(tool_call_count, ''), '0')::numeric::int,
    COALESCE(NULLIF(total_execution_ms, ''), '0')::float8,
    COALESCE(NULLIF(tokens_in, ''), '0')::numeric::bigint,
    COALESCE(NULLIF(tokens_out, ''), '0')::numeric::bigint,
    COALESCE(NULLIF(cost, ''), '0')::numeric,
    COALESCE(NULLIF(query_type_counts, ''), '{}')::jsonb,
    COALESCE(NULLIF(request_count, ''), '0')::numeric::bigint,
    COALESCE(NULLIF(total_processing_time, ''), '0')::float8,
    COALESCE(NULLIF(tool_duration_ms, ''), '0')::float8
FROM (
    SELECT *, created_at::float8 AS created, NULLIF(last_activity_at, '')::float8 AS last_activity,
        NULLIF(ended_at, '')::float8 AS ended
    FROM archive_stage_session
) AS staged
ON CONFLICT (id, archived_at) DO UPDATE SET
    user_id = EXCLUDED.user_id, session_type = EXCLUDED.session_type,
    status = EXCLUDED.status, assets = EXCLUDED.assets, tags = EXCLUDED.tags,
    purpose = EXCLUDED.purpose, source = EXCLUDED.source, device = EXCLUDED.device,
    ip = EXCLUDED.ip, created_at = EXCLUDED.created_at,
    last_activity_at = EXCLUDED.last_activity_at, expires_at = EXCLUDED.expires_at,
    ended_at = EXCLUDED.ended_at, duration_seconds = EXCLUDED.duration_seconds,
    context = EXCLUDED.context, intermediate_results = EXCLUDED.intermediate_results,
    preferences = EXCLUDED.preferences, metadata = EXCLUDED.metadata,
    query_count = EXCLUDED.query_count, cache_hits = EXCLUDED.cache_hits,
    error_count = EXCLUDED.error_count, message_count = EXCLUDED.message_count,
    tool_call_count = EXCLUDED.tool_call_count,
    total_execution_ms = EXCLUDED.total_execution_ms, tokens_in = EXCLUDED.tokens_in,
    tokens_out = EXCLUDED.tokens_out, cost = EXCLUDED.cost,
    request_count = EXCLUDED.request_count,
    total_processing_time = EXCLUDED.total_processing_time,
    tool_duration_ms = EXCLUDED.tool_duration_ms
RETURNING id
"""
# The staged sessions already archived (a re-run after a crash), as the statement found them:
# a partitioned table cannot return `xmax = 0` to tell an insert from an update. Bounded by the
# batch's archive times, so only those days' partitions are probed.
SEEN = """
SELECT s.id FROM sessions_app_session s
JOIN archive_stage_session st ON st.id = s.id AND st.archive_time = s.archived_at
WHERE s.archived_at BETWEEN (SELECT min(archive_time) FROM archive_stage_session)
    AND (SELECT max(archive_time) FROM archive_stage_session)
"""
ARCHIVE_BATCH = f"""
WITH seen AS ({SEEN}),
up AS ({UPSERT_SESSIONS})
SELECT id FROM up WHERE id NOT IN (SELECT id FROM seen)
"""  # noqa: S608 - from constants
