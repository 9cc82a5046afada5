"""The archiver's Lua scripts now live with the store, which alone knows the Redis layout.

The snapshot also reads the AIECS counters and the tool-duration sum (ARCHIVE_EXTRA_FIELDS) so
they survive the archive. Until the store's own META_FIELDS lists them, the snapshot script is
derived from the store's by extending its field list (tests/test_archive_counters.py fails if
that derivation stops matching the store's script).
"""

from sessions_app.store import scripts as _store
from sessions_app.store.scripts import (  # noqa: F401 - re-exported for archive/
    CLAIM,
    CLAIM_CANDIDATES,
    FREEZE,
    SESSION_TYPE,
    USER_ID,
)

ARCHIVE_EXTRA_FIELDS = ("request_count", "total_processing_time", "tool_duration_ms")


def _lua_list(names) -> str:
    return ", ".join(f"'{name}'" for name in names)


_missing = tuple(name for name in ARCHIVE_EXTRA_FIELDS if name not in _store.META_FIELDS)
META_FIELDS = (*_store.META_FIELDS, *_missing)
SNAPSHOT = _store.SNAPSHOT
if _missing:
    _listed = "{" + _lua_list(_store.META_FIELDS) + "}"
    if _listed in SNAPSHOT:
        SNAPSHOT = SNAPSHOT.replace(_listed, "{" + _lua_list(META_FIELDS) + "}")
    else:  # the store's script changed shape: archive what it reads, nothing more
        META_FIELDS = _store.META_FIELDS
