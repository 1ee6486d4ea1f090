"""Which ``Mcp-Param-*`` headers a call mirrors (``providers/mcp/params.py``, MCP 2026-07-28) and what the schema
cache keeps (``services/agents/mcp_schemas.py``): types, nesting, absent and null arguments, encoding, invalid
annotations, replacing a caller's headers, expiry."""

from __future__ import annotations

from typing import Any

from tollway.providers.mcp.params import Mirrored, mirrored, with_mirrored
from tollway.services.agents.mcp_schemas import SCHEMA_TTL_S, ToolSchemas

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
    schemas.learn("https://a/mcp", {"tools": [{"name": "t1", "inputSchema": SCHEMA}]})
    schemas.learn("https://a/mcp", {"tools": [{"name": "t2"}, {"no": "name"}], "nextCursor": "2"})
    assert schemas.get("https://a/mcp", "t1") == SCHEMA and schemas.get("https://a/mcp", "t2") == {}
    assert schemas.get("https://a/mcp", "t3") is None and schemas.get("https://b/mcp", "t1") is None
    now[0] += SCHEMA_TTL_S
    assert schemas.get("https://a/mcp", "t1") is None
    schemas.learn("https://a/mcp", {"tools": [{"name": "t2"}]})
    assert schemas.get("https://a/mcp", "t1") is None  # an expired listing is not merged into a fresh one
    schemas.forget("https://a/mcp")
    assert schemas.get("https://a/mcp", "t2") is None
