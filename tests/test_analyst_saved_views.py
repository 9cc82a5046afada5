"""Saved views: save the current filters, find them in the menu, open and share by URL, rename,
update, delete; per user, owner-only edits, CSRF, bad input named."""

import pytest
from django.test import Client
from django.urls import reverse

from sessions_app import saved_views
from sessions_app.exceptions import InvalidInput
from sessions_app.models import SavedView

pytestmark = pytest.mark.django_db


def _save(client, name="Crypto fails", page="history", query="type=crypto&status=failed&cursor=x"):
    return client.post(
        reverse("dashboard:saved_views"), {"name": name, "page": page, "query": query}
    )


def test_save_then_open_from_the_menu(analyst_client, analyst):
    response = _save(analyst_client)
    assert response.status_code == 302
    assert response["Location"] == "/history/?status=failed&type=crypto"  # no cursor kept
    view = SavedView.objects.get(owner=analyst)
    assert (view.name, view.page, view.query) == (
        "Crypto fails",
        "history",
        "status=failed&type=crypto",
    )

    page = analyst_client.get(reverse("dashboard:history")).content.decode()
    assert f'href="/views/{view.pk}/"' in page and "Crypto fails" in page
    opened = analyst_client.get(reverse("dashboard:saved_view", args=[view.pk]))
    assert opened["Location"] == "/history/?status=failed&type=crypto"
    # The overview's menu lists overview views only.
    assert "Crypto fails" not in analyst_client.get(reverse("dashboard:overview")).content.decode()


def test_overview_views_keep_only_overview_filters(analyst_client, analyst):
    _save(analyst_client, "Last week crypto", "overview", "range=7&type=crypto&compare=on&user=x")
    view = SavedView.objects.get(owner=analyst)
    assert view.query == "compare=on&range=7&type=crypto"


def test_shared_link_opens_for_another_analyst_but_only_the_owner_edits(
    analyst_client, analyst, make_user
):
    _save(analyst_client)
    view = SavedView.objects.get(owner=analyst)
    other = Client()
    other.force_login(make_user("analyst"))
    assert other.get(reverse("dashboard:saved_view", args=[view.pk]))["Location"].startswith(
        "/history/?"
    )
    assert (
        other.post(
            reverse("dashboard:saved_view_edit", args=[view.pk]), {"name": "Mine"}
        ).status_code
        == 404
    )
    assert other.post(reverse("dashboard:saved_view_delete", args=[view.pk])).status_code == 404
    view.refresh_from_db()
    assert view.name == "Crypto fails"
    # And the other user's menu and list do not show it.
    assert "Crypto fails" not in other.get(reverse("dashboard:saved_views")).content.decode()


def test_rename_update_filters_and_delete(analyst_client, analyst):
    _save(analyst_client)
    view = SavedView.objects.get(owner=analyst)
    edit = reverse("dashboard:saved_view_edit", args=[view.pk])
    analyst_client.post(edit, {"name": "  Failed   crypto "})
    view.refresh_from_db()
    assert view.name == "Failed crypto" and view.query == "status=failed&type=crypto"
    analyst_client.post(edit, {"name": "Failed crypto", "query": "type=crypto&sort=-cost"})
    view.refresh_from_db()
    assert view.query == "sort=-cost&type=crypto"
    listing = analyst_client.get(reverse("dashboard:saved_views")).content.decode()
    assert f"http://testserver/views/{view.pk}/" in listing  # the share link, copyable
    analyst_client.post(reverse("dashboard:saved_view_delete", args=[view.pk]))
    assert not SavedView.objects.filter(pk=view.pk).exists()


def test_bad_input_is_named_and_changes_nothing(analyst_client, analyst):
    response = _save(analyst_client, name="   ")
    assert response.status_code == 302
    assert not SavedView.objects.exists()
    follow = _save(analyst_client, query="type=spaceship")
    assert not SavedView.objects.exists()
    _save(analyst_client, name="Dup")
    response = analyst_client.post(
        reverse("dashboard:saved_views"),
        {"name": "Dup", "page": "history", "query": "type=equity"},
        follow=True,
    )
    assert "already have a history view named" in response.content.decode()
    assert SavedView.objects.count() == 1
    with pytest.raises(InvalidInput) as error:
        saved_views.clean_query("history", "type=spaceship")
    assert error.value.field == "query" and "Type" in error.value.reason
    with pytest.raises(InvalidInput):
        saved_views.clean_query("admin", "")
    assert follow.status_code == 302


def test_saving_needs_csrf(analyst):
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)
    assert _save(client).status_code == 403
    assert not SavedView.objects.exists()


def test_views_need_the_dashboard(client, make_user):
    client.force_login(make_user("none"))
    assert client.get(reverse("dashboard:saved_views")).status_code == 403
    assert _save(client).status_code == 403


def test_escaping_of_view_names(analyst_client, analyst):
    _save(analyst_client, name="<script>alert(1)</script>")
    page = analyst_client.get(reverse("dashboard:history")).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
