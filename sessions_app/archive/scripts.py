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

# `archived_at`: the archive time the snapshot stamps (STAMP_ARCHIVE_TIME), read back with the
# rest of the meta.
ARCHIVE_EXTRA_FIELDS = ("request_count", "total_processing_time", "tool_duration_ms", "archived_at")
# The meta field holding a claimed session's archive time (epoch seconds), set once: a re-run
# after a crash writes the session into the same archive day (the partition key), so its
# upsert finds the row the first run wrote instead of adding a second one in another day.
ARCHIVE_TIME_FIELD = "archived_at"


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
ARCHIVE_TIME = META_FIELDS.index(ARCHIVE_TIME_FIELD) if ARCHIVE_TIME_FIELD in META_FIELDS else None
# The snapshot stamps each session still in Redis with the archive time (ARGV[1]) unless it has
# one, before reading its meta. KEYS: meta, events, context, results of each session.
SNAPSHOT = (
    """
for i = 1, #KEYS, 4 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSETNX', KEYS[i], 'FIELD', ARGV[1])
  end
end
""".replace("FIELD", ARCHIVE_TIME_FIELD)
    + SNAPSHOT
)
