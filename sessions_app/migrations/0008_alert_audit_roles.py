"""Give the dashboard roles the alert and audit permissions (analysts read, admins edit)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from sessions_app.roles import ensure_roles


def grant(apps, schema_editor):
    # Permissions are normally created after all migrations; the roles need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ensure_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [("sessions_app", "0007_alerts_audit")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
