"""Indexes for the analyst pages: users list, case-insensitive user lookups, cost/token sorts.

Plain SQL (no model state), like 0003: expression and collation columns the ORM cannot name the
way the selectors query them.
"""

from django.db import migrations

INDEXES = [
    # Users list (explore.list_users): the period's sessions grouped by user from the index alone.
    (
        "session_created_user_idx",
        "(created_at) INCLUDE (user_id, query_count, error_count, tokens_in, tokens_out, cost,"
        " last_activity_at)",
    ),
    # Case-insensitive user filter, autocomplete and suggestions: prefix ranges and skip scans
    # on lower(user_id) in byte order (explore.user_ids_starting / user_ids_matching).
    ("session_user_ci_idx", '((lower(user_id)) COLLATE "C", user_id COLLATE "C")'),
    # History sorted by cost: ORDER BY cost, id with keyset (cost, id) < (...).
    ("session_cost_id_idx", "(cost, id)"),
    # History sorted by tokens: ORDER BY tokens_in + tokens_out, id with the same keyset.
    ("session_tokens_id_idx", "((tokens_in + tokens_out), id)"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0006_event_session_n_distinct"),
    ]

    operations = [
        migrations.RunSQL(
            sql=f"CREATE INDEX IF NOT EXISTS {name} ON sessions_app_session {columns}",
            reverse_sql=f"DROP INDEX IF EXISTS {name}",
        )
        for name, columns in INDEXES
    ]
