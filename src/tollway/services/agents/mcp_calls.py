"""Billed MCP calls (SPEC §16.3, §16.1): one ``tools/call`` on an app's server through THE paid-call lifecycle, and
the unbilled requests the MCP proxy relays (``tools/list`` filtered by ``allowed_tools``, resources, prompts).

An MCP call follows §8: the key (the caller's), validation (the tool must be allowed), the app's credential (409
``mcp_app_not_connected`` without a connection), rate limits counting it as one request (no tokens), then the holds
of the app's price (the budget's marked up), the call, and exactly one ending:

- a result (``isError`` results included) is **billed**: settled at the price (wallet raw, budget with markup), one
  usage row ``request_type: "mcp"`` with ``mcp_app``, ``mcp_tool``, ``mcp_free: false``;
- a result the free tier pays (or of an app priced 0) is logged at cost 0 (``mcp_free: true`` for the free tier) and
  its zero hold released: no ledger rows;
- a call that reached the app but got no usable answer (timeout, JSON-RPC error, oversized result, a broken
  connection) is not billed: a zero-cost ``error`` row, as for a failed attempt (§9.4);
- a call that never reached the app (connection, address rules, redirect, handshake, refused credential) is not
  billed and writes no row (§12).

**The free tier, exactly.** ``mcp_free_calls_per_month`` slots per platform and UTC month live in one row each; a
call takes a slot at pre-flight (a conditional UPDATE ``used < limit``, exact across instances), so that a free call
never holds money, and gives it back whenever it ends unbilled for any reason (refused by a rate limit or the money
checks, unreachable app, no usable answer). So at most N calls of a month are free, and a call is billed only when
every slot was taken at its start (a slot given back later by a failed call goes to the next call).

**401 from an OAuth app**: the token is refreshed once (``McpConnections.access_token(rejected=…)``) and the request
is sent once more; nothing was billed for the refused attempt (the app never served it).

**Header parameters (MCP 2026-07-28)**: every listing read here teaches ``ToolSchemas`` the tools' schemas, in the
listing's scope (the platform, the app, the end user for an OAuth app or an external server: ``listing_scope``); a
call hands the MCP client the tool's schema of its own scope, from which it mirrors ``x-mcp-header`` arguments into
``Mcp-Param-*`` headers for apps of that revision. An app that refuses a call's headers (``HeaderMismatch``, the call
not served) has its tools listed again (in that scope) and gets the call once more, within the same hold.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from mcp_types import HEADER_MISMATCH

from tollway.domain.clock import utcnow
from tollway.domain.keys import KeyKind
from tollway.domain.mcp import AuthType
from tollway.domain.mcp_calls import (
    CONNECT_TIMEOUT_S,
    REQUEST_TYPE,
    Failure,
    McpApp,
    McpCallFailed,
    McpServer,
    ToolResult,
    app_candidate,
    filter_tools,
    free_month,
    tool_allowed,
)
from tollway.domain.ports.mcp import McpFreeCalls, McpServers
from tollway.domain.pricing import Usage
from tollway.domain.ratelimit import TokenDemand
from tollway.domain.records import Record
from tollway.domain.tariffs import MCP_CALLS, Metered
from tollway.domain.tenancy import Principal
from tollway.domain.usage import CallStatus
from tollway.errors import InvalidRequest, TollwayError, UpstreamError, UpstreamTimeout, WrongKeyType
from tollway.services.agents.mcp_connections import McpConnections
from tollway.services.agents.mcp_schemas import Scope, ToolSchemas, listing_scope
from tollway.services.inference.breaker import DeploymentHealth
from tollway.services.inference.call import CallContext, CallLifecycle, Outcome, Plan

log = logging.getLogger("tollway.mcp")
T = TypeVar("T")

_NO_TOKENS = TokenDemand(prompt_tokens=0, n=1, output_limit=0)  # an MCP call counts one request, no tokens (§10)
_TOOL_LABEL_MAX = 128  # the usage row's ``mcp_tool`` column
_LIST_PAGES = 8  # pages of ``tools/list`` read for the Responses tool loop


class McpAppError(Exception):
    """The app answered a request with a JSON-RPC error: relayed to the caller as the app sent it (not a refusal)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class McpCalls:
    def __init__(
        self,
        lifecycle: CallLifecycle,
        connections: McpConnections,
        servers: McpServers,
        free_calls: McpFreeCalls,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._calls = lifecycle
        self._connections = connections
        self._servers = servers
        self._free = free_calls
        self._now = clock
        self._health = DeploymentHealth()  # unused by MCP calls (no fallback), required by the lifecycle
        self._schemas = ToolSchemas()

    # -- the app and its credential ---------------------------------------------------------------------------------

    async def app(self, principal: Principal, slug: str) -> McpApp:
        """The caller's platform's active app with this slug; 404 otherwise (another platform's slug included)."""
        platform_id = principal.platform_id
        assert platform_id is not None, "inference keys always belong to a platform"
        return _app(await self._connections.active_app(platform_id, slug))

    async def server(self, principal: Principal, app: McpApp) -> McpServer:
        """The app's server with this caller's credential. Platform keys may use only ``none`` and ``header`` apps
        (403 ``wrong_key_type``: an OAuth app needs an end user's own connection); an end user without a connection
        gets 409 ``mcp_app_not_connected``."""
        platform_id = principal.platform_id
        assert platform_id is not None
        if app.oauth and principal.kind is not KeyKind.END_USER:
            message = f"The MCP app '{app.slug}' uses end users' OAuth connections; call it with an end-user key."
            raise WrongKeyType(message)
        headers = await self._connections.auth_headers(platform_id, principal.end_user_id, app.slug)
        return McpServer(app.server_url, headers)

    async def _with_credential(
        self, principal: Principal, app: McpApp, server: McpServer, request: Callable[[McpServer], Awaitable[T]]
    ) -> T:
        """``request`` on the app; an OAuth app's 401 refreshes the token once and sends the request once more."""
        try:
            return await request(server)
        except McpCallFailed as exc:
            if exc.failure is not Failure.UNAUTHORIZED or not app.oauth or principal.end_user_id is None:
                raise
        rejected = server.headers.get("Authorization", "").removeprefix("Bearer ")
        platform_id = principal.platform_id
        assert platform_id is not None
        token = await self._connections.access_token(platform_id, principal.end_user_id, app.slug, rejected=rejected)
        return await request(McpServer(server.url, {**server.headers, "Authorization": f"Bearer {token}"}))

    # -- unbilled relays --------------------------------------------------------------------------------------------

    async def list_tools(self, principal: Principal, app: McpApp, cursor: str | None) -> dict[str, Any]:
        """The app's ``tools/list``, filtered by ``allowed_tools``."""
        server = await self.server(principal, app)
        try:
            listing = await self._with_credential(principal, app, server, lambda s: self._servers.list_tools(s, cursor))
        except McpCallFailed as exc:
            raise _error(app, exc) from None
        self._schemas.learn(listing_scope(principal, app), listing)
        return filter_tools(listing, app.allowed_tools)

    def tool_schema(self, principal: Principal, app: McpApp, tool: str) -> dict[str, Any] | None:
        """The ``inputSchema`` the app's server last listed for ``tool`` to this caller's scope (the platform's app,
        and for an OAuth app this end user's connection; within ``SCHEMA_TTL_S``), else None."""
        return self._schemas.get(listing_scope(principal, app), tool)

    async def relay(self, principal: Principal, app: McpApp, method: str, params: dict[str, Any] | None) -> Any:
        """Resources, prompts, completion: relayed as they are, unbilled (only tool calls are MCP calls)."""
        server = await self.server(principal, app)
        try:
            return await self._with_credential(principal, app, server, lambda s: self._servers.relay(s, method, params))
        except McpCallFailed as exc:
            raise _error(app, exc) from None

    async def app_by_url(self, principal: Principal, url: str) -> McpApp | None:
        """The caller's platform's active app that ``url`` names (its proxy URL or its server URL), else None."""
        platform_id = principal.platform_id
        assert platform_id is not None
        record = await self._connections.app_by_url(platform_id, url)
        return None if record is None else _app(record)

    async def list_server(self, principal: Principal, app: McpApp, server: McpServer) -> dict[str, Any]:
        """Every page of the server's ``tools/list`` (at most ``_LIST_PAGES``), within the 15 s of connecting and
        listing together, filtered by the app's ``allowed_tools``; unbilled. Raises ``McpCallFailed``."""
        tools: list[Any] = []
        cursor: str | None = None
        scope = listing_scope(principal, app)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                for _ in range(_LIST_PAGES):
                    page = await self._with_credential(principal, app, server, self._lister(cursor))
                    self._schemas.learn(scope, page)
                    tools += page.get("tools") or []
                    cursor = page.get("nextCursor")
                    if not isinstance(cursor, str) or not cursor:
                        break
        except TimeoutError:
            limit = f"{CONNECT_TIMEOUT_S:g} s"
            message = f"Timed out: connecting to the MCP server and listing its tools took longer than {limit}."
            raise McpCallFailed(Failure.CONNECT_TIMEOUT, message) from None
        return filter_tools({"tools": tools}, app.allowed_tools)

    def _lister(self, cursor: str | None) -> Callable[[McpServer], Awaitable[dict[str, Any]]]:
        return lambda s: self._servers.list_tools(s, cursor)

    # -- the billed call ----------------------------------------------------------------------------------------------

    async def call(
        self,
        ctx: CallContext,
        app: McpApp,
        tool: str,
        arguments: dict[str, Any] | None,
        forwarded: Mapping[str, str] | None = None,
    ) -> ToolResult:
        """One MCP call, settled exactly once (see the module docstring). Refusals raise their §3 error.
        ``forwarded``: the caller's ``Mcp-Param-*`` headers, sent on to the app beside its credential."""
        if not tool_allowed(app.allowed_tools, tool):
            raise InvalidRequest(f"The tool '{tool}' is not allowed on the MCP app '{app.slug}'.", "params.name")
        server = await self.server(ctx.principal, app)
        if forwarded:
            server = McpServer(server.url, {**forwarded, **server.headers})
        return await self.call_server(ctx, app, server, tool, arguments)

    async def call_server(
        self, ctx: CallContext, app: McpApp, server: McpServer, tool: str, arguments: dict[str, Any] | None
    ) -> ToolResult:
        """``call`` with the server and credential already chosen (the Responses tool loop's external servers give
        theirs as ``headers``); rate limits, holds, the free tier and the one ending as in ``call``."""
        result, _ = await self.call_priced(ctx, app, server, tool, arguments)
        return result

    async def call_priced(
        self, ctx: CallContext, app: McpApp, server: McpServer, tool: str, arguments: dict[str, Any] | None
    ) -> tuple[ToolResult, int]:
        """``call_server`` and what the caller was charged for it (``usage.cost``, SPEC §19): 0 when the free tier
        or a price of 0 paid."""
        catalog = await self._calls.catalog(ctx)
        limit = catalog.settings.mcp_free_calls_per_month
        month = free_month(self._now())
        free = app.price_nanos > 0 and await self._free.take(ctx.platform_id, month, limit)
        billed_ctx = dataclasses.replace(
            ctx,
            request_type=REQUEST_TYPE,
            labels=dataclasses.replace(ctx.labels, mcp_app=app.slug, mcp_tool=tool[:_TOOL_LABEL_MAX], mcp_free=free),
        )
        candidate = app_candidate(app, 0 if free else app.price_nanos)
        plan = Plan(app.slug, [candidate], {candidate.model.id: 1}, 0, catalog.settings.markup_bps)
        billed = False
        try:
            call = await self._calls.open(billed_ctx, plan, MCP_CALLS, _NO_TOKENS, self._health)
            with call:
                try:
                    result = await self._call_tool(ctx.principal, app, server, tool, arguments)
                except McpCallFailed as exc:
                    if not exc.failure.reached:
                        raise
                    call.finish_unbilled(candidate, Outcome(CallStatus.ERROR, None, _error_code(exc)))
                    raise
                await call.confirm()
            charged = 0
            if free or app.price_nanos == 0:
                call.finish_unbilled(candidate, Outcome(CallStatus.SUCCESS))
            else:
                charged = call.settle(
                    candidate, Metered(Usage(0, 0), units=1), Outcome(CallStatus.SUCCESS)
                ).caller_nanos
            billed = True
            return result, charged
        except McpCallFailed as exc:
            log.info("MCP call failed: %s", exc.failure.value, extra={"request_id": ctx.request_id})
            raise _error(app, exc) from None
        finally:
            if free and not billed:
                await self._free.give_back(ctx.platform_id, month)

    async def _call_tool(
        self, principal: Principal, app: McpApp, server: McpServer, tool: str, arguments: dict[str, Any] | None
    ) -> ToolResult:
        """The ``tools/call`` with the tool's known schema; an app that refuses its headers (HeaderMismatch: not
        served) has its tools listed again and gets the call once more (MCP 2026-07-28, client behaviour)."""
        scope = listing_scope(principal, app)
        try:
            return await self._with_credential(principal, app, server, self._caller(scope, tool, arguments))
        except McpCallFailed as exc:
            if exc.failure is not Failure.RPC_ERROR or exc.code != HEADER_MISMATCH:
                raise
            refused = exc
        self._schemas.forget(scope)
        try:
            await self.list_server(principal, app, server)
        except McpCallFailed:
            raise refused from None  # the app's refusal is the call's answer, not the listing's failure
        return await self._with_credential(principal, app, server, self._caller(scope, tool, arguments))

    def _caller(
        self, scope: Scope, tool: str, arguments: dict[str, Any] | None
    ) -> Callable[[McpServer], Awaitable[ToolResult]]:
        """The ``tools/call`` request, made with the schema read when it is sent (after a re-listing: the new one)."""
        return lambda s: self._servers.call_tool(s, tool, arguments, self._schemas.get(scope, tool))


def _app(record: Record) -> McpApp:
    tools = record["allowed_tools"]
    return McpApp(
        id=record["id"],
        slug=record["slug"],
        name=record["name"],
        server_url=record["server_url"],
        price_nanos=int(record["price_per_call_nanos"]),
        allowed_tools=None if tools is None else tuple(tools),
        oauth=record["auth_type"] == AuthType.OAUTH2.value,
    )


def _error_code(exc: McpCallFailed) -> str:
    if exc.failure in (Failure.CALL_TIMEOUT, Failure.CONNECT_TIMEOUT):
        return "upstream_timeout"
    if exc.failure is Failure.TOO_LARGE:
        return "mcp_result_too_large"
    return "upstream_error"


def _error(app: McpApp, exc: McpCallFailed) -> TollwayError | McpAppError:
    """How a failed MCP request answers: the app's own JSON-RPC error, else a §3 upstream error naming the limit."""
    if exc.failure is Failure.RPC_ERROR and exc.code is not None:
        return McpAppError(exc.code, exc.message)
    message = f"MCP app '{app.slug}': {exc.message}"
    if exc.failure in (Failure.CALL_TIMEOUT, Failure.CONNECT_TIMEOUT):
        return UpstreamTimeout(message)
    return UpstreamError(message)
