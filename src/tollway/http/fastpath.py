"""The inference routes as raw ASGI (the hot path): an exact ``(method, path)`` lookup in front of Starlette, so a
call skips the router's scan and Starlette's two exception-handling layers. Behaviour is unchanged: a
``TollwayError`` becomes its error envelope here, anything else escapes to ``RequestContextMiddleware`` (a logged
500), and every other request goes to the Starlette app as before. Routes with one path parameter after a fixed
prefix (the MCP proxy, ``/v1/mcp/{slug}``) are matched by that route itself once the prefix matches, and handled
by it as the router would (the same scope keys), so they skip the scan too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tollway.errors import TollwayError
from tollway.http.responses import error_response

Endpoint = Callable[[Request], Awaitable[Response]]


def exact_routes(routes: Iterable[BaseRoute], paths: Iterable[str]) -> dict[tuple[str, str], Endpoint]:
    """The endpoints of ``paths`` (templates without parameters), by method and path."""
    wanted = set(paths)
    table: dict[tuple[str, str], Endpoint] = {}
    for route in routes:
        if isinstance(route, Route) and route.path in wanted and "{" not in route.path:
            for method in route.methods or ():
                if method != "HEAD":
                    table[(method, route.path)] = route.endpoint
    return table


def prefixed_routes(routes: Iterable[BaseRoute], paths: Iterable[str]) -> dict[str, Route]:
    """The routes of ``paths`` (templates whose only parameter ends them, ``/v1/mcp/{slug}``), by fixed prefix."""
    wanted = set(paths)
    return {route.path.split("{", 1)[0]: route for route in routes if isinstance(route, Route) and route.path in wanted}


class FastPath:
    def __init__(
        self, app: Any, table: dict[tuple[str, str], Endpoint], prefixed: dict[str, Route] | None = None
    ) -> None:
        self._app = app
        self._table = table
        self._prefixed = prefixed or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self._table.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        )
        if endpoint is None:
            if scope["type"] == "http" and await self._by_prefix(scope, receive, send):
                return
            await self._app(scope, receive, send)
            return
        scope["app"] = self._app  # what Starlette sets: handlers reach the services through request.app.state
        scope["endpoint"] = endpoint  # for the route label of the request metrics
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except TollwayError as exc:
            response = error_response(exc)
        await response(scope, receive, send)

    async def _by_prefix(self, scope: Scope, receive: Receive, send: Send) -> bool:
        path: str = scope.get("path", "")
        for prefix, route in self._prefixed.items():
            if path.startswith(prefix):
                match, child = route.matches(scope)
                if match is not Match.FULL:
                    return False  # another method (405) or path: the router answers as before
                scope["app"] = self._app
                scope.update(child)
                await route.handle(scope, receive, send)
                return True
        return False


def wrap(app: ASGIApp, routes: Iterable[BaseRoute], paths: Iterable[str], prefixed: Iterable[str] = ()) -> ASGIApp:
    listed = list(routes)
    return FastPath(app, exact_routes(listed, paths), prefixed_routes(listed, prefixed))
