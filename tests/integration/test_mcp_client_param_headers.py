"""The MCP client's ``Mcp-Param-*`` headers (``providers/mcp``, MCP 2026-07-28) against real apps built with the
``mcp`` SDK (tests/support/mcp_app.py): a call to a 2026-07-28 app carries the header its tool's schema asks for on
the SDK-session path (the first call, which discovers the app) and on the direct path (every later call), encoded
as the specification says; it replaces a header of the same name the server's headers carried; a tool whose
schema is unknown sends none (the app refuses: -32020); an app of the handshake era gets none."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.support.mcp_app import LOCATE, McpApp
from tollway.domain.mcp_calls import Failure, McpCallFailed, McpServer
from tollway.providers.mcp.client import SdkMcpClient

SCHEMA: dict[str, Any] = LOCATE.input_schema


def b64(value: str) -> str:
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


@pytest.fixture(scope="module")
def modern_app() -> Iterator[McpApp]:
    server = McpApp(param_headers=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def legacy_app() -> Iterator[McpApp]:
    server = McpApp(param_headers=True, legacy=True).start()
    yield server
    server.stop()


@pytest.fixture
async def client() -> AsyncIterator[SdkMcpClient]:
    made = SdkMcpClient(call_timeout_s=5, max_result_bytes=65_536, allow_private=True)
    yield made
    await made.aclose()


def text(result: Any) -> str:
    return str(result.body["content"][0]["text"])


@pytest.mark.parametrize(
    ("region", "header"),
    [("us-west1", "us-west1"), ("Zürich", b64("Zürich")), (" padded ", b64(" padded ")), ("a\nb", b64("a\nb"))],
)
async def test_both_paths_send_the_header_encoded(
    client: SdkMcpClient, modern_app: McpApp, region: str, header: str
) -> None:
    server = McpServer(modern_app.url, {"Mcp-Param-Region": "stale"})  # a caller's header is replaced, not doubled
    before = len(modern_app.agents)
    first = await client.call_tool(server, "locate", {"region": region, "query": "q"}, SCHEMA)
    assert not any("aiohttp" in (a or "") for a in modern_app.agents[before:])  # the SDK session discovered it
    before = len(modern_app.agents)
    second = await client.call_tool(server, "locate", {"region": region, "query": "q"}, SCHEMA)
    assert [a for a in modern_app.agents[before:] if "aiohttp" in (a or "")]  # one direct POST
    assert (text(first), text(second)) == (f"q in {region}", f"q in {region}")
    assert modern_app.regions[-2:] == [header, header]


async def test_an_absent_argument_sends_no_header(client: SdkMcpClient, modern_app: McpApp) -> None:
    server = McpServer(modern_app.url)
    with pytest.raises(McpCallFailed) as failed:  # the tool needs a region; the SDK server refuses the params
        await client.call_tool(server, "locate", {"query": "q"}, SCHEMA)
    assert failed.value.failure is Failure.RPC_ERROR and failed.value.code != -32020


async def test_an_unknown_schema_sends_no_header_and_the_app_refuses(client: SdkMcpClient, modern_app: McpApp) -> None:
    for _ in range(2):  # the SDK-session path, then (the discovery kept by the first listing) the direct path
        with pytest.raises(McpCallFailed) as failed:
            await client.call_tool(McpServer(modern_app.url), "locate", {"region": "x", "query": "q"})
        assert failed.value.failure is Failure.RPC_ERROR and failed.value.code == -32020
        await client.list_tools(McpServer(modern_app.url), None)


async def test_a_handshake_era_app_gets_no_header(client: SdkMcpClient, legacy_app: McpApp) -> None:
    for _ in range(2):
        result = await client.call_tool(McpServer(legacy_app.url), "locate", {"region": "us", "query": "q"}, SCHEMA)
        assert text(result) == "q in us"
    assert legacy_app.regions[-2:] == [None, None]
