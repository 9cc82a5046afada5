"""The archiver's Lua scripts now live with the store, which alone knows the Redis layout."""

from sessions_app.store.scripts import (  # noqa: F401 - re-exported for archive/
    CLAIM,
    CLAIM_CANDIDATES,
    FREEZE,
    META_FIELDS,
    SESSION_TYPE,
    SNAPSHOT,
    USER_ID,
)
