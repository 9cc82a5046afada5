from django.db import migrations

# fs_hist_add gained an in-place path (about 2x faster merges); CREATE OR REPLACE brings
# databases migrated before it up to date. A fresh database gets it from 0008 already.
from sessions_app.histogram import SQL_FUNCTIONS


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0010_rollup_subtract_functions"),
    ]

    operations = [
        migrations.RunSQL(SQL_FUNCTIONS, migrations.RunSQL.noop),
    ]
