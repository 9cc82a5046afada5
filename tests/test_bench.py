"""The benchmark harness: a tiny real run writes well-formed results and leaves nothing behind.

No timing is asserted here; the numbers belong in bench/results.
"""

import json
import math

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from sessions_app import benchmark
from sessions_app.benchmark.core import SECTIONS, Unavailable, percentile
from sessions_app.benchmark.report import TITLES
from sessions_app.models import ApiKey, Session, TimelineChunk
from sessions_app.redis_client import get_redis


def _check_rows(name: str, section: dict) -> None:
    assert section["rows"], f"{name} has no rows"
    for row in section["rows"]:
        assert row["name"]
        if row["unit"] == "ms":
            if row["note"].startswith("not available"):
                continue
            assert row["samples"] > 0
            assert 0 < row["p50"] <= row["p95"], row
        else:
            assert row["value"] is not None and row["value"] >= 0, row
        assert row["passed"] in (True, False, None)
        if row["target"]:
            assert row["passed"] is not None, row


@pytest.mark.django_db(transaction=True)
def test_quick_run_writes_well_formed_results_and_cleans_up(tmp_path):
    existing = Session.objects.count()
    call_command("bench", "--quick", f"--out={tmp_path}", verbosity=0)

    data = json.loads((tmp_path / "results.json").read_text())
    assert list(data["sections"]) == list(SECTIONS)
    meta = data["meta"]
    assert meta["config"]["quick"] is True
    assert meta["environment"]["postgres"] and meta["environment"]["redis"]
    for name, section in data["sections"].items():
        assert section["status"] in ("ok", "not available"), (name, section["reason"])
        if section["status"] == "ok":
            _check_rows(name, section)
    # Everything this project already has must have been measured.
    for name in ("floor", "store", "archive", "retention", "metrics", "api"):
        assert data["sections"][name]["status"] == "ok", name
    floor = {row["name"]: row for row in data["sections"]["floor"]["rows"]}
    assert floor["Redis PING (redis-py client)"]["ratio"] == 1.0
    store_rows = data["sections"]["store"]["rows"]
    assert [row["name"].split(" ")[0] for row in store_rows] == [
        "create_session",
        "add_query",
        "add_query",
        "update_context",
        "get_session",
        "get_session",
        "full",  # full archived timeline
        "list_user_sessions",
        *["create_session,"] * 2,
        *["add_query"] * 2,
        *["get_session"] * 2,
    ]
    assert all(row["ratio"] > 0 for row in store_rows)
    # Each async row is compared with the sync row before it, in the same run.
    async_rows = [row for row in store_rows if row["name"].endswith("async store")]
    assert len(async_rows) == 3 and all("x the sync p50" in row["note"] for row in async_rows)
    archived = data["sections"]["archive"]["rows"][0]
    assert archived["samples"] == data["sections"]["archive"]["setup"]["sessions"]
    retention = data["sections"]["retention"]
    assert [row["name"] for row in retention["rows"]] == [
        "retention by partition drop",
        "retention by bounded delete",
    ]
    # Every seeded session is retired, half by the drop, half by the bounded delete.
    assert all(row["samples"] > 0 for row in retention["rows"])
    assert sum(row["samples"] for row in retention["rows"]) >= retention["setup"]["sessions"]
    api_rows = data["sections"]["api"]["rows"]
    # Single requests, then the batch shapes (10 sessions x 10 events, 100 x 1).
    assert [row["unit"] for row in api_rows] == ["req/s", "req/s", "events/s", "events/s"]
    assert all(row["value"] > 0 for row in api_rows)
    for row in api_rows[2:]:
        assert "x single tracked queries" in row["note"]  # batch and single, same run
        assert "client used" in row["note"]  # the load generator's share of the cores

    markdown = (tmp_path / "results.md").read_text()
    assert markdown.startswith("## Performance")
    for name in SECTIONS:
        assert f"### {TITLES[name]}" in markdown
    assert "| operation | p50 ms | p95 ms | PING p50 ms |" in markdown
    for section in data["sections"].values():
        for row in section["rows"]:
            assert f"| {row['name']} |" in markdown
    assert "### Summary" in markdown

    # Nothing the run created is left: keys, archived rows, its user, its API key.
    prefix = f"bench-{meta['run_id']}"
    assert not list(get_redis().scan_iter(match=f"{prefix}*"))
    user_prefix = f"bench{meta['run_id']}-"
    assert not Session.objects.filter(user_id__startswith=user_prefix).exists()
    assert Session.objects.count() == existing
    assert not TimelineChunk.objects.exclude(session__in=Session.objects.all()).exists()
    assert not get_user_model().objects.filter(username__startswith=user_prefix).exists()
    assert not ApiKey.objects.filter(name__startswith=user_prefix).exists()


@pytest.mark.django_db
def test_a_section_without_its_module_reports_not_available(tmp_path, monkeypatch):
    def missing(ctx, result):
        raise Unavailable("sessions_app.metrics is not there yet")

    monkeypatch.setitem(benchmark.RUNNERS, "metrics", missing)
    call_command("bench", "--quick", "--sections=metrics", f"--out={tmp_path}", verbosity=0)
    data = json.loads((tmp_path / "results.json").read_text())
    assert list(data["sections"]) == ["floor", "metrics"]  # the floor always runs
    assert data["sections"]["metrics"]["status"] == "not available"
    assert "not there yet" in data["sections"]["metrics"]["reason"]
    markdown = (tmp_path / "results.md").read_text()
    assert "*not available*: sessions_app.metrics is not there yet" in markdown


@pytest.mark.django_db
def test_skip_leaves_sections_out(tmp_path):
    call_command("bench", "--quick", "--sections=floor,store", "--skip=store", f"--out={tmp_path}")
    data = json.loads((tmp_path / "results.json").read_text())
    assert list(data["sections"]) == ["floor"]


@pytest.mark.parametrize(
    "argv",
    [["--sections=floor,nonsense"], ["--skip=everything"], ["--iterations=0"]],
)
def test_bad_options_are_refused_before_anything_runs(tmp_path, argv):
    with pytest.raises(CommandError):
        call_command("bench", "--quick", f"--out={tmp_path}", *argv, verbosity=0)
    assert not (tmp_path / "results.json").exists()


def test_percentile_interpolates_between_ranks():
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert percentile([7.0], 95) == 7.0
    assert math.isnan(percentile([], 50))
