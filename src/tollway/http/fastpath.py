"""The inference routes as raw ASGI (the hot path): an exact ``(method, path)`` lookup in front of Starlette, so a
call skips the router's scan and Starlette's two exception-handling layers. Behaviour is unchanged: a
``TollwayError`` becomes its error envelope here, anything else escapes to ``RequestContextMiddleware`` (a logged
500), and every other request goes to the Starlette app as before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
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


class FastPath:
    def __init__(self, app: Any, table: dict[tuple[str, str], Endpoint]) -> None:
        self._app = app
        self._table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self._table.get((scope.get("method", ""), scope.get("path", ""))) if scope["type"] == "http" else None
        )
        if endpoint is None:
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


def wrap(app: ASGIApp, routes: Iterable[BaseRoute], paths: Iterable[str]) -> ASGIApp:
    return FastPath(app, exact_routes(routes, paths))
