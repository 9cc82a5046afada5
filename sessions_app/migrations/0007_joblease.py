from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0006_event_session_n_distinct"),
    ]

    operations = [
        migrations.CreateModel(
            name="JobLease",
            fields=[
                ("job", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("token", models.CharField(max_length=64)),
                ("fence", models.BigIntegerField(default=0)),
                ("taken_at", models.DateTimeField()),
            ],
        ),
    ]
