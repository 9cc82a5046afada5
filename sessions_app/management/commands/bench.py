"""manage.py bench: measure the store, the jobs, the dashboard and the API; write the results."""

import argparse
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from sessions_app.benchmark import SECTIONS, BenchConfig, run_benchmark


def _count(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


class Command(BaseCommand):
    help = (
        "Benchmark on the configured Postgres and Redis; writes results.md and results.json. "
        "Cleans up what it creates (own Redis prefix, own archived rows)."
    )
    # The bench reports missing pages as "not available"; a page being built must not stop it.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
        parser.add_argument(
            "--sections",
            default=",".join(SECTIONS),
            help=f"comma-separated, from: {', '.join(SECTIONS)} (floor always runs)",
        )
        parser.add_argument("--skip", default="", help="comma-separated sections to leave out")
        parser.add_argument("--out", default="bench/results", help="folder for the results")
        parser.add_argument("--iterations", type=_count, help="timed calls per store operation")
        parser.add_argument("--sessions", type=_count, help="archived sessions for the pages")
        parser.add_argument("--archive-sessions", type=_count, help="sessions to archive")
        parser.add_argument("--retention-sessions", type=_count, help="sessions to delete")
        parser.add_argument("--user-sessions", type=_count, help="live sessions of one user")
        parser.add_argument("--page-repeats", type=_count, help="requests per dashboard page")
        parser.add_argument("--api-seconds", type=float, help="seconds per API load run")
        parser.add_argument(
            "--keep-data",
            action="store_true",
            help="keep archived rows generated to reach --sessions (reused by the next run)",
        )

    def handle(self, *args, **options):
        sections = self._sections(options["sections"], options["skip"])
        overrides = {
            name: options[option]
            for option, name in (
                ("iterations", "iterations"),
                ("sessions", "dashboard_sessions"),
                ("archive_sessions", "archive_sessions"),
                ("retention_sessions", "retention_sessions"),
                ("user_sessions", "user_sessions"),
                ("page_repeats", "page_repeats"),
                ("api_seconds", "api_seconds"),
            )
            if options[option] is not None
        }
        if options.get("api_seconds") is not None and options["api_seconds"] <= 0:
            raise CommandError("--api-seconds: must be positive")
        overrides.update(
            sections=sections, out=Path(options["out"]), keep_data=options["keep_data"]
        )
        config = (
            BenchConfig.quick_config(**overrides) if options["quick"] else BenchConfig(**overrides)
        )
        data = run_benchmark(config, log=self._log if options["verbosity"] > 0 else lambda m: None)
        failed = [
            name for name, section in data["sections"].items() if section["status"] == "error"
        ]
        if options["verbosity"] > 0:
            self.stdout.write(self.style.SUCCESS(f"results in {config.out}/results.md"))
        if failed:
            raise CommandError(f"sections failed: {', '.join(failed)} (see results.md)")

    def _log(self, message: str) -> None:
        self.stdout.write(message)

    @staticmethod
    def _sections(raw: str, skip: str) -> tuple[str, ...]:
        chosen = [name.strip() for name in raw.split(",") if name.strip()]
        skipped = {name.strip() for name in skip.split(",") if name.strip()}
        unknown = sorted((set(chosen) | skipped) - set(SECTIONS))
        if unknown:
            raise CommandError(
                f"--sections: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
            )
        return tuple(name for name in SECTIONS if name in chosen and name not in skipped)
