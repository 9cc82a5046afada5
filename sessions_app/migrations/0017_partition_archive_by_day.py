"""Partition archived sessions and their timeline chunks by archive day (issue 15, part 4).

The tables are rebuilt as range-partitioned ones (archive/partitions.py
convert_to_partitioned): existing rows are copied into one partition per archive day present,
plus today and the days ahead; index names are kept. The database primary keys become
(id, archived_at) and (session_id, chunk, archived_at); the foreign keys to sessions are
dropped (no unique `id` to reference on a partitioned table). Not reversible.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from sessions_app.archive.partitions import convert_to_partitioned


def convert(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        convert_to_partitioned(cursor, cursor.fetchone()[0])


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0016_merge_aiecs_counters"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(convert, elidable=False)],
            state_operations=[
                migrations.AddField(
                    model_name="timelinechunk",
                    name="archived_at",
                    field=models.DateTimeField(default=None),
                    preserve_default=False,
                ),
                migrations.AlterField(
                    model_name="session",
                    name="archived_at",
                    field=models.DateTimeField(default=django.utils.timezone.now),
                ),
                migrations.AlterField(
                    model_name="sessionevent",
                    name="session",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="sessions_app.session",
                    ),
                ),
                migrations.AlterField(
                    model_name="timelinechunk",
                    name="pk",
                    field=models.CompositePrimaryKey(
                        "session_id",
                        "chunk",
                        "archived_at",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                migrations.AlterField(
                    model_name="timelinechunk",
                    name="session",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="timeline_chunks",
                        to="sessions_app.session",
                    ),
                ),
            ],
        ),
    ]
