"""``/v1/mcp/{slug}`` (SPEC §16.3): an MCP server over Streamable HTTP, built with the official ``mcp`` SDK's
low-level ``Server`` (the tools are the app's, known only per request), relaying to the platform's app with the
caller's credential.

- **Stateless**: every POST stands alone (no ``Mcp-Session-Id``), so any instance behind a load balancer serves any
  request and nothing is lost on a restart; answers are JSON. The SDK negotiates every protocol version it knows:
  the ``initialize`` handshake (2024-11-05 … 2025-11-25) and the per-request envelope of 2026-07-28.
- **The fast path**: a POST with a single ``tools/call`` at a version the SDK serves is answered by ``fast_call.py``
  without the SDK's per-request session (the same handler, ``McpProxy.call_tool``, and the SDK's per-version types);
  everything else goes to the SDK's session manager, the body replayed.
- **Access**: the key is checked per request before the SDK sees it (401 and an unknown or foreign slug's 404 are
  HTTP answers with the §3 body). Everything refused later is a JSON-RPC error whose ``data`` is the §3 body
  ``{"error": {message, type, code, param}}`` (plus ``retry_after`` seconds for 429 and 503): code -32602 for a
  400, -32000 for other refusals (403 ``wrong_key_type``, 409 ``mcp_app_not_connected``, 402, 429, 502, 504 …).
- **Methods**: ``tools/list`` (filtered by ``allowed_tools``) and ``tools/call`` (an MCP call, billed:
  ``services/agents/mcp_calls.py``); resources, resource templates, prompts and completion are relayed unbilled;
  the app's own JSON-RPC errors are relayed as it sent them.
- **Header parameters (2026-07-28)**: a ``tools/call`` at that revision whose tool's schema the gateway knows (from a
  listing of the same scope within ``SCHEMA_TTL_S``: this platform's app, and for an OAuth app this end user's
  connection; never another tenant's listing of the same server) must carry the ``Mcp-Param-*`` headers its
  ``x-mcp-header`` arguments ask for, equal to the body's values once decoded; otherwise -32020 ``HeaderMismatch``
  with HTTP 400, before anything is billed or sent to the app. Headers of a tool whose schema is unknown travel on
  to the app, which checks them. The SDK's own pre-dispatch check is switched off (``get_tool_input_schema``): it
  would list the app's tools on every call; the handler's check below covers both paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PARAM_HEADER_PREFIX, MCP_PROTOCOL_VERSION_HEADER, validate_mcp_param_headers
from mcp_types import HEADER_MISMATCH
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel
from starlette.requests import Request
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from tollway.domain.mcp_calls import McpApp
from tollway.domain.tenancy import Principal
from tollway.errors import InternalError, RequestTooLarge, TollwayError
from tollway.http.body import read_limited
from tollway.http.guards import require_inference
from tollway.http.inference.chat import session_id_header
from tollway.http.mcp import fast_call
from tollway.http.responses import error_response
from tollway.http.state import services
from tollway.services.agents.mcp_calls import McpAppError, McpCalls
from tollway.services.inference.call import CallContext

log = logging.getLogger("tollway.mcp")
R = TypeVar("R", bound=BaseModel)
T = TypeVar("T")
_SCOPE_KEY = "tollway.mcp_caller"
_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
_PARAM_PREFIX = MCP_PARAM_HEADER_PREFIX.lower()
REFUSED = -32000  # JSON-RPC server-defined error: Tollway refused the request (data: the §3 body)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls which app, set by the endpoint before the SDK handles the request."""

    principal: Principal
    app: McpApp
    request_id: str
    session_id: str | None
    received_at: float


def _caller(ctx: ServerRequestContext[Any]) -> Caller:
    request = ctx.request
    assert isinstance(request, Request), "the proxy is served over Streamable HTTP only"
    return cast(Caller, request.scope[_SCOPE_KEY])


def _refusal(error: TollwayError) -> MCPError:
    data: dict[str, Any] = error.body()
    retry_after = error.headers.get("retry-after")
    if retry_after is not None:
        data["retry_after"] = int(retry_after)
    code = types.INVALID_PARAMS if error.status == 400 else REFUSED
    return MCPError(code, error.message, data)


async def _answering(work: Awaitable[T]) -> T:
    """A handler's work, its errors as JSON-RPC errors: refusals carry the §3 body, the app's own are relayed, and
    anything else is an internal error that says nothing of its cause (logged with the request id)."""
    try:
        return await work
    except TollwayError as error:
        raise _refusal(error) from None
    except McpAppError as error:
        raise MCPError(error.code, error.message) from None
    except MCPError:
        raise
    except Exception:
        log.exception("MCP proxy request failed")
        raise _refusal(InternalError()) from None


def _without_identity(body: dict[str, Any]) -> dict[str, Any]:
    """The app's result without its ``serverInfo`` stamp: the app's own identity stays behind the proxy."""
    meta = body.get("_meta")
    if isinstance(meta, dict) and _SERVER_INFO in meta:
        rest = {k: v for k, v in meta.items() if k != _SERVER_INFO}
        return {**body, "_meta": rest} if rest else {k: v for k, v in body.items() if k != "_meta"}
    return body


async def _result(model: type[R], body: dict[str, Any]) -> R:
    return model.model_validate(_without_identity(body))


def _params(params: BaseModel | None) -> dict[str, Any] | None:
    if params is None:
        return None
    dumped: dict[str, Any] = params.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped


class McpProxy:
    """The SDK server and its stateless session manager, built once per process (``app.py`` runs it)."""

    def __init__(self, calls: McpCalls, max_body_bytes: int) -> None:
        self._calls = calls
        self.server: Server[Any] = Server(
            "tollway-mcp-proxy",
            version="1",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_list_resources=self._relay(types.ListResourcesResult, "resources/list"),
            on_list_resource_templates=self._relay(types.ListResourceTemplatesResult, "resources/templates/list"),
            on_read_resource=self._relay(types.ReadResourceResult, "resources/read"),
            on_list_prompts=self._relay(types.ListPromptsResult, "prompts/list"),
            on_get_prompt=self._relay(types.GetPromptResult, "prompts/get"),
            on_completion=self._relay(types.CompleteResult, "completion/complete"),
            get_tool_input_schema=_unchecked,
        )
        self.manager = StreamableHTTPSessionManager(
            self.server, stateless=True, json_response=True, max_request_body_size=max_body_bytes
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.manager.run():
            yield

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        caller = _caller(ctx)
        cursor = params.cursor if params is not None else None
        listing = await _answering(self._calls.list_tools(caller.principal, caller.app, cursor))
        return await _answering(_result(types.ListToolsResult, listing))

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        request = ctx.request
        assert isinstance(request, Request), "the proxy is served over Streamable HTTP only"
        modern = request.headers.get(MCP_PROTOCOL_VERSION_HEADER) in MODERN_PROTOCOL_VERSIONS
        body = await self.call_tool(_caller(ctx), params, request, modern)
        return await _answering(_result(types.CallToolResult, body))

    async def call_tool(
        self, caller: Caller, params: types.CallToolRequestParams, request: Request, modern: bool
    ) -> dict[str, Any]:
        """One billed MCP call (the SDK's handler and the fast path alike): the app's result without its identity,
        or an ``MCPError`` (a refusal with the §3 body, or the app's own error). ``modern``: the caller speaks
        2026-07-28, whose ``Mcp-Param-*`` headers are checked first."""
        if modern:
            self._check_param_headers(caller, params, request)
        call_ctx = CallContext(caller.principal, caller.request_id, caller.session_id, caller.received_at)
        forwarded = {name: value for name, value in request.headers.items() if name.startswith(_PARAM_PREFIX)}
        # Shielded: a client that leaves mid-call does not cancel it; it ends (and settles) exactly once anyway.
        work = asyncio.ensure_future(self._calls.call(call_ctx, caller.app, params.name, params.arguments, forwarded))
        work.add_done_callback(_retrieve)
        result = await _answering(asyncio.shield(work))
        return _without_identity(result.body)

    def _check_param_headers(self, caller: Caller, params: types.CallToolRequestParams, request: Request) -> None:
        """MCP 2026-07-28's server validation of ``Mcp-Param-*`` headers, for a tool whose schema is known: each
        ``x-mcp-header`` argument present in the body needs its header, equal after decoding; none for an absent
        or null one; never twice. A failure is -32020 (HTTP 400), before the call is billed or sent."""
        schema = self._calls.tool_schema(caller.principal, caller.app, params.name)
        if schema is None:
            return
        rejection = validate_mcp_param_headers(schema, params.arguments or {}, request.headers)
        if rejection is not None:
            raise MCPError(HEADER_MISMATCH, f"Header mismatch: {rejection.message}")

    async def answer_fast(self, envelope: fast_call.Envelope, caller: Caller, request: Request, send: Send) -> None:
        """A ``tools/call`` the fast path recognised (``fast_call.py``), answered without an SDK server session."""
        await fast_call.answer(
            envelope,
            send,
            lambda params: self.call_tool(caller, params, request, envelope.modern),
            self.server.server_info_stamp,
        )

    def _relay(self, model: type[R], method: str) -> Callable[[ServerRequestContext[Any], Any], Awaitable[R]]:
        async def handle(ctx: ServerRequestContext[Any], params: Any) -> R:
            caller = _caller(ctx)
            body = await _answering(self._calls.relay(caller.principal, caller.app, method, _params(params)))
            return await _answering(_result(model, body))

        return handle


def _unchecked(_name: str) -> None:
    """The SDK's pre-dispatch header check gets no schema (it would list the app's tools per call to find one);
    ``McpProxy._check_param_headers`` checks with the schemas the gateway already knows."""


def _retrieve(task: asyncio.Future[Any]) -> None:
    """The shielded call's outcome is read by its handler; if the handler was cancelled, it is read here."""
    if not task.cancelled():
        task.exception()


class ProxyEndpoint:
    """The ASGI endpoint of ``/v1/mcp/{slug}``: the key and the app, then the SDK."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            received = time.perf_counter()
            principal = await require_inference(request)
            svc = services(request)
            limit = svc.settings.max_body_bytes
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise RequestTooLarge(f"The request body exceeds the limit of {limit} bytes.")
            calls = svc.mcp_calls
            app = await calls.app(principal, str(scope["path_params"]["slug"]))
            session_id = session_id_header(request)
        except TollwayError as error:
            await error_response(error)(scope, receive, send)
            return
        except Exception:
            log.exception("MCP proxy request failed before the SDK")
            await error_response(InternalError())(scope, receive, send)
            return
        caller = Caller(principal, app, request.state.request_id, session_id, received)
        scope[_SCOPE_KEY] = caller
        proxy = cast(McpProxy, request.app.state.mcp_proxy)
        if request.method == "POST":
            try:
                body = await read_limited(request, limit)
            except TollwayError as error:
                await error_response(error)(scope, receive, send)
                return
            envelope = fast_call.recognise(request, body)
            if envelope is not None:
                await proxy.answer_fast(envelope, caller, request, send)
                return
            receive = fast_call.replaying(body, receive)
        await proxy.manager.handle_request(scope, receive, send)


routes: list[BaseRoute] = [Route("/v1/mcp/{slug}", ProxyEndpoint(), methods=["GET", "POST", "DELETE"])]
