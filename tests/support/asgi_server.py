"""The app served in the test's own event loop by a minimal ASGI server that speaks spec version 2.4, where ``send``
raises ``OSError`` once the client has gone (uvicorn speaks 2.3 and drops such sends silently). Starlette then never
starts the body of a streaming answer whose client left before it began: the case a service cannot see from inside
its relay. Lifespan included, so the instance is a whole one (its own money writer, journal and renewals)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Message = dict[str, Any]


class AsgiServer:
    def __init__(self, app: Any) -> None:
        self._app = app
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan: asyncio.Task[None] | None = None

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._lifespan = asyncio.create_task(self._app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        started = await asyncio.wait_for(self._from_app.get(), 30)
        assert started["type"] == "lifespan.startup.complete", started

    async def stop(self) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._from_app.get(), 30)
        assert self._lifespan is not None
        await self._lifespan

    async def post(
        self, path: str, body: dict[str, Any], key: str, on_first_bytes: Callable[[Message], Awaitable[None]]
    ) -> list[Message]:
        """POST ``body`` and read the whole answer, calling ``on_first_bytes(start message)`` when the first body
        bytes arrive: the app waits in ``send`` meanwhile, so the hook sees what was done before those bytes left."""
        sent: list[Message] = []
        delivered = False
        raw = orjson.dumps(body)

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await asyncio.Event().wait()  # the client stays until the answer is over
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body" and len(sent) == 1:
                await on_first_bytes(sent[0])
            sent.append(message)

        await self._app(self._scope(path, raw, key), receive, send)
        return sent

    async def post_and_leave(
        self, path: str, body: dict[str, Any], key: str, leave_after_s: float, after_bodies: int = 0
    ) -> list[Message]:
        """POST ``body``; the client hangs up ``leave_after_s`` later, counted from when the app has sent
        ``after_bodies`` body messages (0: from the request). Returns what the app managed to send before (nothing,
        when it had not answered by then)."""
        raw = orjson.dumps(body)
        gone = asyncio.Event()
        delivered = False
        sent: list[Message] = []
        loop = asyncio.get_running_loop()

        async def receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if gone.is_set():
                raise OSError("the client has gone")  # ASGI 2.4
            sent.append(message)
            if after_bodies and sum(m["type"] == "http.response.body" for m in sent) == after_bodies:
                loop.call_later(leave_after_s, gone.set)

        if not after_bodies:
            loop.call_later(leave_after_s, gone.set)
        await self._app(self._scope(path, raw, key), receive, send)
        return sent

    @staticmethod
    def _scope(path: str, raw: bytes, key: str) -> Message:
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                (b"authorization", f"Bearer {key}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
