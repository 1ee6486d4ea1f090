"""A real HTTP receiver for webhook tests: an aiohttp server on a free port, in a thread with its own loop. It
records every request (headers and raw body) and answers with the next status of a script (200 when it runs out);
``hold`` makes it wait before answering (an attempt in flight)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.servers import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str
    at: float = field(default_factory=time.monotonic)

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


class WebhookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[Received] = []
        self.statuses: list[int] = []
        self.hold_s = 0.0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="webhook-receiver", daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.received.append(Received(dict(request.headers), body, request.path))
            status = self.statuses.pop(0) if self.statuses else 200
        if self.hold_s:
            await asyncio.sleep(self.hold_s)
        return web.Response(status=status, text="ok sk-live-abcdefghijklmnop " + "x" * 2000)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> WebhookReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                snapshot = list(self.received)
            if predicate(snapshot):
                return snapshot
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver condition not met in {timeout} s; got {len(snapshot)} request(s)")
            time.sleep(0.02)

    def of_type(self, event_type: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.json()["event_type"] == event_type]
