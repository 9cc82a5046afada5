"""The archiver's Lua scripts live with the store, which alone knows the Redis layout.

The snapshot reads every field the archive writes (META_FIELDS, the AIECS counters and the
tool-duration sum among them) and stamps each session's archive time once (ARCHIVE_TIME).
"""

from sessions_app.store.scripts import (  # noqa: F401 - re-exported for archive/
    ARCHIVE_TIME,
    ARCHIVE_TIME_FIELD,
    CLAIM,
    CLAIM_CANDIDATES,
    FREEZE,
    META_FIELDS,
    SESSION_TYPE,
    SNAPSHOT,
    USER_ID,
)
