"""Drop the two covering indexes that served per-user aggregates over raw sessions.

The user page, /stats?user_id, MCP, user-narrowed alert rules (session_user_stats_idx) and the
users list (session_created_user_idx) read UserDailyMetric now. Raw rows of days no rollup
covers are still found through session_user_created_idx and session_created_idx. Together the
two took ~510 MB per 1M sessions and an index entry each per archived session.
"""

from django.db import migrations

USER_STATS = """
CREATE INDEX IF NOT EXISTS session_user_stats_idx ON sessions_app_session (user_id, created_at)
INCLUDE (id, session_type, status, duration_seconds, query_count, cache_hits, error_count,
         message_count, tool_call_count, tokens_in, tokens_out, cost, last_activity_at,
         assets, tags)
"""
CREATED_USER = """
CREATE INDEX IF NOT EXISTS session_created_user_idx ON sessions_app_session (created_at)
INCLUDE (user_id, query_count, error_count, tokens_in, tokens_out, cost, last_activity_at)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0017_user_daily_metric"),
    ]

    operations = [
        migrations.RunSQL(
            sql="DROP INDEX IF EXISTS session_user_stats_idx", reverse_sql=USER_STATS
        ),
        migrations.RunSQL(
            sql="DROP INDEX IF EXISTS session_created_user_idx", reverse_sql=CREATED_USER
        ),
    ]
