"""Move existing per-event timeline rows into TimelineChunk arrays, then empty the old table.

Batched by session id (keyset on the old table's (session_id, seq) index), each batch one
INSERT ... SELECT jsonb_agg(... ORDER BY seq): no Python object per event. Re-runnable: chunks
already written are kept (ON CONFLICT DO NOTHING).
"""

from django.db import migrations

from sessions_app.archive.timeline import EVENT_ROWS, SESSION_DAYS, convert_rows

BATCH_SESSIONS = 5000
OLD_TABLE = "sessions_app_sessionevent"


def convert(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        # Chunks carry their session's archive day once migration 0017 has run.
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = 'sessions_app_timelinechunk' "
            "AND column_name = 'archived_at')"
        )
        days = SESSION_DAYS if cursor.fetchone()[0] else None
        after = ""
        while True:
            cursor.execute(
                f"SELECT DISTINCT session_id FROM {OLD_TABLE} "  # noqa: S608 - constant
                "WHERE session_id > %s ORDER BY session_id LIMIT %s",
                [after, BATCH_SESSIONS],
            )
            ids = [row[0] for row in cursor.fetchall()]
            if not ids:
                break
            convert_rows(cursor, OLD_TABLE, ids, days=days)
            after = ids[-1]
        # Every event now lives in a chunk; the old table is no longer written or read.
        # Deferred foreign key checks still pending would block TRUNCATE.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"TRUNCATE {OLD_TABLE}")


def restore(apps, schema_editor):
    """Back to one row per event (for a rollback to code that reads the old table)."""
    with schema_editor.connection.cursor() as cursor:
        columns = (
            "session_id, seq, kind, occurred_at, query_type, parameters, result_summary, "
            "execution_ms, cache_hit, error, role, content, tool_name, invocation_id, "
            "duration_ms, tokens_in, tokens_out, cost"
        )
        cursor.execute(
            f"INSERT INTO {OLD_TABLE} ({columns}) "  # noqa: S608 - constants
            f"SELECT {columns} FROM {EVENT_ROWS} ev ON CONFLICT (session_id, seq) DO NOTHING"
        )
        cursor.execute("DELETE FROM sessions_app_timelinechunk")


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0013_timeline_chunks")]

    operations = [migrations.RunPython(convert, restore)]
