"""Fixed-window counters in Redis that slow down password and API-key guessing.

Failed logins are counted per client IP + username (normalised as Django normalises it at login)
and per client IP alone (a cap on password spraying over many names); bad API keys per client
IP, counted only after the key failed verification, so a valid key is never refused. The client
IP is REMOTE_ADDR, which the web server derives from X-Forwarded-For only for TRUSTED_PROXIES
(gunicorn.conf.py). A counter lives
at `P:rl:{kind}:{digest}:{window}` and expires with its window, so nothing needs cleaning up.
When Redis cannot be reached the limiter fails open and logs it: the dashboard (history from
Postgres) must stay usable without Redis, and an unlimited login is better than no login.
"""

import hashlib
import logging
import time
import unicodedata
from dataclasses import dataclass

import redis
from django.conf import settings

from sessions_app.redis_client import get_redis, key

logger = logging.getLogger(__name__)

# Wall-clock seconds; a module attribute so tests can step through windows without waiting.
clock = time.time
# After a Redis error the limiter leaves that client alone for this long (fails open).
BREAKER_SECONDS = 5.0
_tripped: tuple[object, float] | None = None  # (client, monotonic time to try again)


class RateLimited(Exception):
    """Too many failures from this client; retry after `retry_after` seconds. [429]"""

    def __init__(self, retry_after: int, reason: str):
        self.retry_after = retry_after
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Decision:
    blocked: bool
    retry_after: int  # seconds until the current window ends (0 when not blocked)


class Limiter:
    """At most `attempts` failures per `window` seconds for one identity (fixed windows)."""

    def __init__(self, kind: str, setting: str):
        self.kind = kind
        self.setting = setting  # settings name holding (attempts, window seconds)

    @property
    def rate(self) -> tuple[int, int]:
        return getattr(settings, self.setting)

    def _key(self, identity: str, window: int) -> str:
        # A digest, not the raw identity: usernames may hold any character and need not be
        # readable in Redis.
        digest = hashlib.sha256(identity.encode()).hexdigest()[:32]
        return key("rl", self.kind, digest, str(window))

    def _window(self) -> tuple[int, int]:
        """(window number, seconds left in it)."""
        _, seconds = self.rate
        now = clock()
        window = int(now // seconds)
        return window, max(int((window + 1) * seconds - now) + 1, 1)

    def _run(self, action: str, call):
        """call(client) on Redis; None (logged) when Redis is down or was just found down."""
        global _tripped
        client = get_redis()
        if _tripped is not None and _tripped[0] is client and time.monotonic() < _tripped[1]:
            return None
        try:
            return call(client)
        except redis.exceptions.RedisError as exc:
            # Stop asking for a while: a dead Redis must not slow every login and API request
            # by a connect timeout, nor log a line for each.
            _tripped = (client, time.monotonic() + BREAKER_SECONDS)
            logger.warning(
                "rate limit %s: Redis unavailable, not limiting for %g s (%s failed: %s)",
                self.kind,
                BREAKER_SECONDS,
                action,
                exc,
            )
            return None

    def check(self, identity: str) -> Decision:
        """Whether `identity` has used up its failures in the current window."""
        attempts, _ = self.rate
        window, left = self._window()
        count = self._run("check", lambda client: client.get(self._key(identity, window)))
        if count is not None and int(count) >= attempts:
            return Decision(True, left)
        return Decision(False, 0)

    def fail(self, identity: str) -> None:
        """Count one failure for `identity` in the current window."""
        _, seconds = self.rate
        window, _ = self._window()
        name = self._key(identity, window)

        def count(client):
            pipe = client.pipeline(transaction=True)
            pipe.incr(name)
            pipe.expire(name, seconds + 1)
            return pipe.execute()

        self._run("count", count)

    def reset(self, identity: str) -> None:
        """Forget the current window's failures (after a successful login)."""
        window, _ = self._window()
        self._run("reset", lambda client: client.delete(self._key(identity, window)))


LOGINS = Limiter("login", "LOGIN_RATE_LIMIT")
LOGIN_ADDRESSES = Limiter("login-ip", "LOGIN_ADDRESS_RATE_LIMIT")
API_KEYS = Limiter("apikey", "API_KEY_RATE_LIMIT")


def client_ip(meta: dict) -> str:
    """The client's address: REMOTE_ADDR, already resolved through TRUSTED_PROXIES by the
    web server (never read X-Forwarded-For here: any client can send one)."""
    return meta.get("REMOTE_ADDR") or "unknown"


def login_identity(ip: str, username: str) -> str:
    """IP + username as the auth backend will see it: NFKC (Django's normalize_username, so
    fullwidth letters are plain ones) and case-folded: no spelling of a name escapes its count."""
    name = unicodedata.normalize("NFKC", username).strip().casefold()
    # Folding can produce characters that NFKC maps again, so normalise once more.
    name = unicodedata.normalize("NFKC", name)[:150]
    return f"{ip}|{name}"


def login_blocked(ip: str, username: str) -> Decision:
    """Blocked when this IP + username, or this IP over all usernames, failed too often."""
    decision = LOGINS.check(login_identity(ip, username))
    if decision.blocked:
        return decision
    return LOGIN_ADDRESSES.check(ip)


def login_failed(ip: str, username: str) -> None:
    """Count one failed login for the IP + username and for the IP."""
    LOGINS.fail(login_identity(ip, username))
    LOGIN_ADDRESSES.fail(ip)


def login_succeeded(ip: str, username: str) -> None:
    """Forget this name's failures (the address's count stays: one good account must not
    reset a spraying client's cap)."""
    LOGINS.reset(login_identity(ip, username))


def authenticate_api_key(raw_key: str, ip: str):
    """The ApiKey for `raw_key`, else None (a counted bad key); raises RateLimited when `ip`
    sent too many bad keys. A valid key is verified first and never refused by the limit:
    bad keys from one client (or forged as another) cannot lock out a real key holder."""
    from sessions_app import apikeys

    key = apikeys.authenticate(raw_key)
    if key is not None:
        return key
    check_api_key_guesses(ip)
    API_KEYS.fail(ip)
    return None


def check_api_key_guesses(ip: str) -> None:
    """Raise RateLimited when `ip` sent too many bad API keys in the current window."""
    decision = API_KEYS.check(ip)
    if decision.blocked:
        raise RateLimited(
            decision.retry_after,
            f"too many invalid API keys from your address; retry in {decision.retry_after} s",
        )
