from django.db import migrations

# As histogram.py defines them today (see 0008 on changing them later).
from sessions_app.histogram import DROP_SUBTRACT_SQL_FUNCTIONS, SUBTRACT_SQL_FUNCTIONS


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0009_quarantine_and_tombstones"),
    ]

    operations = [
        migrations.RunSQL(SUBTRACT_SQL_FUNCTIONS, DROP_SUBTRACT_SQL_FUNCTIONS),
    ]
