"""The demo's built-in MCP app (``tollway demo``, SPEC §16.3): a small MCP server built with the official ``mcp``
SDK, served over Streamable HTTP by uvicorn, with two tools that need no network: ``get_time`` (the current time in
UTC, or at a given UTC offset) and ``lookup_order`` (a few canned orders of a pretend shop)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

PATH = "/mcp"
ORDERS: dict[str, dict[str, Any]] = {
    "A-1001": {"status": "shipped", "carrier": "DHL", "eta": "2 days", "items": ["notebook", "pen set"]},
    "A-1002": {"status": "processing", "carrier": None, "eta": "5 days", "items": ["desk lamp"]},
    "A-1003": {"status": "delivered", "carrier": "UPS", "eta": None, "items": ["backpack"]},
}
TOOLS = [
    types.Tool(
        name="get_time",
        description="The current date and time, in UTC or at a UTC offset such as +02:00.",
        input_schema={
            "type": "object",
            "properties": {"utc_offset": {"type": "string", "pattern": "^[+-]\\d{2}:\\d{2}$"}},
        },
    ),
    types.Tool(
        name="lookup_order",
        description="The status of an order of the demo shop (try A-1001, A-1002 or A-1003).",
        input_schema={"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    ),
]


def _text(text: str, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=error)


def _time(offset: object) -> types.CallToolResult:
    zone = UTC
    if isinstance(offset, str) and len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
        try:
            delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
        except ValueError:
            return _text("utc_offset must look like +02:00.", error=True)
        zone = timezone(delta if offset[0] == "+" else -delta)
    elif offset is not None:
        return _text("utc_offset must look like +02:00.", error=True)
    return _text(datetime.now(zone).isoformat(timespec="seconds"))


def _order(order_id: object) -> types.CallToolResult:
    order = ORDERS.get(str(order_id).strip().upper()) if order_id is not None else None
    if order is None:
        return _text(f"No order {order_id!r}; known orders: {', '.join(ORDERS)}.", error=True)
    items = ", ".join(order["items"])
    carrier = f" with {order['carrier']}" if order["carrier"] else ""
    eta = f", arriving in {order['eta']}" if order["eta"] else ""
    return _text(f"Order {str(order_id).upper()} ({items}) is {order['status']}{carrier}{eta}.")


async def _list_tools(_ctx: Any, _params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def _call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    arguments = params.arguments or {}
    if params.name == "get_time":
        return _time(arguments.get("utc_offset"))
    if params.name == "lookup_order":
        return _order(arguments.get("order_id"))
    return _text(f"Unknown tool {params.name!r}.", error=True)


class _Endpoint:
    """The SDK's handler as the ASGI endpoint of ``/mcp`` itself (no Mount, so no redirect to ``/mcp/``)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self._manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._manager.handle_request(scope, receive, send)


def demo_mcp_app() -> Starlette:
    server: Server[Any] = Server("tollway-demo-tools", version="1", on_list_tools=_list_tools, on_call_tool=_call_tool)
    manager = StreamableHTTPSessionManager(server, stateless=True, json_response=True)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Route(PATH, _Endpoint(manager))], lifespan=lifespan)


def bind(host: str = "127.0.0.1") -> tuple[socket.socket, str]:
    """A listening socket on a free port and the app's URL on it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    return sock, f"http://{host}:{port}{PATH}"


def demo_mcp_server() -> uvicorn.Server:
    config = uvicorn.Config(demo_mcp_app(), log_level="warning", access_log=False, lifespan="on")
    return uvicorn.Server(config)
