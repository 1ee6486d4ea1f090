"""The outermost ASGI middleware: gives every request its ``x-request-id``, binds the request context that log
lines and metrics read, counts the response (``tollway_requests_total{route,status}``, added latency) and turns any
escaped exception into the error envelope (SPEC §3). Pure ASGI: no per-request task or buffering; the metrics cost
a dict lookup, one increment and one observation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.routing import BaseRoute, Route

from tollway.domain.ids import new_request_id
from tollway.errors import InternalError, TollwayError
from tollway.http.client_address import client_host
from tollway.observability.context import RequestContext, bind_request, unbind_request
from tollway.observability.metrics import Metrics
from tollway.settings import IPNetwork

log = logging.getLogger("tollway.http")

Scope = dict[str, Any]
Message = dict[str, Any]

UNMATCHED_ROUTE = "unmatched"  # unknown paths are never used as label values


def route_templates(routes: Iterable[BaseRoute]) -> dict[Any, str]:
    """Endpoint -> path template (``/v1/platforms/{pid}/logs``): the router leaves the endpoint in the scope."""
    templates: dict[Any, str] = {}
    for route in routes:
        if isinstance(route, Route):
            templates.setdefault(route.endpoint, route.path)
    return templates


class RequestContextMiddleware:
    def __init__(
        self,
        app: Any,
        metrics: Metrics | None = None,
        templates: dict[Any, str] | None = None,
        drain: Any = None,
        trusted_proxies: tuple[IPNetwork, ...] = (),
    ) -> None:
        self.app = app
        self._trusted = trusted_proxies
        self._metrics = metrics
        self._templates = templates or {}
        self._drain = drain

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = time.perf_counter()
        if self._trusted:
            _use_forwarded_client(scope, self._trusted)
        request_id = new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        context = RequestContext(request_id, self._metrics, self._drain)
        token = bind_request(context)
        header = (b"x-request-id", request_id.encode("ascii"))
        started = False
        metrics = self._metrics

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
                if metrics is not None:
                    route = self._templates.get(scope.get("endpoint"), UNMATCHED_ROUTE)
                    metrics.request(route, message["status"], time.perf_counter() - received - context.upstream_s)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                # Starlette has already answered (it re-raises so that servers can log): nothing more to send.
                if not isinstance(exc, TollwayError):
                    log.debug("exception after the response started", exc_info=exc)
                return
            error = exc if isinstance(exc, TollwayError) else InternalError()
            if not isinstance(exc, TollwayError):
                log.exception("unhandled error")
            body = orjson.dumps(error.body())
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((k.encode(), v.encode()) for k, v in error.headers.items()),
            ]
            await send_with_id({"type": "http.response.start", "status": error.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            unbind_request(token)


def _use_forwarded_client(scope: Scope, trusted: tuple[IPNetwork, ...]) -> None:
    """SPEC §15: from a trusted proxy, the client its headers name becomes ``scope["client"]`` for everything."""
    client = scope.get("client")
    peer = client[0] if client else None
    host = client_host(peer, scope.get("headers", ()), trusted)
    if host is not None and host != peer:
        scope["client"] = (host, 0)
