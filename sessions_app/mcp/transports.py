"""MCP transports: the low-level SDK Server over stdio (`manage.py mcp_server`) and the
streamable HTTP app for /mcp, which checks the caller's API key first."""

from __future__ import annotations

import contextlib
import json

import mcp_types as types
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from sessions_app import ratelimit
from sessions_app.mcp.tools import TOOLS, call_tool

SERVER_NAME = "fiml-sessions"
API_KEY_SCOPE_KEY = "fiml.api_key"  # where the HTTP auth wrapper leaves the caller's key


async def _list_tools(ctx, params) -> types.ListToolsResult:
    return types.ListToolsResult(tools=[spec.tool(name) for name, spec in TOOLS.items()])


async def _call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    request = getattr(ctx, "request", None)
    api_key = request.scope.get(API_KEY_SCOPE_KEY) if request is not None else None
    return await call_tool(params.name, params.arguments, api_key)


def build_server() -> Server:
    return Server(
        SERVER_NAME,
        version="1.0.0",
        instructions=(
            "Record and inspect FIML analysis sessions: create one, track its queries and "
            "messages, extend or end it, and read sessions and analytics."
        ),
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
    )


def _transport_security() -> TransportSecuritySettings:
    """Host/Origin checks from ALLOWED_HOSTS (off when any host is a wildcard)."""
    hosts = list(settings.ALLOWED_HOSTS)
    if not hosts or any(host == "*" or host.startswith(".") for host in hosts):
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*hosts, *(f"{host}:*" for host in hosts)],
        allowed_origins=[
            f"{scheme}://{host}{port}"
            for scheme in ("http", "https")
            for host in hosts
            for port in ("", ":*")
        ],
    )


class McpHttpApp:
    """ASGI app for /mcp: bearer API key check, then the SDK's streamable HTTP transport.

    Stateless and JSON responses, so any web worker can answer any request (no sticky
    sessions), which is how the site scales out.
    """

    def __init__(self):
        self.manager = StreamableHTTPSessionManager(
            app=build_server(),
            json_response=True,
            stateless=True,
            security_settings=_transport_security(),
        )

    def lifespan(self) -> contextlib.AbstractAsyncContextManager:
        """Must be entered once for the process's lifetime (fimlsessions.asgi does)."""
        return self.manager.run()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        headers = dict(scope.get("headers") or [])
        if settings.SECURE_SSL_REDIRECT and not _is_secure(scope, headers):
            # The site's HTTPS policy (SecurityMiddleware's redirect); 308 keeps the POST.
            host = headers.get(b"host", b"").decode("latin-1")
            location = f"https://{host}{scope.get('root_path', '')}{scope['path']}"
            await _send_json(
                send,
                308,
                {"error": {"code": "https_required", "field": None, "reason": "use HTTPS"}},
                [(b"location", location.encode("latin-1"))],
            )
            return
        if scope["method"] == "GET":
            # Stateless JSON transport: no server-initiated SSE stream to offer. The MCP spec's
            # answer is 405; the SDK would otherwise hold a stream open that never closes.
            await _send_json(
                send,
                405,
                {
                    "error": {
                        "code": "method_not_allowed",
                        "field": None,
                        "reason": "this MCP endpoint offers no SSE stream; POST JSON-RPC",
                    }
                },
                [(b"allow", b"POST, DELETE")],
            )
            return
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        key = None
        if scheme.lower() == "bearer" and token:
            ip = (scope.get("client") or ("unknown",))[0]
            try:
                key = await sync_to_async(_authenticate, thread_sensitive=True)(token, ip)
            except DatabaseError:
                body = {"code": "database_unavailable", "field": None, "reason": "retry later"}
                await _send_json(send, 503, {"error": body}, [(b"retry-after", b"5")])
                return
            except ratelimit.RateLimited as exc:
                body = {"code": "rate_limited", "field": "Authorization", "reason": exc.reason}
                retry = [(b"retry-after", str(exc.retry_after).encode())]
                await _send_json(send, 429, {"error": body}, retry)
                return
        if key is None:
            await _send_json(
                send,
                401,
                {
                    "error": {
                        "code": "unauthorized",
                        "field": "Authorization",
                        "reason": "send a valid API key as 'Authorization: Bearer <key>'",
                    }
                },
                [(b"www-authenticate", b'Bearer realm="fiml-sessions"')],
            )
            return
        scope[API_KEY_SCOPE_KEY] = key
        hsts = _hsts_headers() if _is_secure(scope, headers) else []
        if hsts:
            plain_send = send

            async def send(message):  # the HSTS header Django's pages carry, on /mcp too
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), *hsts]}
                await plain_send(message)

        await self.manager.handle_request(scope, receive, send)


def _authenticate(token: str, ip: str):
    close_old_connections()
    try:
        # Bad keys are rate limited per client IP; a valid key is never refused.
        return ratelimit.authenticate_api_key(token, ip)
    finally:
        close_old_connections()


def _is_secure(scope, headers: dict[bytes, bytes]) -> bool:
    """HTTPS as Django judges it: the scheme, or the proxy header when one is configured."""
    if scope.get("scheme") == "https":
        return True
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, value = proxy
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
        return headers.get(header, b"").decode("latin-1").split(",")[0].strip() == value
    return False


def _hsts_headers() -> list[tuple[bytes, bytes]]:
    if not settings.SECURE_HSTS_SECONDS:
        return []
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return [(b"strict-transport-security", value.encode())]


async def _send_json(send, status: int, body: dict, headers=()) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def run_stdio() -> None:
    """Serve over stdin/stdout until the client closes them (manage.py mcp_server)."""
    from mcp.server.stdio import stdio_server

    server = build_server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
