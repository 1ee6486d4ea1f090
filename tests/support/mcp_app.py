"""A real MCP server built with the official ``mcp`` SDK for the MCP proxy tests (SPEC §16.3): a Streamable HTTP app
served by uvicorn on a free port, in a thread. Its tools return text, fail (``isError`` results and JSON-RPC
errors), take time, return an oversized result; with ``token_check`` every request must carry a bearer token the
check accepts (401 otherwise), as an app behind an OAuth authorization server does. With ``streaming`` it answers
in SSE mode, and its extra ``progress`` tool sends a progress notification before its result, so the answer is an
SSE stream. With ``param_headers`` it also has ``locate``, whose ``region`` argument is marked ``x-mcp-header:
Region`` (MCP 2026-07-28): the SDK's server refuses a call whose ``Mcp-Param-Region`` header does not match (-32020,
HTTP 400), and the tool checks the header itself and records it; a caller whose bearer token is in ``unmarked`` is
listed ``locate`` without the mark (and served without the header), as an app that lists per credential does. With
``legacy`` it is an app of the handshake era: stateful (an ``Mcp-Session-Id`` from ``initialize``), and a 2026-07-28
request gets the 400 an older server answers to a version it does not know. It records the calls it served and the
Authorization and User-Agent headers it saw, for tests to assert on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import decode_header_value
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.support.servers import free_port


def _tool(name: str, description: str, properties: dict[str, Any] | None = None) -> types.Tool:
    return types.Tool(
        name=name, description=description, input_schema={"type": "object", "properties": properties or {}}
    )


TOOLS = [
    _tool("echo", "Echoes its text.", {"text": {"type": "string"}}),
    _tool("fail", "Always an isError result."),
    _tool("explode", "A JSON-RPC error."),
    _tool("sleep", "Sleeps `s` seconds.", {"s": {"type": "number"}}),
    _tool("big", "Returns `n` bytes of text.", {"n": {"type": "integer"}}),
    _tool("secret", "Not for everyone."),
    _tool("leak", "A JSON-RPC error quoting the request's Authorization header."),
]


LOCATE = types.Tool(
    name="locate",
    description="Answers where its query runs; the region travels as the Mcp-Param-Region header too.",
    input_schema={
        "type": "object",
        "properties": {"region": {"type": "string", "x-mcp-header": "Region"}, "query": {"type": "string"}},
        "required": ["region", "query"],
    },
)
LOCATE_UNMARKED = types.Tool(
    name="locate",
    description="Answers where its query runs (no header parameters for this caller).",
    input_schema={
        "type": "object",
        "properties": {"region": {"type": "string"}, "query": {"type": "string"}},
        "required": ["region", "query"],
    },
)
PROGRESS = _tool("progress", "Reports progress, then echoes its text.", {"text": {"type": "string"}})


class McpApp:
    def __init__(
        self,
        token_check: Callable[[str], bool] | None = None,
        *,
        streaming: bool = False,
        legacy: bool = False,
        param_headers: bool = False,
    ) -> None:
        self.streaming = streaming
        self.legacy = legacy
        self.methods: list[str] = []  # the JSON-RPC methods of the POSTs it received (legacy apps only)
        self.sessions: list[str | None] = []  # their Mcp-Session-Id headers
        self.tools = [*TOOLS, PROGRESS] if streaming else TOOLS
        if param_headers:
            self.tools = [*self.tools, LOCATE]
        self.regions: list[str | None] = []  # the raw Mcp-Param-Region headers of the ``locate`` calls it served
        self.unmarked: set[str] = set()  # bearer tokens listed ``locate`` without its x-mcp-header mark
        self.agents: list[str | None] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.redirect_url = f"http://127.0.0.1:{self.port}/moved"
        self.token_check = token_check
        self.calls: list[str] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def _unmarked(self, ctx: Any) -> bool:
        """Whether the request's bearer token is one this app lists ``locate`` to without the header mark."""
        request = ctx.request
        value = request.headers.get("authorization") if request is not None else None
        return (value or "").removeprefix("Bearer ") in self.unmarked

    async def _list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        if self._unmarked(ctx):
            return types.ListToolsResult(tools=[LOCATE_UNMARKED if t is LOCATE else t for t in self.tools])
        return types.ListToolsResult(tools=self.tools)

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        args = params.arguments or {}
        with self._lock:
            self.calls.append(params.name)
        if params.name == "echo":
            return types.CallToolResult(content=[types.TextContent(text=str(args.get("text", "")))])
        if params.name == "fail":
            return types.CallToolResult(content=[types.TextContent(text="the tool failed")], is_error=True)
        if params.name == "sleep":
            await asyncio.sleep(float(args.get("s", 1)))
            return types.CallToolResult(content=[types.TextContent(text="awake")])
        if params.name == "big":
            return types.CallToolResult(content=[types.TextContent(text="x" * int(args.get("n", 10)))])
        if params.name == "progress" and self.streaming:
            await ctx.session.send_progress_notification("work", 0.5, related_request_id=ctx.request_id)
            return types.CallToolResult(content=[types.TextContent(text=str(args.get("text", "")))])
        if params.name == "locate" and any(t.name == "locate" for t in self.tools):
            raw = ctx.request.headers.get("mcp-param-region") if ctx.request is not None else None
            with self._lock:
                self.regions.append(raw)
            checked = not self.legacy and not self._unmarked(ctx)  # a 2026-07-28 tool, marked for this caller
            if checked and decode_header_value(raw) != args.get("region"):
                raise MCPError(types.HEADER_MISMATCH, "Header mismatch: Mcp-Param-Region")
            return types.CallToolResult(content=[types.TextContent(text=f"{args.get('query')} in {args['region']}")])
        if params.name == "secret":
            return types.CallToolResult(content=[types.TextContent(text="classified")])
        if params.name == "leak":
            request = ctx.request
            quoted = request.headers.get("authorization") if request is not None else None
            raise MCPError(types.INVALID_PARAMS, f"refused {quoted} and sk-live-{'x' * 12}")
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")

    async def _list_prompts(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[types.Prompt(name="greet", description="A greeting.")])

    async def _handle(self, manager: StreamableHTTPSessionManager, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        auth = headers.get(b"authorization")
        value = auth.decode() if auth is not None else None
        agent = headers.get(b"user-agent")
        with self._lock:
            self.authorizations.append(value)
            self.agents.append(agent.decode() if agent is not None else None)
        if self.token_check is not None:
            token = (value or "").removeprefix("Bearer ")
            if not self.token_check(token):
                await JSONResponse({"error": "invalid_token"}, 401)(scope, receive, send)
                return
        if self.legacy:
            version = headers.get(b"mcp-protocol-version", b"").decode()
            if version and version not in HANDSHAKE_PROTOCOL_VERSIONS:
                body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Unsupported version"}}
                await JSONResponse(body, 400)(scope, receive, send)
                return
            receive = await self._noted(scope, receive)
        await manager.handle_request(scope, receive, send)

    async def _noted(self, scope: Scope, receive: Receive) -> Receive:
        """Notes the method and session id of a POST (its body read here and handed on)."""
        if scope["method"] != "POST":
            return receive
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        try:
            method = str(json.loads(body).get("method"))
        except (ValueError, AttributeError):
            method = "?"
        session = dict(scope["headers"]).get(b"mcp-session-id")
        with self._lock:
            self.methods.append(method)
            self.sessions.append(session.decode() if session is not None else None)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    def start(self) -> McpApp:
        server: Server[Any] = Server(
            "test-app", on_list_tools=self._list_tools, on_call_tool=self._call_tool, on_list_prompts=self._list_prompts
        )
        manager = StreamableHTTPSessionManager(server, stateless=not self.legacy, json_response=not self.streaming)

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[None]:
            async with manager.run():
                yield

        async def moved(_request: Request) -> RedirectResponse:
            return RedirectResponse(self.url, status_code=307)

        app = Starlette(
            routes=[Route("/moved", moved, methods=["GET", "POST"]), Route("/mcp", _Endpoint(self, manager))],
            lifespan=lifespan,
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="mcp-app", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the MCP app did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=20)


class _Endpoint:
    """An ASGI endpoint (not a request handler), so that Starlette hands the SDK the raw request at ``/mcp``."""

    def __init__(self, app: McpApp, manager: StreamableHTTPSessionManager) -> None:
        self._app = app
        self._manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app._handle(self._manager, scope, receive, send)
