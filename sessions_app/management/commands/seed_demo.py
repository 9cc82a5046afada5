"""manage.py seed_demo: believable archived and live sessions for the dashboard."""

import argparse
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from sessions_app.demo import DemoDataExists, seed_demo


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, not {number}")
    return number


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO date and time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Seed demo data: --sessions archived sessions over --days days (written with COPY) and "
        "--live live sessions through the store, then daily metrics for the seeded days."
    )
    # Seeding needs the models only; do not fail on URL or admin checks of pages being built.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--sessions", type=_positive, default=3000, help="archived sessions")
        parser.add_argument("--days", type=_positive, default=30, help="days they spread over")
        parser.add_argument("--live", type=_positive, default=30, help="live sessions in Redis")
        parser.add_argument("--seed", type=int, default=None, help="same seed, same data")
        parser.add_argument(
            "--until",
            type=_moment,
            default=None,
            help="ISO time the data ends at (default: now); pin it with --seed for identical data",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="first delete ALL archived sessions, events and daily metrics, and live sessions",
        )
        parser.add_argument("--workers", type=_positive, default=None, help="writer processes")
        parser.add_argument(
            "--no-metrics",
            action="store_true",
            help="skip recomputing daily metrics (written rows are folded into them anyway)",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, **options):
        if options["days"] < 1:
            raise CommandError("--days: must be at least 1")
        try:
            counts = seed_demo(
                sessions=options["sessions"],
                days=options["days"],
                live=options["live"],
                seed=options["seed"],
                reset=options["reset"],
                until=options["until"],
                workers=options["workers"],
                progress=not options["no_progress"] and options["verbosity"] > 0,
                metrics=not options["no_metrics"],
            )
        except DemoDataExists as exc:
            raise CommandError(str(exc)) from exc
        if options["verbosity"] > 0:
            summary = ", ".join(f"{name}={value}" for name, value in counts.items())
            self.stdout.write(self.style.SUCCESS(f"seed_demo: {summary}"))
