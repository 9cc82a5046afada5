"""Every public store method has a REST route and an MCP tool, or docs/INTERFACES.md says why
not; every MCP tool's input schema states its limits."""

import inspect
import re
from pathlib import Path

import pytest
from django.conf import settings

from sessions_app.api import api
from sessions_app.mcp.tools import TOOLS
from sessions_app.store import SessionStore

DOC = Path(settings.BASE_DIR) / "docs" / "INTERFACES.md"
ROW = re.compile(r"^\|\s*`(?P<method>\w+)`\s*\|(?P<rest>[^|]*)\|(?P<mcp>[^|]*)\|(?P<why>[^|]*)\|$")
ROUTE = re.compile(r"`(?P<verb>GET|POST|PUT|PATCH|DELETE) (?P<path>/[^`]*)`")


def public_methods() -> list[str]:
    return sorted(
        name
        for name, member in inspect.getmembers(SessionStore)
        if not name.startswith("_") and callable(member) and not inspect.isclass(member)
    )


def documented() -> dict[str, dict[str, str]]:
    text = DOC.read_text()
    table = text[text.index("## Store methods and their interfaces") :]
    table = table[: table.index("\n## ", 1)]
    rows = {}
    for line in table.splitlines():
        match = ROW.match(line.strip())
        if match:
            rows[match["method"]] = {k: match[k].strip() for k in ("rest", "mcp", "why")}
    return rows


def rest_operations() -> set[tuple[str, str]]:
    schema = api.get_openapi_schema()
    prefix = "/api/v1"
    return {
        (verb.upper(), path.removeprefix(prefix))
        for path, operations in schema["paths"].items()
        for verb in operations
    }


def test_every_store_method_has_rest_and_mcp_or_a_reason():
    rows = documented()
    routes = rest_operations()
    problems = []
    for name in public_methods():
        row = rows.get(name)
        if row is None:
            problems.append(f"{name}: no row in docs/INTERFACES.md")
            continue
        if row["why"]:
            continue
        route = ROUTE.search(row["rest"])
        tool = row["mcp"].strip("`")
        if route is None or (route["verb"], route["path"]) not in routes:
            problems.append(f"{name}: REST route {row['rest']!r} is not in the OpenAPI document")
        if tool not in TOOLS:
            problems.append(f"{name}: MCP tool {tool!r} does not exist")
    assert not problems, "\n".join(problems)


def test_documented_rows_name_real_methods():
    stale = set(documented()) - set(public_methods())
    assert not stale, f"rows for methods the store no longer has: {sorted(stale)}"


LIMIT_KEYS = {"maxLength", "maximum", "exclusiveMaximum", "maxItems", "enum", "const", "pattern"}


def _limited(schema: dict, defs: dict) -> bool:
    if "$ref" in schema:
        return _limited(defs[schema["$ref"].split("/")[-1]], defs)
    if LIMIT_KEYS & set(schema) or schema.get("type") == "boolean":
        return True
    if "bytes of JSON" in schema.get("description", ""):  # JSON objects and values
        return True
    if "anyOf" in schema:
        return all(_limited(part, defs) for part in schema["anyOf"] if part.get("type") != "null")
    return False


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_every_tool_input_schema_states_its_limits(name):
    schema = TOOLS[name].tool(name).input_schema
    defs = schema.get("$defs", {})
    unlimited = [
        argument for argument, prop in schema["properties"].items() if not _limited(prop, defs)
    ]
    assert not unlimited, f"{name}: no stated limit on {unlimited}"
