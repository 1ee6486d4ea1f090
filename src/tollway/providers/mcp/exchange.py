"""One ``tools/call`` to an app as one JSON-RPC POST over a pooled aiohttp connection (SPEC §16.3, issue 16), for
apps whose protocol is known: the proxy's hot path, without an ``mcp`` SDK client session per call.

The app speaks 2026-07-28 (its ``server/discover`` answer is remembered by ``SdkMcpClient``), so the request is
self-contained: the envelope in ``params._meta`` (protocol version, client info and capabilities) and the headers
that version requires (``MCP-Protocol-Version``, ``Mcp-Method``, ``Mcp-Name``; no ``Mcp-Session-Id``). The answer may
be JSON or an SSE stream (progress notifications skipped until the response with the request's id); a JSON-RPC
error comes with a 4xx status at this version and is still the app's answer. The result is checked with the SDK's
own per-version types (``mcp_types.methods``). Limits and failures are the SDK session's (``client.py``): the call
timeout, the result size, redirects never followed, 401 as a refused credential, and every connection dials only
public addresses unless private URLs are allowed (``PublicOnlyConnector``: checked at dial time).
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from dataclasses import dataclass
from typing import Any

import aiohttp
import mcp_types as types
import orjson
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.inbound import MCP_METHOD_HEADER, MCP_NAME_HEADER, MCP_PROTOCOL_VERSION_HEADER, encode_header_value
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY
from mcp_types import methods as wire
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from pydantic import ValidationError

from tollway.domain.mcp_calls import CONNECT_TIMEOUT_S, Failure, McpCallFailed, McpServer, ToolResult
from tollway.providers.mcp.failures import not_public, over_limit, scrubbed, too_large
from tollway.providers.public_http import NonPublicAddress, PublicOnlyConnector

METHOD = "tools/call"
CLIENT_INFO = {"name": "tollway-mcp-proxy", "version": "1"}
_ENVELOPE_SLACK = 4096  # the JSON-RPC envelope around a result at the size limit
_ACCEPT = "application/json, text/event-stream"


class SessionGone(Exception):
    """The app answered 404 to a request in a session it no longer knows (expired, or the app restarted)."""


@dataclass(frozen=True, slots=True)
class HandshakeSession:
    """A handshake-era app's session (2024-11-05 … 2025-11-25): the negotiated version, and the session id a
    stateful app assigned (None for a stateless one), sent on every later request as that version requires."""

    version: str
    session_id: str | None

    def headers(self) -> dict[str, str]:
        headers = {MCP_PROTOCOL_VERSION_HEADER: self.version}
        if self.session_id is not None:
            headers[MCP_SESSION_ID_HEADER] = self.session_id
        return headers


class DirectCalls:
    """Tool calls as single POSTs; ``aclose`` closes the pool."""

    def __init__(
        self, *, call_timeout_s: float, max_result_bytes: int, allow_private: bool, context: ssl.SSLContext
    ) -> None:
        self._call_timeout_s = call_timeout_s
        self._max_result_bytes = max_result_bytes
        self._allow_private = allow_private
        self._context = context
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:  # built on first use: aiohttp binds a session to the running loop
            connector = (
                aiohttp.TCPConnector(limit=0, ssl=self._context)
                if self._allow_private
                else PublicOnlyConnector(limit=0, ssl=self._context, use_dns_cache=False)
            )
            timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call_tool(
        self,
        server: McpServer,
        version: str,
        name: str,
        arguments: dict[str, Any] | None,
        session: HandshakeSession | None = None,
    ) -> ToolResult:
        """The call at ``version``: a 2026-07-28 envelope, or within ``session`` (a handshake-era app's: its
        negotiated version and ``Mcp-Session-Id``). Raises ``SessionGone`` when the app no longer knows the session
        (HTTP 404 to a request carrying its id: the call was not served)."""
        if not self._allow_private and not server.url.startswith("https://"):
            raise not_public()
        request_id = next(self._ids)
        params: dict[str, Any] = {"name": name}
        if arguments is not None:
            params["arguments"] = arguments
        headers = {**server.headers, "Content-Type": "application/json", "Accept": _ACCEPT}
        if session is None:
            params["_meta"] = {
                PROTOCOL_VERSION_META_KEY: version,
                CLIENT_INFO_META_KEY: CLIENT_INFO,
                CLIENT_CAPABILITIES_META_KEY: {},
            }
            headers |= {
                MCP_PROTOCOL_VERSION_HEADER: version,
                MCP_METHOD_HEADER: METHOD,
                MCP_NAME_HEADER: encode_header_value(name),
            }
        else:
            headers |= session.headers()
        body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": METHOD, "params": params})
        try:
            async with asyncio.timeout(self._call_timeout_s):
                message, _ = await self._exchange(server, body, headers, request_id, session)
        except TimeoutError:
            raise McpCallFailed(Failure.CALL_TIMEOUT, over_limit("the MCP tool call", self._call_timeout_s)) from None
        return self._result(server, version, message)

    async def open_session(self, server: McpServer) -> HandshakeSession:
        """The ``initialize`` handshake with a handshake-era app (its newest version both sides speak, and the
        session id it assigns, if any) and ``notifications/initialized``, within the 15 s of connecting."""
        if not self._allow_private and not server.url.startswith("https://"):
            raise not_public()
        request_id = next(self._ids)
        params = {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
        body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params})
        headers = {**server.headers, "Content-Type": "application/json", "Accept": _ACCEPT}
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                message, session_id = await self._exchange(server, body, headers, request_id, None)
                result = message.get("result")
                version = result.get("protocolVersion") if isinstance(result, dict) else None
                if version not in HANDSHAKE_PROTOCOL_VERSIONS:
                    raise McpCallFailed(Failure.UNREACHABLE, "The MCP app could not be reached (no MCP handshake).")
                session = HandshakeSession(str(version), session_id)
                note = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
                async with self._http().post(
                    server.url, data=note, headers={**headers, **session.headers()}, allow_redirects=False
                ) as response:
                    if response.status >= 300:
                        raise McpCallFailed(
                            Failure.UNREACHABLE, f"The MCP app could not be reached (HTTP {response.status})."
                        )
        except TimeoutError:
            message_text = over_limit("connecting to the MCP app", CONNECT_TIMEOUT_S)
            raise McpCallFailed(Failure.CONNECT_TIMEOUT, message_text) from None
        except aiohttp.ClientError:
            raise McpCallFailed(Failure.UNREACHABLE, "The MCP app could not be reached.") from None
        except McpCallFailed as exc:
            if exc.failure.reached:  # an answer to the handshake that is not one: the app was never served a call
                raise McpCallFailed(
                    Failure.UNREACHABLE, "The MCP app could not be reached (no MCP handshake)."
                ) from None
            raise
        return session

    async def _exchange(
        self,
        server: McpServer,
        body: bytes,
        headers: dict[str, str],
        request_id: int,
        session: HandshakeSession | None,
    ) -> tuple[dict[str, Any], str | None]:
        """The JSON-RPC answer with ``request_id`` (JSON or SSE) and the ``Mcp-Session-Id`` the app sent, if any."""
        cap = self._max_result_bytes + _ENVELOPE_SLACK
        try:
            async with self._http().post(server.url, data=body, headers=headers, allow_redirects=False) as response:
                status = response.status
                if 300 <= status < 400:
                    raise McpCallFailed(Failure.UNREACHABLE, f"The MCP app answered a redirect (HTTP {status}).")
                if status == 401:
                    raise McpCallFailed(Failure.UNAUTHORIZED, "The MCP app refused the credential (HTTP 401).")
                if status == 404 and session is not None and session.session_id is not None:
                    raise SessionGone
                length = response.content_length
                if length is not None and length > cap:
                    raise too_large(self._max_result_bytes)
                kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                if kind == "text/event-stream":
                    found = await _from_events(response, request_id, cap, self._max_result_bytes)
                elif kind == "application/json":
                    found = _decoded(await _read(response, cap, self._max_result_bytes))
                else:
                    found = None
                if found is None or found.get("id") != request_id:
                    raise McpCallFailed(Failure.NO_ANSWER, f"The MCP app gave no answer (HTTP {status}).")
                return found, response.headers.get(MCP_SESSION_ID_HEADER)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, NonPublicAddress):
                raise not_public() from None
            raise McpCallFailed(Failure.UNREACHABLE, "The MCP app could not be reached.") from None
        except aiohttp.ConnectionTimeoutError:
            message = over_limit("connecting to the MCP app", CONNECT_TIMEOUT_S)
            raise McpCallFailed(Failure.CONNECT_TIMEOUT, message) from None
        except (aiohttp.ClientError, ValueError):
            raise McpCallFailed(Failure.NO_ANSWER, "The MCP app gave no answer (the connection ended).") from None

    def _result(self, server: McpServer, version: str, message: dict[str, Any]) -> ToolResult:
        error = message.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            text = error.get("message")
            if isinstance(code, int) and not isinstance(code, bool):
                raw = text if isinstance(text, str) else "error"
                raise McpCallFailed(Failure.RPC_ERROR, scrubbed(raw, server), code)
        raw_result = message.get("result")
        if not isinstance(raw_result, dict):
            raise McpCallFailed(Failure.NO_ANSWER, "The MCP app answered the tool call with no result.")
        try:
            parsed = wire.parse_server_result(METHOD, version, raw_result)
        except (ValidationError, KeyError, ValueError):
            raise McpCallFailed(Failure.NO_ANSWER, "The MCP app's answer is not an MCP tool result.") from None
        if not isinstance(parsed, types.CallToolResult):
            raise McpCallFailed(Failure.NO_ANSWER, "The MCP app answered the tool call with no result.")
        result: dict[str, Any] = parsed.model_dump(by_alias=True, mode="json", exclude_none=True)
        if len(orjson.dumps(result)) > self._max_result_bytes:
            raise too_large(self._max_result_bytes)
        return ToolResult(result, bool(parsed.is_error))


def _decoded(data: bytes) -> dict[str, Any] | None:
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None


async def _read(response: aiohttp.ClientResponse, cap: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > cap:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _from_events(
    response: aiohttp.ClientResponse, request_id: int, cap: int, limit: int
) -> dict[str, Any] | None:
    """The JSON-RPC response with ``request_id`` from an SSE stream (``event: message`` or none; notifications and
    pings before it skipped), reading at most ``cap`` bytes."""
    buffer = b""
    data: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > cap:
            raise too_large(limit)
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            line = line.removesuffix(b"\r")
            if line:
                if line.startswith(b"data:"):
                    data.append(line[5:].removeprefix(b" "))
                continue
            if data:  # a blank line ends an event
                message = _decoded(b"\n".join(data))
                data = []
                if message is not None and message.get("id") == request_id and "method" not in message:
                    return message
    return None
