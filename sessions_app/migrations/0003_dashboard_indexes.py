"""Indexes for the history browser's sortable columns and its text search.

Plain SQL (no model state): the text-search index is on an expression the ORM's Index cannot
name the same way analytics queries it, and keeping all four together keeps the reasons together.
"""

from django.db import migrations

INDEXES = [
    # History sorted by duration: ORDER BY duration_seconds, id with keyset (duration, id) < (...).
    ("session_duration_id_idx", "(duration_seconds, id)"),
    # History sorted by queries: ORDER BY query_count, id with keyset (query_count, id) < (...).
    ("session_queries_id_idx", "(query_count, id)"),
    # History sorted by errors: ORDER BY error_count, id with keyset (error_count, id) < (...).
    ("session_errors_id_idx", "(error_count, id)"),
    # History "text in purpose": to_tsvector('simple', purpose) @@ to_tsquery('simple', ...).
    ("session_purpose_fts", "USING gin (to_tsvector('simple', purpose))"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0002_roles_and_global_policy"),
    ]

    operations = [
        migrations.RunSQL(
            sql=f"CREATE INDEX IF NOT EXISTS {name} ON sessions_app_session {columns}",
            reverse_sql=f"DROP INDEX IF EXISTS {name}",
        )
        for name, columns in INDEXES
    ]
