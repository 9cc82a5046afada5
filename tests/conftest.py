"""Shared fixtures: an isolated Redis key prefix per test, users per role, a headless browser."""

import os
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission

from sessions_app.roles import ANALYSTS, RETENTION_ADMINS, ensure_roles

ARTIFACTS_DIR = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="session", autouse=True)
def redis_cluster_run(tmp_path_factory):
    """FS_TEST_REDIS_CLUSTER=1: the whole run against a real 3-master Redis Cluster started
    here, with the live sessions over FS_TEST_REDIS_SHARDS shards (12 unless set):
    `FS_TEST_REDIS_CLUSTER=1 pytest tests/test_store.py tests/test_seed_api.py`."""
    if not os.environ.get("FS_TEST_REDIS_CLUSTER"):
        yield None
        return
    from django.test.utils import override_settings

    from sessions_app.redis_client import _store_client, get_redis
    from tests.redis_topologies import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("cluster"))
    override = override_settings(
        REDIS_CLUSTER=True,
        REDIS_URL=cluster.url,
        REDIS_SHARDS=int(os.environ.get("FS_TEST_REDIS_SHARDS", "12")),
    )
    override.enable()
    get_redis.cache_clear()
    _store_client.cache_clear()
    try:
        yield cluster
    finally:
        override.disable()
        get_redis.cache_clear()
        _store_client.cache_clear()
        cluster.stop()


@pytest.fixture(autouse=True)
def redis_prefix(settings):
    """Give each test its own Redis key prefix and delete its keys afterwards."""
    from sessions_app.policies import clear_policy_cache
    from sessions_app.redis_client import get_redis

    prefix = f"test{uuid.uuid4().hex[:12]}"
    settings.SESSION_REDIS_PREFIX = prefix
    # Tests expire sessions within seconds; test_min_ttl checks the real floor.
    settings.SESSION_MIN_TTL_SECONDS = 0
    # Fast hashing for the many test users; policy rows rolled back by a test must not linger
    # in the per-process cache.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    clear_policy_cache()
    from sessions_app import health

    health._cached = None  # a health answer cached by an earlier test is not this test's
    yield prefix
    clear_policy_cache()
    try:
        client = get_redis()
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    except Exception:  # Redis may have been stopped on purpose by the test
        pass


@pytest.fixture
def store():
    """The process-wide live store (the per-test Redis prefix above keeps tests apart)."""
    from sessions_app.store import get_session_store

    return get_session_store()


@pytest.fixture
def make_user(db, django_user_model):
    """make_user("analyst") -> a user in that role; roles: analyst, retention_admin, staff,
    superuser, none."""

    def make(role: str = "analyst", username: str | None = None):
        ensure_roles(Group, Permission)  # transactional tests flush the migration's rows
        username = username or f"{role}-{uuid.uuid4().hex[:6]}"
        if role == "superuser":
            return django_user_model.objects.create_superuser(username, password=PASSWORD)
        user = django_user_model.objects.create_user(
            username, password=PASSWORD, is_staff=role in ("staff", "retention_admin")
        )
        group = {"analyst": ANALYSTS, "retention_admin": RETENTION_ADMINS}.get(role)
        if group:
            user.groups.add(Group.objects.get(name=group))
        return user

    return make


@pytest.fixture
def analyst(make_user):
    return make_user("analyst")


@pytest.fixture
def retention_admin(make_user):
    return make_user("retention_admin")


@pytest.fixture
def analyst_client(client, analyst):
    client.force_login(analyst)
    return client


# Module scope: Playwright's sync API keeps an asyncio loop running in the main thread while the
# browser is open, which breaks later tests that run their own loop (the MCP tests).
@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM_PATH).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM_PATH}: apt-get install chromium")
    # Playwright's sync API runs an event loop in the test thread; Django's ORM calls in the
    # same thread are still synchronous and safe. Only here: other tests must see the error.
    saved = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch(sync_playwright)
    finally:
        if saved is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = saved


def _launch(sync_playwright):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM_PATH,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(page):
    """screenshot("name") saves the page as test-artifacts/screenshots/name.png."""
    folder = ARTIFACTS_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def login(page, live_server, user) -> None:
    """Log `user` in through the real login form."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", user.get_username())
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
