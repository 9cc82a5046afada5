"""The benchmark's results as JSON and as a Markdown "Performance" section."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sessions_app.benchmark.core import SectionResult

TITLES = {
    "floor": "Floor: one round trip",
    "store": "Store operations (live sessions in Redis, archived in Postgres)",
    "archive": "Archiving (Redis -> Postgres)",
    "retention": "Retention deletes",
    "dashboard": "Dashboard pages, server time",
    "metrics": "Daily metrics",
    "alerts": "Alert evaluation",
    "api": "REST API through gunicorn",
}

# What bounds each kind of row and what would move it; printed under a table when it misses.
MISS_NOTES = {
    "create_session": "Bounded by the client side of one Redis call: input validation, JSON "
    "encoding and redis-py's EVALSHA round trip. Moving it: fewer Python-side steps per call "
    "(e.g. a pre-encoded payload), or hiredis (already installed) and a Unix socket to Redis.",
    "add_query": "One EVALSHA per call; the script is O(1) in history length (HINCRBY for seq, "
    "RPUSH). Any gap to the floor is Python-side validation and JSON encoding.",
    "get_session": "A MULTI pipeline of HGETALL + LRANGE + 2 HGETALL plus decoding 20 JSON "
    "events in Python; decoding is most of the gap to the floor.",
    "list_user_sessions": "One Lua call: ZREVRANGEBYSCORE on the user's index and HMGET per "
    "row, O(log n + limit); building 50 summaries in Python dominates.",
    "archive_due_sessions": "Bounded by CPU: measured per 1,000 sessions of 20 events, about "
    "50 ms in Python (claim and snapshot replies, COPY text), 75 ms in the Postgres backend "
    "(the session upsert into a table with many indexes, 3 of them GIN, is most of it: on a copy "
    "with only the primary key it costs a third; then the chunk COPY and the rollup folds) "
    "and 60 ms in Redis (claim, snapshot, delete; a helper thread "
    "overlaps claim and snapshot with the write). 1M/min on 2 cores needs under 120 ms in all. "
    "Parallel writers (one process per shard) help only while cores are idle. Moving it: fewer "
    "secondary indexes on sessions_app_session, or more cores.",
    "full archived timeline": "Two text rows (500 events each, lz4) read whole: Postgres only "
    "decompresses them; most of the time is Python: one orjson decode and one TimelineEvent "
    "(with its datetime) per event; about 230-250 kB of demo text per 1,000 events.",
    "retention by partition drop": "A DROP of each expired day's two partitions under one "
    "short lock, plus an index-only count of the day's sessions; no row is deleted, so the WAL "
    "is a few catalog records. Bounded by the count and the catalog updates per day.",
    "page": "Each page is a handful of indexed queries plus template rendering in one "
    "process; a miss points at an aggregate that scans raw rows instead of DailyMetric rollups "
    "or at a filter without a matching index.",
}


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _result_cell(passed: bool | None) -> str:
    return "" if passed is None else ("pass" if passed else "**miss**")


def to_json(meta: dict[str, Any], sections: list[SectionResult]) -> dict[str, Any]:
    return {"meta": meta, "sections": {s.name: asdict(s) for s in sections}}


def _miss_key(name: str, section: str) -> str:
    if section == "dashboard":
        return "page"
    for key in MISS_NOTES:
        if name.startswith(key):
            return key
    return ""


def to_markdown(meta: dict[str, Any], sections: list[SectionResult]) -> str:
    env = meta["environment"]
    lines = [
        "## Performance",
        "",
        f"Measured {meta['finished_at'][:16].replace('T', ' ')} UTC by `python manage.py bench"
        f"{' --quick' if meta['config']['quick'] else ''}` on {env['cpus']} CPU "
        f"({env['cpu_model']}), PostgreSQL {env['postgres']}, Redis {env['redis']}, "
        f"Python {env['python']}, commit `{env['commit']}`. Everything ran on one machine "
        "over loopback, client and servers sharing the same cores. Store rows are timed "
        "interleaved with Redis PINGs (PING p50 ms) and compared with those, so a change in the "
        "machine's load moves both (x PING = p50 / PING p50). See `bench/README.md` for how "
        "each row is taken.",
        "",
    ]
    misses: list[str] = []
    for section in sections:
        lines += [f"### {TITLES.get(section.name, section.name)}", ""]
        if section.status != "ok":
            lines += [f"*{section.status}*: {section.reason}", ""]
            continue
        latency = [row for row in section.rows if row.unit == "ms"]
        other = [row for row in section.rows if row.unit != "ms"]
        if latency:
            lines += [
                "| operation | p50 ms | p95 ms | PING p50 ms | x PING | target | result | note |",
                "|---|---:|---:|---:|---:|---|---|---|",
            ]
            for row in latency:
                lines.append(
                    f"| {row.name} | {_fmt(row.p50)} | {_fmt(row.p95)} | {_fmt(row.floor_p50)} | "
                    f"{_fmt(row.ratio, 2)} | {row.target} | {_result_cell(row.passed)} | "
                    f"{row.note} |"
                )
            lines.append("")
        if other:
            lines += [
                "| measure | value | unit | target | result | note |",
                "|---|---:|---|---|---|---|",
            ]
            for row in other:
                lines.append(
                    f"| {row.name} | {_fmt(row.value, 0 if (row.value or 0) >= 100 else 3)} | "
                    f"{row.unit} | {row.target} | "
                    f"{_result_cell(row.passed)} | {row.note} |"
                )
            lines.append("")
        for row in section.rows:
            if row.passed is False:
                misses.append(f"{section.name}: {row.name}")
                key = _miss_key(row.name, section.name)
                if key and f"- *{key}*" not in "\n".join(lines):
                    lines += [f"- *{key}*: {MISS_NOTES[key]}", ""]
    seed = meta.get("last_seed")
    if seed and seed["counts"].get("archived_sessions"):
        counts = seed["counts"]
        lines += [
            "### Demo data (last `seed_demo` run)",
            "",
            f"{counts['archived_sessions']:,} archived sessions with "
            f"{counts.get('archived_events', 0):,} events written in "
            f"{counts.get('archive_write_seconds', 0):,.0f} s "
            f"({counts['archived_sessions'] / max(counts.get('archive_write_seconds', 1), 1):,.0f}"
            f" sessions/s), {counts.get('live_sessions', 0)} live sessions, daily metrics for "
            f"{counts.get('metric_days', 0)} days; {seed['seconds']:,.0f} s in all "
            f"(run of {seed['started_at'][:16].replace('T', ' ')} UTC).",
            "",
        ]
    passed = sum(1 for s in sections for r in s.rows if r.passed)
    judged = sum(1 for s in sections for r in s.rows if r.passed is not None)
    lines += [
        "### Summary",
        "",
        f"{passed} of {judged} targets met"
        + (f"; missed: {'; '.join(misses)}." if misses else "."),
        "",
    ]
    return "\n".join(lines)


def write(out: Path, meta: dict[str, Any], sections: list[SectionResult]) -> tuple[Path, Path]:
    """Write results.json and results.md into `out`; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(to_json(meta, sections), indent=2, default=str) + "\n")
    md_path.write_text(to_markdown(meta, sections))
    return json_path, md_path
