"""Regression: deleting a live session created without a user id (user_id="") used to fail in
the delete script (`attempt to concatenate field '?'`), a 500 over REST and the dashboard."""

import pytest
from django.urls import reverse

from sessions_app import apikeys
from sessions_app.models import Session
from sessions_app.store import get_session_store

pytestmark = pytest.mark.django_db


def _anonymous_session():
    store = get_session_store()
    session = store.create_session(assets=["AAPL"], session_type="equity", user_id="")
    assert store.get_session(session.id).user_id == ""
    return store, session


def test_store_deletes_a_live_session_without_a_user():
    store, session = _anonymous_session()
    assert store.delete_session(session.id) is True
    assert store.get_session(session.id) is None


def test_rest_deletes_a_live_session_without_a_user(client):
    _, secret = apikeys.create_api_key("rw", ["read", "write"])
    headers = {"Authorization": f"Bearer {secret}"}
    store, session = _anonymous_session()
    response = client.delete(f"/api/v1/sessions/{session.id}", headers=headers)
    assert response.status_code == 204, response.content
    assert store.get_session(session.id) is None
    assert client.get(f"/api/v1/sessions/{session.id}", headers=headers).status_code == 404


def test_dashboard_deletes_a_live_session_without_a_user(admin_client):
    store, session = _anonymous_session()
    response = admin_client.post(reverse("dashboard:session_delete", args=[session.id]))
    assert response.status_code == 302
    assert store.get_session(session.id) is None
    assert not Session.objects.filter(id=session.id).exists()
