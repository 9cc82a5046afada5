"""Typed readers for environment variables: a bad value fails at start-up naming the variable."""

import os
from typing import overload

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...


def env_str(name: str, default: str | None = None) -> str | None:
    """Return the variable as a string, or `default` when it is unset."""
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    """Return the variable as a boolean (1/true/yes/on or 0/false/no/off)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """Return the variable as an integer, at least `minimum` when given."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated variable as a list of non-empty stripped strings."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


_RATE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def env_rate(name: str, default: str) -> tuple[int, int]:
    """Return "N/WINDOW" (WINDOW in seconds, or with an s/m/h suffix) as (N, seconds)."""
    raw = os.environ.get(name) or default
    count, _, window = raw.strip().partition("/")
    window = window.strip().lower()
    unit = window[-1:] if window[-1:] in _RATE_UNITS else ""
    number = window[: len(window) - len(unit)]
    try:
        attempts, seconds = int(count), int(number) * _RATE_UNITS[unit]
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not a rate like 10/300 (attempts per seconds) or 10/5m"
        ) from None
    if attempts < 1 or seconds < 1:
        raise ImproperlyConfigured(f"{name}={raw!r}: attempts and window must be at least 1")
    return attempts, seconds


def env_networks(name: str, default: list[str]) -> list[str]:
    """Return a comma-separated list of IP addresses or CIDR networks, each checked."""
    import ipaddress

    values = env_list(name, default)
    for value in values:
        try:
            ipaddress.ip_network(value)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {value!r} is not an IP address or network "
                "(like 10.0.0.0/8, host bits zero)"
            ) from None
    return values


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """Return the variable as a number, at least `minimum` when given."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if value != value or (minimum is not None and value < minimum):
        raise ImproperlyConfigured(f"{name}={raw!r} must be a number of at least {minimum}")
    return value


def env_hostports(name: str) -> list[tuple[str, int]]:
    """Return "host:port,host:port" as [(host, port)], each port checked."""
    result = []
    for item in env_list(name, []):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"{name}: {item!r} is not host:port")
        result.append((host.strip("[]"), int(port)))
    return result
