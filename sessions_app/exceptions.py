"""Errors raised by the store; the API maps each to an HTTP status (in brackets)."""


class StoreError(Exception):
    """Base class of every store error."""

    code = "store_error"


class SessionNotFound(StoreError, LookupError):
    """No live or archived session has this id. [404]"""

    code = "session_not_found"

    def __init__(self, session_id):
        self.session_id = str(session_id)
        super().__init__(f"session {session_id} not found")


class SessionNotActive(StoreError):
    """The session has ended, expired or been archived, so it takes no more writes. [409]"""

    code = "session_not_active"

    def __init__(self, session_id, status: str):
        self.session_id = str(session_id)
        self.status = status
        super().__init__(f"session {session_id} is {status} and accepts no more writes")


class QueryLimitExceeded(StoreError):
    """The session already holds its policy's maximum number of queries. [409]"""

    code = "query_limit_exceeded"

    def __init__(self, session_id, limit: int):
        self.session_id = str(session_id)
        self.limit = limit
        super().__init__(f"session {session_id} reached its limit of {limit} queries")


class StoreUnavailable(StoreError):
    """Redis (live sessions) cannot be reached; nothing was written. [503]"""

    code = "store_unavailable"


class InvalidInput(StoreError, ValueError):
    """Bad input: `field` names the argument, `reason` says what is wrong. [422]"""

    code = "invalid_input"

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class InvalidSessionType(InvalidInput):
    code = "invalid_session_type"


class InvalidStatus(InvalidInput):
    code = "invalid_status"


class InvalidTTL(InvalidInput):
    code = "invalid_ttl"


class InvalidPayload(InvalidInput):
    code = "invalid_payload"


class SessionAlreadyExists(StoreError):
    """A live or archived session already has this caller-chosen id. [409]"""

    code = "session_already_exists"

    def __init__(self, session_id):
        self.session_id = str(session_id)
        self.field = "session_id"
        super().__init__(f"session {session_id} already exists")


class SessionLimitExceeded(StoreError):
    """The policy's cap on live sessions (per user, or in all) is reached. [429]"""

    code = "session_limit_exceeded"

    def __init__(self, scope: str, limit: int):
        self.scope = scope
        self.limit = limit
        where = "this user has" if scope == "user" else "the service has"
        super().__init__(f"{where} {limit} live sessions, the policy's maximum")


class EventLimitExceeded(StoreError):
    """The session already holds its policy's maximum number of events. [409]"""

    code = "event_limit_exceeded"

    def __init__(self, session_id, limit: int):
        self.session_id = str(session_id)
        self.limit = limit
        super().__init__(f"session {session_id} reached its limit of {limit} events")


class StateTooLarge(StoreError):
    """Context and intermediate results would pass the policy's byte cap. [413]"""

    code = "state_too_large"

    def __init__(self, session_id, limit: int):
        self.session_id = str(session_id)
        self.limit = limit
        super().__init__(
            f"session {session_id}: context and results would exceed {limit} bytes of JSON"
        )


class IdempotencyKeyReused(InvalidInput):
    """The idempotency key was used before with a different request body. [422]"""

    code = "idempotency_key_reused"

    def __init__(self, key: str, session_id: str):
        self.session_id = str(session_id)
        super().__init__("idempotency_key", f"was used for another request (session {session_id})")
