"""seed_demo: believable, consistent, repeatable demo data, archived (COPY) and live (store)."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from sessions_app.archive.timeline import EVENT_ROWS
from sessions_app.demo import ArchivePlan, write_archived
from sessions_app.demo import catalogue as cat
from sessions_app.models import DailyMetric, JobRun, Session, TimelineChunk
from sessions_app.store import get_session_store
from tests.factories import event_rows

pytestmark = pytest.mark.django_db

UNTIL = datetime(2025, 3, 14, 16, 30, tzinfo=UTC)  # a Friday afternoon


def seed(**options):
    """Run the command as from the shell (every option parsed from text)."""
    args = {"until": UNTIL.isoformat(), "no_progress": True, **options}
    argv = [
        f"--{name.replace('_', '-')}" if value is True else f"--{name.replace('_', '-')}={value}"
        for name, value in args.items()
    ]
    call_command("seed_demo", *argv, verbosity=0)


def _one(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _digest() -> tuple[str, str]:
    """A fingerprint of every archived session and event (event ids aside)."""
    sessions = _one(
        "SELECT md5(string_agg(s::text, '|' ORDER BY s.id)) FROM sessions_app_session s"
    )[0]
    events = _one(
        "SELECT md5(string_agg(concat_ws(',', session_id, seq, kind, occurred_at, query_type, "
        "parameters, result_summary, execution_ms, cache_hit, error, role, content, tool_name, "
        "invocation_id, duration_ms, tokens_in, tokens_out, cost), '|' "
        f"ORDER BY session_id, seq)) FROM {EVENT_ROWS} ev"
    )[0]
    return sessions, events


def test_archived_sessions_agree_with_their_events():
    seed(sessions=400, days=10, live=0, seed=7)
    assert Session.objects.count() == 400
    # Counters, as the archiver keeps them, recomputed from the events in one query.
    mismatches = _one(
        f"""
        SELECT count(*) FROM sessions_app_session s JOIN (
            SELECT session_id,
                   count(*) FILTER (WHERE kind = 'query') AS q,
                   count(*) FILTER (WHERE kind = 'query' AND cache_hit) AS hits,
                   count(*) FILTER (WHERE error <> '') AS errors,
                   count(*) FILTER (WHERE kind = 'message') AS messages,
                   count(*) FILTER (WHERE kind = 'tool_call') AS tools,
                   coalesce(sum(execution_ms), 0) AS exec_ms,
                   sum(tokens_in) AS tin, sum(tokens_out) AS tout, sum(cost) AS cost,
                   min(seq) AS first_seq, max(seq) AS last_seq, count(*) AS n,
                   max(occurred_at) AS last_at
            FROM {EVENT_ROWS} ev GROUP BY session_id
        ) e ON e.session_id = s.id
        WHERE s.query_count <> e.q OR s.cache_hits <> e.hits OR s.error_count <> e.errors
           OR s.message_count <> e.messages OR s.tool_call_count <> e.tools
           OR abs(s.total_execution_ms - e.exec_ms) > 0.01 OR s.tokens_in <> e.tin
           OR s.tokens_out <> e.tout OR s.cost <> e.cost
           OR e.first_seq <> 0 OR e.last_seq <> e.n - 1
           OR s.last_activity_at <> e.last_at
        """
    )[0]
    assert mismatches == 0
    assert not Session.objects.exclude(id__in=TimelineChunk.objects.values("session_id")).exists()
    # Times as the archiver leaves them, all in the past of `until`.
    bad_times = _one(
        """
        SELECT count(*) FROM sessions_app_session WHERE
            archived_at IS NULL OR archived_at > %(until)s OR created_at > last_activity_at
            OR expires_at <= created_at OR archived_at < last_activity_at
            OR (status IN ('completed', 'failed') AND ended_at < last_activity_at)
            OR (status = 'abandoned' AND ended_at <> last_activity_at)
            OR (status = 'expired' AND (ended_at IS NOT NULL OR archived_at < expires_at))
            OR abs(duration_seconds - extract(epoch FROM
                   coalesce(ended_at, last_activity_at) - created_at)) > 0.002
        """,
        {"until": UNTIL},
    )[0]
    assert bad_times == 0
    first, _ = _one("SELECT min(created_at), max(created_at) FROM sessions_app_session")
    assert first >= UNTIL - timedelta(days=10 + 8)  # long TTLs may reach back a few days


def test_content_is_believable():
    seed(sessions=1500, days=28, live=0, seed=11)
    sessions = list(
        Session.objects.values_list("session_type", "status", "assets", "user_id", "created_at")
    )
    types = Counter(s[0] for s in sessions)
    statuses = Counter(s[1] for s in sessions)
    assert set(types) == set(cat.SESSION_TYPE_SHARES)
    assert statuses.most_common(1)[0][0] == "completed"
    assert statuses["completed"] > 0.6 * len(sessions)
    assert all(statuses[s] > 0 for s in ("abandoned", "expired", "failed"))
    assert statuses["failed"] < statuses["abandoned"]
    known = set(cat.PRICES) | set(cat.MACRO_SERIES)
    assert all(set(s[2]) <= known and s[2] for s in sessions)
    equity_assets = {a for s in sessions if s[0] == "equity" for a in s[2]}
    assert equity_assets <= set(cat.EQUITIES)
    macro_assets = {a for s in sessions if s[0] == "macro" for a in s[2]}
    assert macro_assets & set(cat.MACRO_SERIES)

    # Heavy users and a long tail of light ones.
    per_user = sorted(Counter(s[3] for s in sessions).values(), reverse=True)
    assert per_user[0] >= 5 * per_user[len(per_user) // 2]
    assert sum(per_user[: len(per_user) // 10]) >= 0.25 * len(sessions)
    # Weekday and business-hour rhythm.
    weekday = Counter(s[4].weekday() for s in sessions)
    assert min(weekday[d] for d in range(5)) > 2 * max(weekday[5], weekday[6])
    hours = Counter(s[4].hour for s in sessions)
    assert sum(hours[h] for h in range(13, 18)) > 4 * sum(hours[h] for h in range(0, 5))

    query_types = dict(_query_type_counts())
    assert set(query_types) == set(cat.QUERY_TYPES)
    assert max(query_types, key=query_types.get) == "price"
    hits, queries = _one("SELECT sum(cache_hits), sum(query_count) FROM sessions_app_session")
    assert 0.4 <= hits / queries <= 0.7
    cached, uncached = _one(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY execution_ms) FILTER (WHERE cache_hit),"
        " percentile_cont(0.5) WITHIN GROUP (ORDER BY execution_ms) FILTER (WHERE NOT cache_hit)"
        f" FROM {EVENT_ROWS} ev WHERE kind = 'query'"
    )
    assert cached < 10 < 50 < uncached
    events_per_session = len(event_rows()) / len(sessions)
    assert 15 <= events_per_session <= 25

    # Agent sessions hold conversations with tool calls, tokens and cost.
    agents = set(Session.objects.filter(session_type="agent").values_list("id", flat=True))
    agent_roles = {
        row.role for row in event_rows() if row.session_id in agents and row.kind == "message"
    }
    assert agent_roles == {"user", "assistant", "tool"}
    tokens, cost, calls = _one(
        "SELECT sum(tokens_in + tokens_out), sum(cost), sum(tool_call_count) "
        "FROM sessions_app_session WHERE session_type = 'agent'"
    )
    assert tokens > 0 and cost > 0 and calls > 0
    tool_names = {row.tool_name for row in event_rows() if row.kind == "tool_call"}
    assert tool_names <= set(cat.TOOLS) and len(tool_names) >= 4


def _query_type_counts():
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT query_type, count(*) FROM {EVENT_ROWS} ev "
            "WHERE kind = 'query' GROUP BY query_type"
        )
        return cursor.fetchall()


def test_same_seed_same_data_and_another_seed_other_data():
    seed(sessions=120, days=5, live=0, seed=3, no_metrics=True)
    first = _digest()
    seed(sessions=120, days=5, live=0, seed=3, reset=True, no_metrics=True)
    assert _digest() == first
    seed(sessions=120, days=5, live=0, seed=4, reset=True, no_metrics=True)
    assert _digest() != first


def test_same_seed_twice_without_reset_is_refused_and_changes_nothing():
    seed(sessions=50, days=3, live=0, seed=5, no_metrics=True)
    before = _digest()
    with pytest.raises(CommandError, match=r"seed 5 .*--reset"):
        seed(sessions=50, days=3, live=0, seed=5, no_metrics=True)
    assert _digest() == before
    failed = JobRun.objects.filter(job="seed_demo", outcome="failed").get()
    assert "already" in failed.error


@pytest.mark.django_db(transaction=True)
def test_parallel_writers_write_exactly_what_one_writer_writes():
    plan = ArchivePlan(sessions=900, until=UNTIL.timestamp(), days=4, seed=21, chunk_size=200)
    counts = write_archived(plan, workers=2)
    assert counts["sessions"] == 900 == Session.objects.count()
    assert counts["events"] == len(event_rows())
    parallel = _digest()
    TimelineChunk.objects.all().delete()
    Session.objects.all().delete()
    write_archived(plan, workers=1)
    assert _digest() == parallel


def test_live_sessions_through_the_store_and_metrics_and_job_run():
    seed(sessions=200, days=3, live=8, seed=9)
    store = get_session_store()
    counts = store.live_counts()
    assert counts["total"] == 8
    assert all(counts["by_type"][t] >= 1 for t in cat.SESSION_TYPE_SHARES)  # first 6 cycle types
    for summary in store.list_live_sessions(limit=50):
        session = store.get_session(summary.id)
        assert session.is_live and session.status == "active"
        assert session.event_count >= 2 and session.state.context
        assert session.assets
    agent = next(s for s in store.list_live_sessions(limit=50) if s.session_type == "agent")
    agent = store.get_session(agent.id, recent_events=100)
    assert agent.tool_call_count >= 1 and agent.tokens_in > 0 and agent.cost > 0
    assert {e.role for e in agent.recent_events if e.kind == "message"} >= {"user", "tool"}

    days = _one(
        "SELECT count(DISTINCT (created_at AT TIME ZONE 'UTC')::date) FROM sessions_app_session"
    )[0]
    assert DailyMetric.objects.values("day").distinct().count() == days
    assert sum(DailyMetric.objects.values_list("sessions_started", flat=True)) == 200
    run = JobRun.objects.get(job="seed_demo")
    assert run.outcome == "success" and run.finished_at and run.duration_ms > 0
    assert run.counts["archived_sessions"] == 200 and run.counts["live_sessions"] == 8
    assert run.counts["archived_events"] == len(event_rows())


def test_reset_removes_archived_live_and_metrics_first():
    seed(sessions=60, days=3, live=3, seed=1)
    assert DailyMetric.objects.exists()
    seed(sessions=20, days=2, live=0, seed=2, reset=True, no_metrics=True)
    assert Session.objects.count() == 20
    # The first seed's rollups are gone; the new rows were folded in as they were written
    # (--no-metrics only skips the recompute).
    assert sum(DailyMetric.objects.values_list("sessions_started", flat=True)) == 20
    assert get_session_store().live_counts()["total"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sessions": "-5"}, "--sessions"),
        ({"days": "0"}, "--days"),
        ({"until": "yesterday"}, "--until"),
    ],
)
def test_bad_options_are_refused_and_change_nothing(options, message):
    args = [f"--{name}={value}" for name, value in options.items()]
    with pytest.raises(CommandError, match=message):
        call_command("seed_demo", *args, "--no-progress", verbosity=0)
    assert not Session.objects.exists()
    assert not JobRun.objects.exists()
