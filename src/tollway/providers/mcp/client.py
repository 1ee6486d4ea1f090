"""Tollway's MCP client (SPEC §16.3): one session per request to an app's server with the official ``mcp`` SDK over
Streamable HTTP (the SDK negotiates the protocol version: ``server/discover``, else the ``initialize`` handshake).

Cheap per request (the proxy's added latency, docs/performance.md): every session's HTTP client shares one
connection pool and one TLS context (building a context reads the CA bundle, ~40 ms), and a server that answered
``server/discover`` (2026-07-28) has its result remembered for ``DISCOVERY_TTL_S``, so the next sessions adopt it
and send only their request; any failure forgets it (the next session probes again).

``tools/call``, the hot method, needs no SDK session once the app is known (``exchange.py``): to a 2026-07-28 app it
is one POST with the per-request envelope; an app that speaks only the ``initialize`` handshake gets one session per
credential, opened once and kept (its ``Mcp-Session-Id`` and negotiated version on every later call; reopened when
the app answers 404 to it). Listings, resources and prompts always take an SDK session. A call to a 2026-07-28 app
carries the ``Mcp-Param-*`` headers its tool's schema asks for (``params.py``), on both paths; once the SDK session
has negotiated that revision, they are set on its HTTP client before the request.

Limits: connecting (and listing) 15 s, one tool call ``TOLLWAY_MCP_CALL_TIMEOUT_S``, a result at most
``TOLLWAY_MCP_MAX_RESULT_BYTES``. Redirects are never followed (a 3xx fails the request as unreachable); the app's
address follows §11.5 unless private URLs are allowed, checked up front and again at each dial (``public_http.py``:
the SDK's ``httpx2`` pool dials only addresses it checked, so a name rebound to a private address is refused).
Every failure becomes ``McpCallFailed`` naming whether the app answered, which decides billing in
``services/agents/mcp_calls.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx2
import mcp_types as types
import orjson
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from tollway.domain.addresses import is_public, parse_address
from tollway.domain.mcp_calls import CONNECT_TIMEOUT_S, Failure, McpCallFailed, McpServer, ToolResult
from tollway.providers.mcp.exchange import DirectCalls, HandshakeSession, SessionGone
from tollway.providers.mcp.failures import not_public, over_limit, scrubbed, too_large
from tollway.providers.mcp.params import PREFIX, mirrored, with_mirrored
from tollway.providers.public_http import NonPublicAddress, NonPublicConnect, public_only_transport

T = TypeVar("T")
DISCOVERY_TTL_S = 60.0  # how long a server's ``server/discover`` result is reused before probing again
# The app refused the envelope itself (it no longer speaks the version, or disagrees with its headers): what it speaks
# is asked again on the next call.
_ENVELOPE_REFUSALS = frozenset({types.UNSUPPORTED_PROTOCOL_VERSION, types.HEADER_MISMATCH})
_MAX_SESSIONS = 10_000  # handshake-era sessions kept per process; forgotten all at once past this
_POOL = httpx2.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=5.0)

_RELAYED: dict[str, type[types.Result]] = {
    "prompts/list": types.ListPromptsResult,
    "prompts/get": types.GetPromptResult,
    "resources/list": types.ListResourcesResult,
    "resources/templates/list": types.ListResourceTemplatesResult,
    "resources/read": types.ReadResourceResult,
    "completion/complete": types.CompleteResult,
}


@dataclass
class _Watch:
    """What the HTTP layer saw of one session, read after the SDK reports a failure in its own terms."""

    status: int | None = None
    oversized: bool = False
    refused_address: bool = False  # the dial-time address check refused a connection (§11.5)


class _Watched(httpx2.AsyncBaseTransport):
    """One session's view of the shared pool: notes a connection the dial-time address check refused (the SDK
    reports it only as a failed handshake)."""

    def __init__(self, pool: httpx2.AsyncBaseTransport, watch: _Watch) -> None:
        self._pool = pool
        self._watch = watch

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self._pool.handle_async_request(request)
        except httpx2.ConnectError as exc:
            self._watch.refused_address = self._watch.refused_address or _refused_address(exc)
            raise


class _Refused(Exception):
    pass


class SdkMcpClient:
    """Implements ``McpServers`` (domain/ports/mcp.py)."""

    def __init__(self, *, call_timeout_s: float, max_result_bytes: int, allow_private: bool) -> None:
        self._call_timeout_s = call_timeout_s
        self._max_result_bytes = max_result_bytes
        self._allow_private = allow_private
        # One pool for every app (requests carry their own credential headers); closed by ``aclose``. Unless private
        # URLs are allowed, every connection it opens dials only a checked public address (§11.5, DNS rebinding).
        context = ssl.create_default_context()
        self._transport = (
            httpx2.AsyncHTTPTransport(verify=context, limits=_POOL, trust_env=False)
            if allow_private
            else public_only_transport(context, _POOL)
        )
        self._direct = DirectCalls(
            call_timeout_s=call_timeout_s,
            max_result_bytes=max_result_bytes,
            allow_private=allow_private,
            context=context,
        )
        self._discovered: dict[str, tuple[float, types.DiscoverResult]] = {}  # server URL -> (expiry, result)
        self._handshake_only: dict[str, float] = {}  # server URL -> expiry: it speaks only the initialize handshake
        self._sessions: dict[tuple[str, str], HandshakeSession] = {}  # (URL, credential digest) -> its session

    async def aclose(self) -> None:
        await self._transport.aclose()
        await self._direct.aclose()

    def _known_version(self, url: str) -> str | None:
        """The 2026-07-28-era version a server's remembered ``server/discover`` answer lets a call use directly."""
        known = self._discovered.get(url)
        if known is None or known[0] <= time.monotonic():
            return None
        return _newest(known[1])

    async def list_tools(self, server: McpServer, cursor: str | None) -> dict[str, Any]:
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None

        async def step(client: Client, _http: httpx2.AsyncClient) -> dict[str, Any]:
            return _json(await client.session.list_tools(params=params))

        return await self._run(server, step, None)

    async def call_tool(
        self,
        server: McpServer,
        name: str,
        arguments: dict[str, Any] | None,
        input_schema: Mapping[str, Any] | None = None,
    ) -> ToolResult:
        params = mirrored(input_schema, arguments)
        version = self._known_version(server.url)
        if version is not None:  # one POST, no SDK session (exchange.py); any failure forgets the discovery
            direct = McpServer(server.url, with_mirrored(server.headers, params))
            try:
                return await self._direct.call_tool(direct, version, name, arguments)
            except McpCallFailed as exc:
                if exc.failure is not Failure.RPC_ERROR or exc.code in _ENVELOPE_REFUSALS:
                    self._discovered.pop(server.url, None)
                raise
        handshake_until = self._handshake_only.get(server.url)
        if handshake_until is not None and handshake_until > time.monotonic():
            return await self._call_in_session(server, name, arguments)
        request = types.CallToolRequest(params=types.CallToolRequestParams(name=name, arguments=arguments))

        async def step(client: Client, http: httpx2.AsyncClient) -> ToolResult:
            if params is not None and client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                for header in [h for h in http.headers if h.lower() in params.declared]:
                    del http.headers[header]
                http.headers.update(params.headers)
            # The request itself, not ``session.call_tool``: that one lists the tools after every call to check the
            # result against an output schema, a second round trip; the caller (who listed them) checks it.
            result = await client.session.send_request(request, types.CallToolResult)
            if not isinstance(result, types.CallToolResult):
                raise McpCallFailed(Failure.NO_ANSWER, "The MCP app answered the tool call with no result.")
            body = _json(result)
            if len(_encoded(body)) > self._max_result_bytes:
                raise too_large(self._max_result_bytes)
            return ToolResult(body, bool(result.is_error))

        return await self._run(server, step, self._call_timeout_s)

    async def _call_in_session(self, server: McpServer, name: str, arguments: dict[str, Any] | None) -> ToolResult:
        """A handshake-era app's call in the session kept for this app and credential: one POST once the session is
        open; a session the app has forgotten (404) is opened again and the call sent once more (it was not
        served). Any other failure forgets the session and what the app speaks (the next call asks the SDK)."""
        key = (server.url, _credential_digest(server))
        for attempt in range(2):
            session = self._sessions.get(key)
            try:
                if session is None:
                    session = await self._direct.open_session(server)
                    if len(self._sessions) >= _MAX_SESSIONS:
                        self._sessions.clear()
                    self._sessions[key] = session
                return await self._direct.call_tool(server, session.version, name, arguments, session)
            except SessionGone:
                self._sessions.pop(key, None)
                if attempt:
                    break
            except McpCallFailed as exc:
                if exc.failure is not Failure.RPC_ERROR:
                    self._sessions.pop(key, None)
                    self._handshake_only.pop(server.url, None)
                raise
        raise McpCallFailed(Failure.UNREACHABLE, "The MCP app could not be reached (its session ended twice).")

    async def relay(self, server: McpServer, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        """Any other request the proxy relays unbilled (resources, prompts, completion): the app's result as sent."""
        result_type = _RELAYED.get(method)
        if result_type is None:
            raise McpCallFailed(Failure.RPC_ERROR, f"Method not found: {method}", types.METHOD_NOT_FOUND)
        message: dict[str, Any] = {"method": method} if params is None else {"method": method, "params": params}
        request = types.client_request_adapter.validate_python(message)

        async def step(client: Client, _http: httpx2.AsyncClient) -> dict[str, Any]:
            return _json(await client.session.send_request(request, result_type))

        return await self._run(server, step, self._call_timeout_s, f"the MCP request {method}")

    # -- one session --------------------------------------------------------------------------------------------

    async def _run(
        self,
        server: McpServer,
        step: Callable[[Client, httpx2.AsyncClient], Awaitable[T]],
        step_timeout_s: float | None,
        what: str = "the MCP tool call",
    ) -> T:
        """One session: ``step`` once connected. ``step_timeout_s`` None: the step shares the 15 s of connecting
        (listing tools); else it gets its own limit from the moment the session is up."""
        await self._check_address(server.url)
        watch = _Watch()
        connected = False
        outcome: list[T] = []
        try:
            # One cancel scope for the whole session (the SDK's task groups must nest inside it): 15 s to connect,
            # then the step's own limit from the moment the session is up.
            with anyio.CancelScope(deadline=anyio.current_time() + CONNECT_TIMEOUT_S) as scope:
                async with self._client(server, watch) as (client, http):
                    connected = True
                    if step_timeout_s is not None:
                        scope.deadline = anyio.current_time() + step_timeout_s
                    outcome.append(await step(client, http))
        except McpCallFailed:
            self._discovered.pop(server.url, None)
            raise
        except MCPError as exc:
            self._discovered.pop(server.url, None)
            raise self._mapped(watch, connected, exc.code, scrubbed(exc.message, server)) from None
        except (Exception, BaseExceptionGroup) as exc:
            self._discovered.pop(server.url, None)
            if (failed := _inner(exc, McpCallFailed)) is not None:
                raise failed from None
            rpc = _inner(exc, MCPError)
            code, message = (rpc.code, scrubbed(rpc.message, server)) if rpc is not None else (None, None)
            raise self._mapped(watch, connected, code, message) from None
        if outcome:
            return outcome[0]
        self._discovered.pop(server.url, None)
        if not connected:
            raise McpCallFailed(Failure.CONNECT_TIMEOUT, over_limit("connecting to the MCP app", CONNECT_TIMEOUT_S))
        if step_timeout_s is None:
            listing = "connecting to the MCP app and listing its tools"
            raise McpCallFailed(Failure.CONNECT_TIMEOUT, over_limit(listing, CONNECT_TIMEOUT_S))
        raise McpCallFailed(Failure.CALL_TIMEOUT, over_limit(what, step_timeout_s))

    def _mapped(self, watch: _Watch, connected: bool, code: int | None, message: str | None) -> McpCallFailed:
        if watch.oversized:
            return too_large(self._max_result_bytes)
        if watch.refused_address:
            return not_public()
        if watch.status == 401:
            return McpCallFailed(Failure.UNAUTHORIZED, "The MCP app refused the credential (HTTP 401).")
        if watch.status is not None and 300 <= watch.status < 400:
            return McpCallFailed(Failure.UNREACHABLE, f"The MCP app answered a redirect (HTTP {watch.status}).")
        if not connected:
            reason = f"HTTP {watch.status}" if watch.status is not None else "no MCP handshake"
            return McpCallFailed(Failure.UNREACHABLE, f"The MCP app could not be reached ({reason}).")
        if code is not None:  # the app answered with a JSON-RPC error (on 2026-07-28 with an HTTP 4xx status)
            return McpCallFailed(Failure.RPC_ERROR, (message or "error")[:512], code)
        reason = f"HTTP {watch.status}" if watch.status is not None else "the connection ended"
        return McpCallFailed(Failure.NO_ANSWER, f"The MCP app gave no answer ({reason}).")

    @contextlib.asynccontextmanager
    async def _client(self, server: McpServer, watch: _Watch) -> AsyncIterator[tuple[Client, httpx2.AsyncClient]]:
        limit = self._max_result_bytes

        async def on_response(response: httpx2.Response) -> None:
            status = response.status_code
            if status >= 300 and watch.status is None:
                watch.status = status
            if 300 <= status < 400:
                await response.aclose()
                raise _Refused("redirects are never followed")
            length = response.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                watch.oversized = True
                await response.aclose()
                raise _Refused("result too large")

        timeout = httpx2.Timeout(CONNECT_TIMEOUT_S, read=max(self._call_timeout_s, CONNECT_TIMEOUT_S))
        # Not closed here: closing a client closes its transport, the shared pool (``aclose`` closes it).
        http = httpx2.AsyncClient(
            headers=server.headers,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            event_hooks={"response": [on_response]},
            transport=_Watched(self._transport, watch),
        )
        transport = streamable_http_client(server.url, http_client=http, max_sse_event_size=limit)
        known = self._discovered.get(server.url)
        if known is not None and known[0] > time.monotonic():
            mode = _newest(known[1])
            assert mode is not None, "only results with a mutual modern version are remembered"
            async with Client(transport, cache=None, mode=mode, prior_discover=known[1]) as client:
                yield client, http
            return
        async with Client(transport, cache=None) as client:
            found = client.session.discover_result
            if found is not None and _newest(found) is not None:
                self._discovered[server.url] = (time.monotonic() + DISCOVERY_TTL_S, found)
            elif client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
                self._handshake_only[server.url] = time.monotonic() + DISCOVERY_TTL_S
            yield client, http

    async def _check_address(self, url: str) -> None:
        """§11.5 at connection time: every address the app's host resolves to must be public."""
        if self._allow_private:
            return
        parts = urlsplit(url)
        host = parts.hostname or ""
        literal = parse_address(host)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
            except OSError:
                raise McpCallFailed(Failure.UNREACHABLE, "The MCP app's host name does not resolve.") from None
            addresses = [a for a in (parse_address(str(info[4][0])) for info in infos) if a is not None]
        if parts.scheme != "https" or not addresses or not all(is_public(a) for a in addresses):
            raise not_public()


def _newest(found: types.DiscoverResult) -> str | None:
    """The newest modern protocol version both sides speak, as the SDK adopts it."""
    mutual = [v for v in MODERN_PROTOCOL_VERSIONS if v in found.supported_versions]
    return mutual[-1] if mutual else None


def _json(model: Any) -> dict[str, Any]:
    body: dict[str, Any] = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return body


def _encoded(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


def _credential_digest(server: McpServer) -> str:
    """Sessions are per credential (an app may bind them to the caller): a digest, so no token is kept as a key."""
    pairs = sorted((k.lower(), v) for k, v in server.headers.items() if not k.lower().startswith(PREFIX))
    return hashlib.sha256(orjson.dumps(pairs)).hexdigest()


def _refused_address(exc: BaseException) -> bool:
    """Whether the dial-time address check (``PublicOnlyBackend``) refused a connection somewhere inside ``exc``."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (NonPublicAddress, NonPublicConnect)):
            return True
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


E = TypeVar("E", bound=BaseException)


def _inner(exc: BaseException, kind: type[E]) -> E | None:
    """The first exception of ``kind`` inside the SDK's exception groups (its task groups wrap what ended them)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _inner(inner, kind)
            if found is not None:
                return found
    return None
