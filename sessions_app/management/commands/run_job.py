"""`manage.py run_job cleanup|retention|metrics`: run a background job now, under its lock."""

import json

from django.core.management.base import BaseCommand, CommandError

from sessions_app import audit
from sessions_app.jobs import JOBS, run_named_job
from sessions_app.models import JobRun


class Command(BaseCommand):
    help = "Run a background job now (synchronously, under its lock) and print its counts."

    def add_arguments(self, parser):
        parser.add_argument("job", choices=sorted(JOBS), help="the job to run")
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="metrics only: recompute this many recent days (default 2)",
        )

    def handle(self, *args, job: str, days: int | None, **options):
        kwargs = {}
        if days is not None:
            if job != "metrics":
                raise CommandError("--days applies to the metrics job only")
            if days < 1:
                raise CommandError("--days must be at least 1")
            kwargs["days"] = days
        audit.record("run_job", "job", JOBS[job].name, actor="cli", after=kwargs or None)
        result = run_named_job(job, **kwargs)
        counts = json.dumps(result["counts"], sort_keys=True, default=str)
        line = f"{result['job']}: {result['outcome']} {counts}"
        if result["outcome"] == JobRun.Outcome.FAILED:
            raise CommandError(f"{line}\n{result['error']}")
        style = self.style.SUCCESS if result["outcome"] == JobRun.Outcome.SUCCESS else str
        self.stdout.write(style(line))
