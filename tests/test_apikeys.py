"""API keys: shown once, stored hashed, scoped, last use recorded sparingly, revocable."""

import hashlib
import socket
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from sessions_app import apikeys
from sessions_app.exceptions import InvalidInput
from sessions_app.models import ApiKey

pytestmark = pytest.mark.django_db


def test_create_returns_secret_once_and_stores_only_its_hash(make_user):
    admin = make_user("superuser")
    key, secret = apikeys.create_api_key("ingest", ["write", "read"], created_by=admin)

    assert secret.startswith(f"fs_{key.prefix}_")
    # >= 32 bytes of randomness after the prefix (token_urlsafe(32) is 43 characters).
    assert len(secret.split("_", 2)[2]) >= 43
    row = ApiKey.objects.get(pk=key.pk)
    assert row.hashed_secret == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {row.name, row.prefix, row.hashed_secret}
    assert row.scopes == ["read", "write"]
    assert row.created_by == admin
    assert row.revoked_at is None


def test_two_keys_never_share_prefix_or_secret():
    (first, secret1), (second, secret2) = (
        apikeys.create_api_key("a", ["read"]),
        apikeys.create_api_key("b", ["read"]),
    )
    assert first.prefix != second.prefix
    assert secret1 != secret2


def test_authenticate_accepts_the_key_and_records_last_use():
    key, secret = apikeys.create_api_key("client", ["read"])
    found = apikeys.authenticate(secret)
    assert found is not None and found.pk == key.pk
    key.refresh_from_db()
    assert key.last_used_at is not None


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),  # wrong secret, right prefix
        lambda s: "fs_000000000000_" + s.split("_", 2)[2],  # unknown prefix
        lambda s: s[:20],  # truncated
        lambda s: "",
        lambda s: "Bearer " + s,
        lambda s: s.replace("fs_", "xx_", 1),
    ],
)
def test_authenticate_rejects_wrong_keys(mangle):
    _, secret = apikeys.create_api_key("client", ["read"])
    assert apikeys.authenticate(mangle(secret)) is None


def test_authenticate_rejects_non_strings():
    assert apikeys.authenticate(None) is None
    assert apikeys.authenticate(123) is None


def test_last_used_is_written_at_most_once_a_minute(django_assert_num_queries):
    key, secret = apikeys.create_api_key("client", ["read"])
    with django_assert_num_queries(2):  # lookup + the first last_used_at update
        apikeys.authenticate(secret)
    with django_assert_num_queries(0):  # verified a moment ago: its Redis entry answers
        assert apikeys.authenticate(secret).pk == key.pk
    apikeys._refreshed.clear()  # a minute later (or another process): Postgres again
    with django_assert_num_queries(1):  # lookup only: used a moment ago
        apikeys.authenticate(secret)
    earlier = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=earlier)
    apikeys._refreshed.clear()
    with django_assert_num_queries(2):
        apikeys.authenticate(secret)
    key.refresh_from_db()
    assert key.last_used_at > earlier


@pytest.mark.django_db(transaction=True)
def test_a_key_revoked_elsewhere_is_refused_at_once_by_a_process_that_trusts_redis(
    django_assert_num_queries,
):
    key, secret = apikeys.create_api_key("client", ["write"])
    assert apikeys.authenticate(secret).pk == key.pk  # this process: Postgres, then Redis
    with django_assert_num_queries(0):
        assert apikeys.authenticate(secret).pk == key.pk
    # Another process revokes it (row and tombstone); this one still has it as fresh.
    apikeys.revoke(ApiKey.objects.get(pk=key.pk))
    assert apikeys.authenticate(secret) is None
    # And deleting a key: the same.
    other, raw = apikeys.create_api_key("other", ["read"])
    assert apikeys.authenticate(raw) is not None
    ApiKey.objects.get(pk=other.pk).delete()
    assert apikeys.authenticate(raw) is None


def test_revoked_key_is_refused_and_revoking_twice_keeps_the_first_time():
    key, secret = apikeys.create_api_key("client", ["read", "write"])
    apikeys.revoke(key)
    assert apikeys.authenticate(secret) is None
    first = ApiKey.objects.get(pk=key.pk).revoked_at
    assert first is not None
    apikeys.revoke(ApiKey.objects.get(pk=key.pk))
    assert ApiKey.objects.get(pk=key.pk).revoked_at == first


def test_scopes_are_separate():
    reader, _ = apikeys.create_api_key("reader", ["read"])
    writer, _ = apikeys.create_api_key("writer", ["write"])
    assert apikeys.has_scope(reader, "read") and not apikeys.has_scope(reader, "write")
    assert apikeys.has_scope(writer, "write") and not apikeys.has_scope(writer, "read")


@pytest.mark.parametrize(
    ("name", "scopes", "field"),
    [
        ("", ["read"], "name"),
        ("   ", ["read"], "name"),
        ("x" * 101, ["read"], "name"),
        ("ok", [], "scopes"),
        ("ok", ["admin"], "scopes"),
        ("ok", "read", "scopes"),
    ],
)
def test_bad_input_names_the_field_and_creates_nothing(name, scopes, field):
    with pytest.raises(InvalidInput) as err:
        apikeys.create_api_key(name, scopes)
    assert err.value.field == field
    assert err.value.reason
    assert not ApiKey.objects.exists()


@contextmanager
def postgres_unreachable():
    """Point Django's connection at a port where nothing listens: every query then fails."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    saved = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = dead_port
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["PORT"] = saved


@pytest.mark.django_db(transaction=True)
def test_verified_key_keeps_working_while_postgres_is_down():
    key, raw = apikeys.create_api_key("writer", ["write"])
    _, never_used = apikeys.create_api_key("idle", ["read"])
    assert apikeys.authenticate(raw).pk == key.pk  # verified while Postgres is up
    with postgres_unreachable():
        assert apikeys.authenticate(raw).pk == key.pk
        with pytest.raises(DatabaseError):
            apikeys.authenticate(never_used)  # unknown to this process: cannot be checked
        # A wrong secret is never accepted from the outage memory.
        with pytest.raises(DatabaseError):
            apikeys.authenticate(raw[:-1] + ("x" if raw[-1] != "x" else "y"))
    assert apikeys.authenticate(raw).pk == key.pk  # and Postgres answers again afterwards


def _forget_this_process():
    """Another process (host) with nothing in memory: only Redis can vouch for a key."""
    apikeys._refreshed.clear()


@pytest.mark.django_db(transaction=True)
def test_a_key_verified_on_one_host_works_on_another_during_an_outage_until_revoked():
    key, raw = apikeys.create_api_key("writer", ["write"])
    _, other = apikeys.create_api_key("other", ["read"])
    assert apikeys.authenticate(raw).pk == key.pk
    assert apikeys.authenticate(other) is not None
    _forget_this_process()
    with postgres_unreachable():
        remembered = apikeys.authenticate(raw)
        assert remembered.pk == key.pk and apikeys.has_scope(remembered, "write")
    apikeys.revoke(key)
    assert apikeys.authenticate(raw) is None
    # A revoked key never works again, through the outage cache either, even when a
    # verification that raced the revocation tries to write the cache afterwards.
    digest = apikeys.hash_key(raw)
    apikeys._remember(digest, key)
    assert apikeys._remembered(digest) is None
    with postgres_unreachable(), pytest.raises(DatabaseError):
        apikeys.authenticate(raw)
    # Deleting a key buries it as well.
    ApiKey.objects.filter(prefix=other.split("_")[1]).get().delete()
    with postgres_unreachable(), pytest.raises(DatabaseError):
        apikeys.authenticate(other)


def test_revoking_while_redis_is_down_fails_and_changes_nothing():
    from sessions_app.exceptions import StoreUnavailable
    from tests.factories import redis_unavailable

    key, raw = apikeys.create_api_key("writer", ["write"])
    with redis_unavailable(), pytest.raises(StoreUnavailable, match="try again"):
        apikeys.revoke(key)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
    apikeys.revoke(key)
    assert apikeys.authenticate(raw) is None
