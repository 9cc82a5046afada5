"""`manage.py mcp_server`: the MCP server over stdio, for MCP hosts that launch it locally."""

import anyio
from django.core.management.base import BaseCommand

from sessions_app.mcp import run_stdio


class Command(BaseCommand):
    help = (
        "Serve the FIML Sessions MCP tools over stdin/stdout (JSON-RPC). The HTTP transport is "
        "at /mcp on the web server."
    )
    # stdout carries the protocol: Django's system checks must not print to it.
    requires_system_checks = []

    def handle(self, *args, **options):
        anyio.run(run_stdio)
