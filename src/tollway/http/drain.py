"""Graceful shutdown (SPEC §14.3). On SIGTERM the instance starts draining: ``/readyz`` answers 503 and uvicorn
stops accepting connections; streams still running ``drain_s`` later are ended with their protocol's error event
(their upstream is closed and they settle as ``interrupted`` in their own ``finally``), so uvicorn's wait for open
connections ends and the lifespan shutdown flushes the money writer before the process exits.

A stream opts in by iterating through ``Drain.guard`` (``http/sse.py`` does it for chat; the Responses API passes
its own ``response.failed`` event). At the deadline the drain cancels the task that iterates the stream; the
cancellation surfaces in the upstream read, runs the service's ``finally`` (settlement), and ``guard`` turns it into
the final event instead of an error.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

log = logging.getLogger("tollway.drain")


class _Stream:
    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.expired = False


class Drain:
    def __init__(self, drain_s: float) -> None:
        self.drain_s = drain_s
        self.draining = False
        self._streams: set[_Stream] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._previous_handler: Any = None

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def begin(self) -> None:
        """Start draining (idempotent); streams still open after ``drain_s`` are ended."""
        if self.draining:
            return
        self.draining = True
        log.warning("draining: %d open streams get %.0f s to finish", len(self._streams), self.drain_s)
        self._timer = asyncio.get_running_loop().call_later(self.drain_s, self.expire)

    def expire(self) -> None:
        """End every open stream now with its error event."""
        for stream in list(self._streams):
            if not stream.expired:
                stream.expired = True
                stream.task.cancel()

    async def guard(self, stream: AsyncIterator[bytes], final: Callable[[], bytes]) -> AsyncIterator[bytes]:
        """Relay ``stream``; if the drain deadline ends it, send ``final()`` (the error event) and stop."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always inside a task under uvicorn
            async for chunk in stream:
                yield chunk
            return
        entry = _Stream(task)
        self._streams.add(entry)
        try:
            try:
                async for chunk in stream:
                    yield chunk
            except asyncio.CancelledError:
                if not entry.expired:
                    raise
                task.uncancel()
                yield final()
        finally:
            self._streams.discard(entry)

    # -- SIGTERM ----------------------------------------------------------------------------------------------

    def install_signal_hook(self) -> None:
        """Chain in front of the SIGTERM handler uvicorn installed (it captures signals before the lifespan
        starts, in every worker process): start draining, then let uvicorn begin its graceful shutdown."""
        if threading.current_thread() is not threading.main_thread():
            return  # tests serving the app from a thread: no signals there
        self._loop = asyncio.get_running_loop()
        self._previous_handler = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def remove_signal_hook(self) -> None:
        if self._loop is not None and signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._previous_handler)
        if self._timer is not None:
            self._timer.cancel()

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self.begin)
        previous = self._previous_handler
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise SystemExit(0)
