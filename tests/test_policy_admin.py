"""Retention policy admin: consistency across inheritance (issue 11 item 18), flags on the
operations page, and the retention dry run before a change that shortens retention."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from sessions_app.exceptions import InvalidTTL
from sessions_app.models import RetentionPolicy, Session
from sessions_app.policies import clear_policy_cache, global_effective_policy
from sessions_app.policy_checks import current_inconsistencies
from tests.factories import archived_sessions

pytestmark = pytest.mark.django_db


@pytest.fixture
def su_client(client, make_user):
    client.force_login(make_user("superuser"))
    return client


def admin_url(name, *args):
    return reverse(f"admin:{name}", args=args)


def global_data(**changes) -> dict:
    """The global row's form as saved: a blank field (None) inherits its SESSION_* setting."""
    policy = RetentionPolicy.objects.get(session_type="")
    data = {name: getattr(policy, name) for name in RetentionPolicy.POLICY_FIELDS}
    data = {name: "" if value is None else value for name, value in data.items()}
    data.update(changes)
    return data


def test_override_below_the_inherited_default_ttl_is_refused(su_client, store):
    RetentionPolicy.objects.filter(session_type="").update(default_ttl_hours=24, max_ttl_hours=168)
    response = su_client.post(
        admin_url("sessions_app_retentionpolicy_add"),
        {"session_type": "equity", "max_ttl_hours": 12},
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "max_ttl_hours" in errors
    assert "default ttl hours 24 > max ttl hours 12" in errors["max_ttl_hours"][0]
    assert "inherit" in errors["max_ttl_hours"][0]
    assert not RetentionPolicy.objects.filter(session_type="equity").exists()
    # Creates without ttl_hours keep working, because nothing was saved.
    clear_policy_cache()
    assert store.create_session(assets=["AAPL"], session_type="equity").is_live


def test_override_with_its_own_consistent_pair_is_accepted(su_client):
    response = su_client.post(
        admin_url("sessions_app_retentionpolicy_add"),
        {"session_type": "equity", "default_ttl_hours": 6, "max_ttl_hours": 12},
    )
    assert response.status_code == 302
    assert RetentionPolicy.objects.get(session_type="equity").max_ttl_hours == 12


def test_global_change_that_breaks_an_existing_override_is_refused(su_client):
    RetentionPolicy.objects.create(session_type="crypto", max_ttl_hours=36)
    policy = RetentionPolicy.objects.get(session_type="")
    response = su_client.post(
        admin_url("sessions_app_retentionpolicy_change", policy.pk),
        global_data(default_ttl_hours=48, max_ttl_hours=200),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert any("Crypto override inconsistent" in e and "48 > max ttl hours 36" in e for e in errors)
    policy.refresh_from_db()
    assert policy.default_ttl_hours != 48


def test_inconsistent_rows_are_flagged_on_the_operations_page(analyst_client):
    # A row saved before validation existed (or by SQL): flagged, not hidden.
    RetentionPolicy.objects.filter(session_type="").update(default_ttl_hours=24)
    RetentionPolicy.objects.create(session_type="macro")
    RetentionPolicy.objects.filter(session_type="macro").update(max_ttl_hours=12)
    problems = current_inconsistencies()
    assert [(p.session_type, p.lower_value, p.upper_value) for p in problems] == [("macro", 24, 12)]
    page = analyst_client.get(reverse("dashboard:operations")).content.decode()
    assert 'id="policy-consistency"' in page and 'data-type="macro"' in page
    RetentionPolicy.objects.filter(session_type="macro").update(max_ttl_hours=48)
    page = analyst_client.get(reverse("dashboard:operations")).content.decode()
    assert 'id="policy-consistency"' not in page


def test_inconsistent_override_used_to_break_creates(store):
    """Why the check exists: such an override makes every default create fail."""
    RetentionPolicy.objects.filter(session_type="").update(default_ttl_hours=24)
    RetentionPolicy.objects.create(session_type="macro")
    RetentionPolicy.objects.filter(session_type="macro").update(max_ttl_hours=12)
    clear_policy_cache()
    with pytest.raises(InvalidTTL):
        store.create_session(assets=["SPY"], session_type="macro")


def _archived(session_type: str, days_ago: int, count: int, queries: int = 2) -> None:
    archived_at = timezone.now() - timedelta(days=days_ago)
    archived_sessions(
        [
            {
                "session_type": session_type,
                "created_at": archived_at - timedelta(hours=1),
                "archived_at": archived_at,
                "queries": [{"query_type": "price"}] * queries,
                "messages": [("user", "hi")],
            }
            for _ in range(count)
        ]
    )


def test_shortening_retention_asks_first_with_counts_by_type(su_client):
    RetentionPolicy.objects.filter(session_type="").update(retention_days=30)
    RetentionPolicy.objects.create(session_type="crypto", retention_days=90)
    _archived("equity", days_ago=20, count=3)  # deleted at 10 days
    _archived("equity", days_ago=5, count=2)  # kept
    _archived("crypto", days_ago=20, count=4)  # crypto keeps its own 90 days
    policy = RetentionPolicy.objects.get(session_type="")
    change = admin_url("sessions_app_retentionpolicy_change", policy.pk)
    response = su_client.post(change, global_data(retention_days=10))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="retention-preview"' in page
    rows = {row.session_type: row for row in response.context["rows"]}
    assert set(rows) == {"equity", "portfolio", "comparative", "macro", "agent"}
    assert (rows["equity"].sessions, rows["equity"].events) == (3, 9)
    assert rows["equity"].retention_now == 30 and rows["equity"].retention_new == 10
    policy.refresh_from_db()
    assert policy.retention_days == 30  # not saved yet
    assert Session.objects.count() == 9

    confirmed = su_client.post(
        change, {**global_data(retention_days=10), "_confirm_retention": "1"}
    )
    assert confirmed.status_code == 302
    policy.refresh_from_db()
    assert policy.retention_days == 10
    assert Session.objects.count() == 9  # the dry run deletes nothing; the next run will


def test_lengthening_retention_saves_without_asking(su_client):
    policy = RetentionPolicy.objects.get(session_type="")
    in_force = global_effective_policy(policy).retention_days  # blank inherits the setting
    response = su_client.post(
        admin_url("sessions_app_retentionpolicy_change", policy.pk),
        global_data(retention_days=in_force + 10),
    )
    assert response.status_code == 302
