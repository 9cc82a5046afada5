"""Bearer API-key auth, one scope per operation: no key or a bad one is 401, no scope 403."""

from ninja.security import HttpBearer

from sessions_app import apikeys, ratelimit
from sessions_app.api.errors import ScopeDenied


class ApiKeyAuth(HttpBearer):
    """`Authorization: Bearer fs_...`; the key must carry `scope`."""

    def __init__(self, scope: str):
        self.scope = scope
        super().__init__()

    def __call__(self, request):
        # Not ninja's HttpBearer.__call__: that one logs a malformed header (the key) in DEBUG.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self.authenticate(request, token)

    def authenticate(self, request, token):
        # Bad keys are rate limited per client IP (429 once over the limit); valid keys never.
        key = ratelimit.authenticate_api_key(token, ratelimit.client_ip(request.META))
        if key is None:
            return None
        if not apikeys.has_scope(key, self.scope):
            raise ScopeDenied(self.scope)
        return key


READ = ApiKeyAuth("read")
WRITE = ApiKeyAuth("write")
