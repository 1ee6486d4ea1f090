"""Which POSTs the MCP proxy's fast path answers itself (``http/mcp/fast_call.recognise``): one ``tools/call`` at a
version the SDK serves, with a clean envelope; everything else is left to the SDK (None)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.requests import Request

from tollway.http.mcp.fast_call import recognise

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"},
}
JSON_HEADERS = [("content-type", "application/json"), ("accept", "application/json, text/event-stream")]
MODERN_HEADERS = [*JSON_HEADERS, ("mcp-protocol-version", MODERN), ("mcp-method", "tools/call"), ("mcp-name", "echo")]


def request(headers: list[tuple[str, str]], method: str = "POST") -> Request:
    raw = [(k.encode(), v.encode()) for k, v in headers]
    return Request({"type": "http", "method": method, "path": "/v1/mcp/tools", "headers": raw, "query_string": b""})


def call(params: dict[str, Any] | None = None, **fields: Any) -> bytes:
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params or {"name": "echo"}, **fields}
    return orjson.dumps(body)


@pytest.mark.parametrize("version", [None, "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"])
def test_a_handshake_era_tools_call_is_recognised(version: str | None) -> None:
    headers = JSON_HEADERS if version is None else [*JSON_HEADERS, ("mcp-protocol-version", version)]
    envelope = recognise(request(headers), call())
    assert envelope is not None and not envelope.modern
    assert envelope.version == (version or "2025-03-26")  # no header: the transport's default
    assert envelope.request.id == 3 and envelope.request.params == {"name": "echo"}


def test_a_2026_tools_call_is_recognised_with_its_envelope() -> None:
    envelope = recognise(request(MODERN_HEADERS), call({"name": "echo", "_meta": META}))
    assert envelope is not None and envelope.modern and envelope.version == MODERN
    assert envelope.client_info == {"name": "c", "version": "1"} and envelope.client_capabilities == {}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (JSON_HEADERS, orjson.dumps([{"jsonrpc": "2.0", "id": 1, "method": "tools/call"}])),  # a batch
        (JSON_HEADERS, call(method="tools/list")),  # another method
        (JSON_HEADERS, orjson.dumps({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "x"}})),  # no id
        (JSON_HEADERS, b"{not json"),
        (JSON_HEADERS, call(jsonrpc="1.0")),  # not a JSON-RPC 2.0 request
        ([("content-type", "text/plain"), ("accept", "application/json")], call()),
        ([("content-type", "application/json"), ("accept", "text/event-stream")], call()),  # JSON not accepted
        ([*JSON_HEADERS, ("mcp-protocol-version", "2099-01-01")], call()),  # a version the SDK does not know
        (JSON_HEADERS, call({"name": "echo", "_meta": META})),  # the 2026 envelope on a handshake-era request
        (MODERN_HEADERS, call({"name": "echo"})),  # 2026 without its envelope
        ([*MODERN_HEADERS[:-1], ("mcp-name", "other")], call({"name": "echo", "_meta": META})),  # mismatched name
        ([*MODERN_HEADERS, ("mcp-method", "tools/call")], call({"name": "echo", "_meta": META})),  # duplicated
    ],
)
def test_everything_else_is_left_to_the_sdk(headers: list[tuple[str, str]], body: bytes) -> None:
    assert recognise(request(headers), body) is None


def test_only_posts() -> None:
    assert recognise(request(JSON_HEADERS, method="GET"), call()) is None
