"""ASGI entry point: /mcp goes to the MCP streamable HTTP app, everything else to Django.

Run under gunicorn with uvicorn workers (see Procfile). The MCP app's session manager lives as
long as the process, entered through the ASGI lifespan protocol.

Django itself runs as its WSGI app on a fixed pool of threads (a2wsgi): every view here is
synchronous, and Django's own ASGI handler would run each request in a new thread with a new
database connection (Django's docs: no persistent connections under ASGI), while long-lived
threads keep their persistent connections (CONN_MAX_AGE), as gunicorn's threaded workers do.
WhiteNoise serves static files as under WSGI.
"""

import os

from a2wsgi import WSGIMiddleware
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fimlsessions.settings")
# Threads per worker process, each with at most one database connection.
WEB_THREADS = int(os.environ.get("WEB_THREADS") or 4)
# django-stubs types WSGIHandler.__call__ as returning HttpResponseBase, which a2wsgi's WSGIApp
# (returning Iterable[bytes]) does not accept although a response is an iterable of bytes.
django_app = WSGIMiddleware(get_wsgi_application(), workers=WEB_THREADS)  # type: ignore[arg-type]

from sessions_app.mcp import McpHttpApp  # noqa: E402 - needs the apps loaded above
from sessions_app.prometheus import observe_asgi  # noqa: E402

MCP_PATH = "/mcp"


def build_application():
    """A fresh router with its own MCP app (whose session manager runs once per process)."""
    mcp_app = McpHttpApp()

    async def lifespan(receive, send) -> None:
        await receive()  # lifespan.startup
        phase = "startup"
        try:
            async with mcp_app.lifespan():
                await send({"type": "lifespan.startup.complete"})
                phase = "shutdown"
                await receive()  # lifespan.shutdown
        except Exception as exc:  # noqa: BLE001 - reported to the server, which stops
            await send({"type": f"lifespan.{phase}.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def application(scope, receive, send):
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
        elif scope["type"] == "http" and scope["path"].rstrip("/") == MCP_PATH:
            await observe_asgi(mcp_app, scope, receive, send)
        elif scope["type"] == "http":
            await django_app(scope, receive, send)
        # websockets: none served; the server closes the connection

    return application


application = build_application()
