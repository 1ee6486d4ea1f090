"""Which ``Mcp-Param-*`` headers a call mirrors (``providers/mcp/params.py``, MCP 2026-07-28) and what the schema
cache keeps (``services/agents/mcp_schemas.py``): types, nesting, absent and null arguments, encoding, invalid
annotations, replacing a caller's headers, expiry, and whose listing a schema serves (its scope)."""

from __future__ import annotations

from typing import Any

from tollway.domain.keys import KeyKind
from tollway.domain.mcp_calls import McpApp
from tollway.domain.tenancy import Principal
from tollway.providers.mcp.params import Mirrored, mirrored, with_mirrored
from tollway.services.agents.mcp_schemas import SCHEMA_TTL_S, ToolSchemas, listing_scope

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "x-mcp-header": "Region"},
        "shard": {"type": "integer", "x-mcp-header": "Shard"},
        "dry": {"type": "boolean", "x-mcp-header": "Dry-Run"},
        "target": {"type": "object", "properties": {"zone": {"type": "string", "x-mcp-header": "Zone"}}},
        "query": {"type": "string"},
    },
}


def headers(schema: Any, arguments: Any) -> dict[str, str]:
    found = mirrored(schema, arguments)
    assert found is not None
    return found.headers


def test_each_marked_argument_becomes_its_header() -> None:
    arguments = {"region": "us-west1", "shard": -7, "dry": True, "target": {"zone": "b"}, "query": "q"}
    assert headers(SCHEMA, arguments) == {
        "Mcp-Param-Region": "us-west1",
        "Mcp-Param-Shard": "-7",
        "Mcp-Param-Dry-Run": "true",
        "Mcp-Param-Zone": "b",
    }


def test_absent_and_null_arguments_send_no_header_and_unsafe_values_are_base64() -> None:
    assert headers(SCHEMA, {"region": None, "query": "q"}) == {}
    assert headers(SCHEMA, None) == {}
    assert headers(SCHEMA, {"region": "Hello, 世界"}) == {"Mcp-Param-Region": "=?base64?SGVsbG8sIOS4lueVjA==?="}
    assert headers(SCHEMA, {"region": "=?base64?literal?="}) == {
        "Mcp-Param-Region": "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
    }


def test_an_unknown_or_invalid_schema_mirrors_nothing_and_keeps_the_given_headers() -> None:
    number = {"type": "object", "properties": {"x": {"type": "number", "x-mcp-header": "X"}}}
    in_array = {
        "type": "object",
        "properties": {"xs": {"type": "array", "items": {"type": "string", "x-mcp-header": "X"}}},
    }
    assert mirrored(None, {"x": 1}) is None and mirrored(number, {"x": 1.5}) is None and mirrored(in_array, {}) is None
    given = {"Authorization": "Bearer t", "mcp-param-region": "from-the-caller"}
    assert with_mirrored(given, None) == given


def test_mirrored_headers_replace_the_callers_declared_ones_of_any_case() -> None:
    given = {"Authorization": "Bearer t", "mcp-param-region": "stale", "MCP-PARAM-SHARD": "9", "Mcp-Param-Other": "x"}
    sent = with_mirrored(given, mirrored(SCHEMA, {"region": "eu"}))
    # a declared header whose argument is absent goes; one the schema does not declare travels on (intermediary)
    assert sent == {"Authorization": "Bearer t", "Mcp-Param-Other": "x", "Mcp-Param-Region": "eu"}
    assert with_mirrored(given, Mirrored({}, frozenset())) == given


def test_the_schema_cache_learns_pages_and_forgets_after_its_ttl() -> None:
    now = [100.0]
    schemas = ToolSchemas(clock=lambda: now[0])
    a, b = ("p1", "app-a", "", "https://a/mcp"), ("p1", "app-b", "", "https://b/mcp")
    schemas.learn(a, {"tools": [{"name": "t1", "inputSchema": SCHEMA}]})
    schemas.learn(a, {"tools": [{"name": "t2"}, {"no": "name"}], "nextCursor": "2"})
    assert schemas.get(a, "t1") == SCHEMA and schemas.get(a, "t2") == {}
    assert schemas.get(a, "t3") is None and schemas.get(b, "t1") is None
    now[0] += SCHEMA_TTL_S
    assert schemas.get(a, "t1") is None
    schemas.learn(a, {"tools": [{"name": "t2"}]})
    assert schemas.get(a, "t1") is None  # an expired listing is not merged into a fresh one
    schemas.forget(a)
    assert schemas.get(a, "t2") is None


URL = "https://mcp.example.com/mcp"


def _app(app_id: str, *, oauth: bool = False, external: bool = False) -> McpApp:
    return McpApp(app_id, "tools", "Tools", URL, 1_000_000, None, oauth=oauth, external=external)


def _caller(platform_id: str, end_user_id: str | None = None) -> Principal:
    kind = KeyKind.END_USER if end_user_id is not None else KeyKind.PLATFORM
    return Principal(kind, "k1", platform_id, end_user_id)


def test_a_listing_serves_only_its_platforms_app_and_an_oauth_apps_end_user() -> None:
    """Two platforms' apps on one server URL never share a listing; an OAuth app's (and an external server's)
    listing is the end user's own, a ``none``/``header`` app's is shared by the platform's callers (one credential)."""
    schemas = ToolSchemas()
    shared, oauth, external = _app("app-1"), _app("app-2", oauth=True), _app("external:x", external=True)
    for app in (shared, oauth, external):
        schemas.learn(listing_scope(_caller("p1", "u1"), app), {"tools": [{"name": "t", "inputSchema": SCHEMA}]})
    assert schemas.get(listing_scope(_caller("p1", "u2"), shared), "t") == SCHEMA
    assert schemas.get(listing_scope(_caller("p1"), shared), "t") == SCHEMA  # a platform key: the same credential
    assert schemas.get(listing_scope(_caller("p2", "u1"), _app("app-3")), "t") is None  # another platform's app
    assert schemas.get(listing_scope(_caller("p1", "u1"), oauth), "t") == SCHEMA
    assert schemas.get(listing_scope(_caller("p1", "u2"), oauth), "t") is None  # another end user's connection
    assert schemas.get(listing_scope(_caller("p1", "u1"), external), "t") == SCHEMA
    assert schemas.get(listing_scope(_caller("p1", "u2"), external), "t") is None
    assert schemas.get(listing_scope(_caller("p2", "u1"), external), "t") is None  # the same stand-in id elsewhere
    moved = McpApp("app-1", "tools", "Tools", "https://moved.example.com/mcp", 1_000_000, None, oauth=False)
    assert schemas.get(listing_scope(_caller("p1", "u1"), moved), "t") is None  # its server_url changed
    schemas.forget(listing_scope(_caller("p1", "u1"), oauth))
    assert schemas.get(listing_scope(_caller("p1", "u1"), shared), "t") == SCHEMA  # forgetting one scope only
