"""The outermost ASGI middleware: gives every request its ``x-request-id`` and turns any escaped exception into
the error envelope (SPEC §3). Pure ASGI: no per-request task or buffering, so it costs microseconds.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from tollway.domain.ids import new_request_id
from tollway.errors import InternalError, TollwayError

log = logging.getLogger("tollway.http")

Scope = dict[str, Any]
Message = dict[str, Any]


class RequestContextMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
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
                log.exception("unhandled error", extra={"request_id": request_id})
            body = orjson.dumps(error.body())
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *((k.encode(), v.encode()) for k, v in error.headers.items()),
            ]
            await send_with_id({"type": "http.response.start", "status": error.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
