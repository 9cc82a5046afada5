"""Create the global retention policy (from SESSION_* settings) and the two dashboard roles."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from sessions_app.roles import ROLE_PERMISSIONS, ensure_roles


def create_roles_and_policy(apps, schema_editor):
    # Permissions are normally created after all migrations; the roles need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ensure_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))

    from sessions_app.models import RetentionPolicy as CurrentPolicy

    apps.get_model("sessions_app", "RetentionPolicy").objects.get_or_create(
        session_type="", defaults=CurrentPolicy.global_defaults_from_settings()
    )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=list(ROLE_PERMISSIONS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sessions_app", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles_and_policy, remove_roles)]
