"""`manage.py bootstrap`: everything `make run` needs before web, worker and beat start.

Idempotent: migrate, collect static files, the global retention policy, the beat schedules; on
the first run only, an admin superuser and a modest set of demo sessions.
"""

import secrets

from django.contrib.auth import get_user_model
from django.core.management import call_command, get_commands
from django.core.management.base import BaseCommand
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from fimlsessions.env import env_bool, env_str
from sessions_app import jobs
from sessions_app.models import JobRun, Session

SEED_ARGS = ("--sessions", "3000", "--live", "30", "--no-progress")


class Command(BaseCommand):
    help = "Prepare the database and data for a first (or any) start; safe to run every time."

    def add_arguments(self, parser):
        parser.add_argument("--no-seed", action="store_true", help="never load demo data")

    def say(self, message: str) -> None:
        self.stdout.write(f"bootstrap: {message}")

    def handle(self, *args, no_seed: bool = False, **options):
        self.migrate()
        call_command("collectstatic", interactive=False, verbosity=0)
        self.say("static files collected")

        # Imported after migrate: both touch tables that a fresh database does not have yet.
        from sessions_app.policies import global_effective_policy
        from sessions_app.schedules import sync_periodic_tasks

        policy = global_effective_policy()
        self.say(
            f"retention policy: TTL {policy.default_ttl_hours} h (max {policy.max_ttl_hours} h), "
            f"retention {policy.retention_days} d, cleanup every "
            f"{policy.cleanup_interval_minutes} min"
        )
        tasks = sync_periodic_tasks()
        self.say(f"schedules: {', '.join(task.name for task in tasks.values())}")
        self.ensure_superuser()
        if no_seed or not env_bool("SEED_DEMO", True):
            self.say("demo data: skipped (SEED_DEMO=false or --no-seed)")
        else:
            self.seed_once()

    def migrate(self) -> None:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
        call_command("migrate", interactive=False, verbosity=0)
        self.say(f"database migrated ({len(pending)} migrations applied)")

    def ensure_superuser(self) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(is_superuser=True).exists():
            self.say("admin user: exists")
            return
        username = env_str("DJANGO_SUPERUSER_USERNAME") or "admin"
        password = env_str("DJANGO_SUPERUSER_PASSWORD")
        email = env_str("DJANGO_SUPERUSER_EMAIL") or ""
        if user_model.objects.filter(username=username).exists():
            self.say(f"admin user: {username!r} exists but is not a superuser; left as it is")
            return
        generated = not password
        password = password or secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email=email, password=password)
        if not generated:
            self.say(f"admin user: created {username!r} (password from DJANGO_SUPERUSER_PASSWORD)")
            return
        # Printed once, on the run that created the account; it is not stored anywhere else.
        lines = [
            "Admin account created (shown only this once):",
            f"  username: {username}",
            f"  password: {password}",
            "Change it at /admin/password_change/ after logging in.",
        ]
        width = max(len(line) for line in lines)
        border = "+" + "-" * (width + 2) + "+"
        self.stdout.write(border)
        for line in lines:
            self.stdout.write(f"| {line.ljust(width)} |")
        self.stdout.write(border)

    def seed_once(self) -> None:
        if "seed_demo" not in get_commands():
            self.say("demo data: skipped (no seed_demo command)")
            return
        seeded_before = JobRun.objects.filter(job=jobs.SEED).exclude(
            outcome__in=[JobRun.Outcome.FAILED, JobRun.Outcome.SKIPPED]
        )
        if seeded_before.exists() or Session.objects.exists():
            self.say("demo data: skipped (seeded before or sessions exist)")
            return
        self.say(f"demo data: seeding ({' '.join(SEED_ARGS)}) ...")
        try:
            # seed_demo records its own JobRun (job "seed_demo"), which marks it done.
            call_command("seed_demo", *SEED_ARGS)
        except Exception as exc:  # noqa: BLE001 - a failed seed must not stop the app starting
            self.stderr.write(f"bootstrap: demo data failed: {type(exc).__name__}: {exc}")
        else:
            self.say("demo data: done")
