"""Benchmark building blocks: configuration, timing, result rows and targets."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Read-only sections first, so the pages are timed on the data as seeded, not on rows the
# write sections add (and delete again at the end).
SECTIONS = ("floor", "dashboard", "alerts", "metrics", "store", "archive", "retention", "api")


class Unavailable(Exception):
    """A section cannot run here (a module or page it measures does not exist yet)."""


@dataclass
class BenchConfig:
    """Sizes of one run; `quick()` shrinks them to a smoke run of a few seconds."""

    sections: tuple[str, ...] = SECTIONS
    out: Path = Path("bench/results")
    iterations: int = 3000  # timed calls per store operation
    warmup: int = 300
    user_sessions: int = 10_000  # live sessions of the user list_user_sessions reads
    prior_queries: int = 1000
    archived_events: int = 1000  # events of the archived session `get` reads
    archive_sessions: int = 5000
    events_per_session: int = 20
    retention_sessions: int = 50_000
    dashboard_sessions: int = 1_000_000
    page_repeats: int = 20
    metrics_days: int = 7
    api_seconds: float = 3.0
    api_runs: int = 3
    api_threads: int = 8
    web_workers: int = 3
    keep_data: bool = False  # keep the archived rows topped up for the dashboard section
    quick: bool = False

    @classmethod
    def quick_config(cls, **overrides: Any) -> BenchConfig:
        values: dict[str, Any] = {
            "iterations": 200,
            "warmup": 30,
            "user_sessions": 300,
            "prior_queries": 100,
            "archived_events": 100,
            "archive_sessions": 60,
            "events_per_session": 10,
            "retention_sessions": 200,
            "dashboard_sessions": 500,
            "page_repeats": 3,
            "metrics_days": 2,
            "api_seconds": 0.5,
            "api_runs": 1,
            "api_threads": 2,
            "web_workers": 1,
            "quick": True,
        }
        values.update(overrides)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["out"] = str(self.out)
        values["sections"] = list(self.sections)
        return values


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def time_calls(func: Callable[[int], Any], iterations: int, warmup: int = 0) -> list[float]:
    """Milliseconds of each of `iterations` calls func(i), after `warmup` untimed calls."""
    for i in range(warmup):
        func(i)
    clock = time.perf_counter_ns
    samples = []
    for i in range(iterations):
        start = clock()
        func(i)
        samples.append((clock() - start) / 1e6)
    return samples


def time_interleaved(
    funcs: list[Callable[[int], Any]], iterations: int, warmup: int = 0
) -> list[list[float]]:
    """Like time_calls for several functions at once, called in turn (f0(i), f1(i), ...) so
    they share the same moment-to-moment load; one list of milliseconds per function."""
    for i in range(warmup):
        for func in funcs:
            func(i)
    clock = time.perf_counter_ns
    samples: list[list[float]] = [[] for _ in funcs]
    for i in range(iterations):
        for func, out in zip(funcs, samples, strict=True):
            start = clock()
            func(i)
            out.append((clock() - start) / 1e6)
    return samples


@dataclass
class Row:
    """One line of the results table."""

    name: str
    unit: str = "ms"  # "ms" rows have p50/p95; others carry `value`
    p50: float | None = None
    p95: float | None = None
    value: float | None = None
    samples: int = 0
    ratio: float | None = None  # p50 over the Redis PING p50
    floor_p50: float | None = None  # the PING p50 the ratio is taken against
    target: str = ""
    passed: bool | None = None  # None: no target for this row
    note: str = ""

    @staticmethod
    def latency(name: str, samples: list[float], **kwargs: Any) -> LatencyRow:
        return LatencyRow(
            name,
            p50=round(percentile(samples, 50), 4),
            p95=round(percentile(samples, 95), 4),
            samples=len(samples),
            **kwargs,
        )


@dataclass
class LatencyRow(Row):
    """A row timed from samples: p50 and p95 are always set."""

    p50: float = 0.0
    p95: float = 0.0


@dataclass
class SectionResult:
    name: str
    status: str = "ok"  # ok | not available | skipped | error
    reason: str = ""
    seconds: float = 0.0
    rows: list[Row] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)  # sizes actually used


@dataclass
class RunContext:
    """What sections share: the config, the floor (for ratios), cleanup duties."""

    config: BenchConfig
    prefix: str  # Redis key prefix of everything the run creates (plus "-<section>")
    run_id: str
    redis_floor_ms: float | None = None
    postgres_floor_ms: float | None = None
    topped_up: bool = False  # the dashboard section generated archived rows
    web_command: str = ""  # the gunicorn command line the api section ran
    cleanups: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def user_prefix(self) -> str:
        """Prefix of user ids on rows the run writes to Postgres (to find and delete them)."""
        return f"bench{self.run_id}-"

    def ratio(self, p50: float | None) -> float | None:
        if p50 is None or not self.redis_floor_ms:
            return None
        return round(p50 / self.redis_floor_ms, 2)
