"""A covering index for per-user stats, so a heavy user's summary is an index-only scan."""

from django.db import migrations

# User page and get_session_stats(user_id=...): every column analytics aggregates per user, so
# Postgres reads ~100 bytes per session from the index instead of a heap page per session.
SQL = """
CREATE INDEX IF NOT EXISTS session_user_stats_idx ON sessions_app_session (user_id, created_at)
INCLUDE (id, session_type, status, duration_seconds, query_count, cache_hits, error_count,
         message_count, tool_call_count, tokens_in, tokens_out, cost, last_activity_at,
         assets, tags)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0004_event_indexes"),
    ]

    operations = [
        migrations.RunSQL(sql=SQL, reverse_sql="DROP INDEX IF EXISTS session_user_stats_idx"),
    ]
