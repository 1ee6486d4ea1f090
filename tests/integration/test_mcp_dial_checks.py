"""Every connection to an MCP app re-checks the address it dials (SPEC §11.5, DNS rebinding): the SDK's session over
``httpx2`` (``PublicOnlyBackend``) and the proxy's direct calls over aiohttp (``PublicOnlyConnector``), against a
name a test resolver maps to a loopback address (after a first, public answer for the up-front check) and against
``localhost``, with a real listener on 127.0.0.1 that counts the connections it accepts: refused ones never arrive.
With private URLs allowed the same calls do reach it, so the listener is seen to count."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from tollway.domain.mcp_calls import Failure, McpCallFailed, McpServer
from tollway.providers.mcp.client import SdkMcpClient
from tollway.providers.mcp.exchange import DirectCalls
from tollway.providers.public_http import public_only_transport

PUBLIC = "93.184.216.34"
NOT_PUBLIC = "The MCP app's URL must be https on a public address."


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts and closes them."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.accepted += 1
            writer.close()

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    server = Listener()
    await server.start()
    yield server
    await server.stop()


def rebinding(answers: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Maps ``rebind.test`` on the running loop's resolver: each lookup takes the next answer (the last repeats).
    Returns the hosts looked up."""
    loop = asyncio.get_running_loop()
    original: Callable[..., Any] = loop.getaddrinfo
    asked: list[str] = []

    async def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return await original(host, port, *args, **kwargs)
        asked.append(host)
        address = answers[min(len(asked), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port or 443)))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return asked


def sdk_client(*, allow_private: bool) -> SdkMcpClient:
    return SdkMcpClient(call_timeout_s=5, max_result_bytes=65_536, allow_private=allow_private)


def direct_calls(*, allow_private: bool) -> DirectCalls:
    return DirectCalls(
        call_timeout_s=5, max_result_bytes=65_536, allow_private=allow_private, context=ssl.create_default_context()
    )


async def test_the_sdk_session_refuses_a_name_that_rebinds_to_loopback(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = rebinding([PUBLIC, "127.0.0.1"], monkeypatch)  # public when checked up front, loopback when dialled
    client = sdk_client(allow_private=False)
    try:
        with pytest.raises(McpCallFailed) as caught:
            await client.list_tools(McpServer(f"https://rebind.test:{listener.port}/mcp"), None)
    finally:
        await client.aclose()
    assert (caught.value.failure, caught.value.message) == (Failure.UNREACHABLE, NOT_PUBLIC)
    assert len(asked) >= 2 and listener.accepted == 0


async def test_a_direct_tool_call_refuses_a_name_that_resolves_to_loopback(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = rebinding(["127.0.0.1"], monkeypatch)
    calls = direct_calls(allow_private=False)
    try:
        with pytest.raises(McpCallFailed) as caught:
            await calls.call_tool(McpServer(f"https://rebind.test:{listener.port}/mcp"), "2026-07-28", "echo", {})
    finally:
        await calls.aclose()
    assert (caught.value.failure, caught.value.message) == (Failure.UNREACHABLE, NOT_PUBLIC)
    assert not caught.value.failure.reached  # never reached: not billed, no usage row (SPEC §12)
    assert asked and listener.accepted == 0


async def test_the_sdk_transport_refuses_localhost(listener: Listener) -> None:
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=4)
    transport = public_only_transport(ssl.create_default_context(), limits)
    async with httpx2.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx2.ConnectError):
            await http.get(f"https://localhost:{listener.port}/mcp")
    assert listener.accepted == 0


async def test_with_private_urls_allowed_the_same_calls_connect(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebinding(["127.0.0.1"], monkeypatch)
    calls = direct_calls(allow_private=True)
    client = sdk_client(allow_private=True)
    try:
        with pytest.raises(McpCallFailed) as direct:
            await calls.call_tool(McpServer(f"http://rebind.test:{listener.port}/mcp"), "2026-07-28", "echo", {})
        assert direct.value.failure is Failure.NO_ANSWER  # it connected; the listener hung up
        accepted = listener.accepted
        with pytest.raises(McpCallFailed):
            await client.list_tools(McpServer(f"http://localhost:{listener.port}/mcp"), None)
    finally:
        await calls.aclose()
        await client.aclose()
    assert accepted >= 1 and listener.accepted > accepted
