"""MCP server (official `mcp` SDK, low-level Server): the seed's session tools over the store.

Tools keep the seed's names and camelCase argument names (`tools.py`). Transports
(`transports.py`): stdio (`manage.py mcp_server`) and streamable HTTP at /mcp (`McpHttpApp`,
mounted by fimlsessions.asgi), where the caller needs an API key (`Authorization: Bearer`):
read tools need the `read` scope, tools that change a session `write`.
"""

from sessions_app.mcp.tools import TOOLS, call_tool
from sessions_app.mcp.transports import McpHttpApp, build_server, run_stdio

__all__ = ["TOOLS", "McpHttpApp", "build_server", "call_tool", "run_stdio"]
