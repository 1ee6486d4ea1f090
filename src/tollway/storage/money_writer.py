"""The single money writer of an instance: group commit for holds, settlements, releases and log rows.

Commands queue up while a transaction is in flight and the next transaction carries all of them, so the database
sees one commit per batch however many calls run at once, and a lone call pays one commit without waiting for a
window. Hold placement is awaited (no upstream call before its hold is durable); settlements are queued from the
stream's ``finally`` and retried until they commit or the hold expires (then the sweeper settles it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.holds import HoldGrant, HoldRequest, MoneyCommand, Refusal
from tollway.settings import Settings
from tollway.storage.db import reader
from tollway.storage.driver_sql import DriverSQL
from tollway.storage.money_batch import Result, apply_batch
from tollway.storage.sqlite_money import SqliteMoneyConnection

log = logging.getLogger("tollway.money")

_MAX_BATCH = 256
# A batch of only deferrable commands (settlements, releases, logs: never awaited by a request) lingers this long
# for a hold to ride along, so a lone caller pays one commit per call instead of two. Holds never wait.
_LINGER_S = 0.005
# Under load (the previous batch carried several holds) a hold waits this long for company: each SQLite commit
# rewrites the same hot pages, so fewer, larger commits cost far less; a lone caller never waits.
_GATHER_S = 0.002
_RETRY_DELAY_S = 0.5


class MoneyWriter:
    def __init__(self, settings: Settings, engine: AsyncEngine, clock: Callable[[], datetime] = utcnow) -> None:
        """``clock`` dates the rows and decides period resets; tests replace it to move time."""
        self._clock = clock
        self._engine = engine
        self._reader = reader(engine)
        self._sqlite = SqliteMoneyConnection(settings) if settings.is_sqlite else None
        self._queue: asyncio.Queue[tuple[MoneyCommand, asyncio.Future[Result]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._lingering: asyncio.Future[None] | None = None
        self._sql = DriverSQL(engine.dialect.name)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="money-writer")

    async def stop(self) -> None:
        """Commit everything already queued, then stop."""
        await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sqlite is not None:
            self._sqlite.close()

    def submit(self, command: MoneyCommand) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((command, future))
        if self._lingering is not None and not self._lingering.done():
            self._lingering.set_result(None)
        return future

    async def place_hold(self, request: HoldRequest) -> HoldGrant | Refusal:
        result = await self.submit(request)
        assert isinstance(result, HoldGrant | Refusal)
        return result

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._queue.empty() and not isinstance(batch[0][0], HoldRequest):
                await self._linger()
            elif self._busy:
                await asyncio.sleep(_GATHER_S)
            while len(batch) < _MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._busy = sum(1 for command, _ in batch if isinstance(command, HoldRequest)) > 1
            try:
                await self._commit_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _linger(self) -> None:
        """Wait up to ``_LINGER_S`` for the next command (a timer and a future: ``asyncio.wait_for`` would create a
        task per batch, which costs more than the wait saves on this path)."""
        loop = asyncio.get_running_loop()
        self._lingering = waiter = loop.create_future()
        timer = loop.call_later(_LINGER_S, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._lingering = None

    async def _commit_batch(self, batch: list[tuple[MoneyCommand, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._apply([command for command, _ in batch])
        except Exception:
            log.warning("money batch of %d failed; committing its commands one by one", len(batch), exc_info=True)
            for command, future in batch:
                await self._commit_one(command, future)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _commit_one(self, command: MoneyCommand, future: asyncio.Future[Result]) -> None:
        attempts = 1 if isinstance(command, HoldRequest) else 3
        for attempt in range(attempts):
            try:
                (result,) = await self._apply([command])
            except Exception as exc:
                if attempt + 1 == attempts:
                    log.error("money command %s failed: %s", type(command).__name__, exc)
                    if not future.done():
                        future.set_exception(exc)
                    return
                await asyncio.sleep(_RETRY_DELAY_S)
            else:
                if not future.done():
                    future.set_result(result)
                return

    async def _apply(self, commands: list[MoneyCommand]) -> list[Result]:
        now = self._clock()
        if self._sqlite is not None:
            return await self._sqlite.apply(commands, now, self._sql)
        async with self._engine.begin() as conn:
            return await conn.run_sync(apply_batch, commands, now, self._sql)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
