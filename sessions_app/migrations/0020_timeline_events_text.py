"""TimelineChunk.events: jsonb -> text (the JSON array's text), lz4-compressed where available.

The archiver then hands Postgres the snapshot's JSON text to store as is (no jsonb parse on
write), and a read gets it back without jsonb's text output. Existing chunks are converted in
place (`events::text`, the same array; tests/test_timeline.py checks the events read back the
same). lz4 compresses and decompresses several times faster than the default pglz; a server
built without lz4 (the embedded pgserver one) keeps pglz.
"""

from django.db import migrations, models

TABLE = "sessions_app_timelinechunk"

# One ALTER TABLE: the column's compression is set before the rewrite that converts it, so the
# converted values are compressed with lz4 too.
TO_TEXT_LZ4 = f"""
DO $$
BEGIN
    ALTER TABLE {TABLE} ALTER COLUMN events SET COMPRESSION lz4,
        ALTER COLUMN events TYPE text USING events::text;
EXCEPTION WHEN feature_not_supported THEN  -- built without lz4
    ALTER TABLE {TABLE} ALTER COLUMN events TYPE text USING events::text;
END $$;
"""
TO_JSONB = f"""
ALTER TABLE {TABLE} ALTER COLUMN events SET COMPRESSION default,
    ALTER COLUMN events TYPE jsonb USING events::jsonb;
"""


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0019_merge_partition_user_rollups")]

    operations = [
        migrations.RunSQL(
            TO_TEXT_LZ4,
            TO_JSONB,
            state_operations=[
                migrations.AlterField(
                    model_name="timelinechunk", name="events", field=models.TextField()
                )
            ],
        )
    ]
