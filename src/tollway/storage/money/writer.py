"""The single money writer of an instance: group commit for holds, settlements, releases and log rows.

Commands queue up while a transaction is in flight and the next transaction carries all of them, so the database
sees one commit per batch however many calls run at once, and a lone call never waits for a window (its hold and
its settlement commit on their own). Hold placement is awaited; settlements and checkpoints are queued.

A settlement is never dropped (SPEC §9.4 "Nothing delivered is ever free"). Every settlement and stream checkpoint
is written ahead to this instance's journal (``journal.py``: one ``os.write``, no fsync) as it is submitted, before
the bytes it accounts for reach the client, so a ``kill -9`` before its commit (a hanging commit included) loses
nothing: the next instance adopts the journal and replays it. A record is live until its hold's settlement
commits; the journal is compacted once it grows past ``COMPACT_BYTES``. When a settlement fails to commit on its
own (its batch failed, then it failed alone), its record is fsynced in the journal (owed) before the writer moves
on, and the journal task retries it, with backoff from 0.5 s doubling to 30 s, until it commits, across restarts
(a starting instance adopts the journals of instances that are gone). It is made durable on the first failure
rather than after a few in-memory retries: an outage long enough to fail a commit usually outlasts seconds of
retries, and the fsync costs nothing on the path that succeeds. Retrying from a separate task keeps the writer free
for holds (which fail fast, 503) and for the settlements of calls that still reach the database. A retried
settlement whose hold the sweeper resolved meanwhile commits as a late charge (``late.py``), and at most once per
hold (``Batch.settle``).

Embedded SQLite answers a hold as soon as it is decided under the write lock and commits the batch while the caller
sends its upstream request (the commit's cost hides behind the upstream's latency); ``confirm`` then waits for that
commit, so no answer reaches a client, and nothing is settled, on a hold that did not become durable. On PostgreSQL
a hold is answered after its commit and ``confirm`` returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from tollway.domain.clock import utcnow
from tollway.domain.holds import (
    Checkpoint,
    HoldGrant,
    HoldRequest,
    Journaled,
    MoneyCommand,
    Recover,
    Refusal,
    Release,
    Settlement,
)
from tollway.domain.ids import new_id
from tollway.settings import Settings
from tollway.storage.money.batch import Result
from tollway.storage.money.driver_sql import DriverSQL
from tollway.storage.money.journal import COMPACT_BYTES, SettlementJournal
from tollway.storage.money.postgres import PostgresMoney
from tollway.storage.money.sqlite import SqliteMoneyConnection
from tollway.storage.sql.db import reader

log = logging.getLogger("tollway.money")

_MAX_BATCH = 256
# Under load (the previous batch carried several holds) a batch of only deferrable commands (settlements, releases,
# logs: never awaited by a request) lingers this long for holds to ride along, so the commits stay few. A lone
# caller's settlement commits at once, while the client reads its answer, so that what the client reads next (its
# budget, the wallet, its usage) already includes the call. (Letting it ride with the next hold's commit on SQLite
# saved a seventh of the log's pages but let a read right after the call miss it.) Holds never wait.
_LINGER_S = 0.005
# Under load (the previous batch carried several holds) a hold waits this long for company: each SQLite commit
# rewrites the same hot pages, so fewer, larger commits cost far less; a lone caller never waits.
_GATHER_S = 0.002
_RETRY_DELAY_S = 0.5
# Journaled settlements: the first retry 0.5 s after the failure, doubling to at most 30 s while the database stays
# away; journals of instances that are gone are looked for at start and then every minute.
_REPLAY_FIRST_S = 0.5
_REPLAY_MAX_S = 30.0
_ADOPT_EVERY_S = 60.0
# A journal with nothing live is emptied this long after its last commit (or at once past ``COMPACT_BYTES``).
_IDLE_COMPACT_S = 1.0


class MoneyWriter:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        clock: Callable[[], datetime] = utcnow,
        instance_id: str | None = None,
    ) -> None:
        """``clock`` dates the rows and decides period resets; tests replace it to move time. ``instance_id`` names
        this instance's settlement journal (the heartbeat's id; a fresh one by default)."""
        self._clock = clock
        self._engine = engine
        self._reader = reader(engine)
        self._sqlite = SqliteMoneyConnection(settings) if settings.is_sqlite else None
        self.postgres = None if settings.is_sqlite else PostgresMoney(settings.database_url, engine)
        self._queue: asyncio.Queue[tuple[MoneyCommand, asyncio.Future[Result]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._lingering: asyncio.Future[None] | None = None
        self._sql = DriverSQL(engine.dialect.name)
        # Holds answered before their batch committed (embedded SQLite): hold id -> the commit's outcome.
        self._unconfirmed: dict[str, asyncio.Future[None]] = {}
        self._void: set[str] = set()  # holds answered whose batch then failed, until their caller confirms
        self.instance_id = instance_id or new_id()
        self.journal = SettlementJournal(settings.data_dir / "journal", self.instance_id)
        self._journal_lock = asyncio.Lock()  # one disk operation on the journal at a time (they run in a thread)
        self._journal_wake = asyncio.Event()
        self._replay_task: asyncio.Task[None] | None = None
        self._idle_compaction: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="money-writer")
        self._replay_task = asyncio.create_task(self._replay(), name="settlement-journal")

    async def stop(self) -> None:
        """Commit everything already queued, then stop. Settlements still journaled stay on disk: the next instance
        to start on this data directory adopts them."""
        await self._queue.join()
        if self._idle_compaction is not None:
            self._idle_compaction.cancel()
        for task in (self._replay_task, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._compact(force=True)
        if self.journal.entries:
            log.warning(
                "stopping with %d settlements journaled in %s; the next instance on this data directory commits them",
                len(self.journal.entries),
                self.journal.path,
            )
        self.journal.close()
        if self._sqlite is not None:
            self._sqlite.close()
        if self.postgres is not None:
            await self.postgres.close()

    def submit(self, command: MoneyCommand) -> asyncio.Future[Result]:
        """Queue a command; a settlement or a checkpoint is written ahead to the journal first (SPEC §9.4)."""
        if isinstance(command, Settlement | Checkpoint):
            self.journal.write_ahead(command)
            if log.isEnabledFor(logging.DEBUG):
                request_id = command.record.request_id if isinstance(command, Settlement) else command.request_id
                kind = "settlement" if isinstance(command, Settlement) else "checkpoint"
                log.debug("%s of hold %s written ahead", kind, command.hold_id, extra={"request_id": request_id})
        return self._enqueue(command)

    def provisional(self, command: Checkpoint) -> None:
        """A stream's progress for the journal only (its opening): the database's checkpoint comes with content."""
        self.journal.write_ahead(command)

    def _enqueue(self, command: MoneyCommand) -> asyncio.Future[Result]:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        if self._void and isinstance(command, Release):
            self._void.discard(command.hold_id)  # a void hold released by its caller: nothing left to report
        self._queue.put_nowait((command, future))
        if self._lingering is not None and not self._lingering.done():
            self._lingering.set_result(None)
        return future

    async def place_hold(self, request: HoldRequest) -> HoldGrant | Refusal:
        result = await self.submit(request)
        assert isinstance(result, HoldGrant | Refusal)
        return result

    async def confirm(self, hold_id: str) -> None:
        """Return once the hold is durable; raise ``HoldNotRecorded`` when its batch failed to commit."""
        pending = self._unconfirmed.get(hold_id)
        if pending is not None:
            # shield: a caller cancelled while waiting must not cancel the outcome every hold of the batch shares
            await asyncio.shield(pending)
        if hold_id in self._void:
            self._void.discard(hold_id)
            raise HoldNotRecorded(hold_id)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if not isinstance(batch[0][0], HoldRequest):
                if self._busy and self._queue.empty():
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
        if self._sqlite is not None and any(isinstance(command, HoldRequest) for command, _ in batch):
            await self._commit_split(batch, self._sqlite)
            return
        try:
            results = await self._apply([command for command, _ in batch])
        except Exception:
            await self._one_by_one(batch)
            return
        _answer(batch, results)
        self._committed(command for command, _ in batch)

    async def _one_by_one(self, batch: list[tuple[MoneyCommand, asyncio.Future[Result]]]) -> None:
        log.warning("money batch of %d failed; committing its commands one by one", len(batch), exc_info=True)
        for command, future in batch:
            await self._commit_one(command, future)

    async def _commit_split(
        self, batch: list[tuple[MoneyCommand, asyncio.Future[Result]]], sqlite: SqliteMoneyConnection
    ) -> None:
        """Embedded SQLite: decide under the write lock, answer the callers, let them send their upstream requests,
        then write and commit."""
        commands = [command for command, _ in batch]
        now = self._clock()
        try:
            begun = sqlite.begin(commands, now, self._sql)
            if begun is None:
                results = await sqlite.apply_waiting(commands, now, self._sql)
        except Exception:
            await self._one_by_one(batch)
            return
        if begun is None:
            _answer(batch, results)
            self._committed(command for command, _ in batch)
            return
        prepared, results = begun
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        holds = [result.hold_id for result in results if isinstance(result, HoldGrant)]
        for hold_id in holds:
            self._unconfirmed[hold_id] = outcome
        _answer(batch, results)
        committed = False
        try:
            # The callers run up to their upstream request: one turn of the loop to resume them, a second for the
            # task in which aiohttp writes a request body (Python < 3.12 cannot start it eagerly).
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            sqlite.finish(prepared)
            committed = True
            self._committed(commands)
        except Exception:
            log.error("money batch failed to commit; its %d holds are void", len(holds), exc_info=True)
        finally:
            if not committed:  # failed, or cancelled (shutdown) before the commit: nothing of the batch stays
                sqlite.abort()
                self._void.update(holds)
            for hold_id in holds:
                del self._unconfirmed[hold_id]
            outcome.set_result(None)
        if not committed:
            for command, future in batch:
                if not isinstance(command, HoldRequest):
                    await self._commit_one(command, future)

    async def _commit_one(self, command: MoneyCommand, future: asyncio.Future[Result]) -> None:
        if isinstance(command, Settlement | Recover):
            await self._settle_or_journal(command, future)
            return
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
                self._committed((command,))
                if not future.done():
                    future.set_result(result)
                return

    async def _settle_or_journal(self, command: Journaled, future: asyncio.Future[Result]) -> None:
        """One try on its own; on failure the settlement's record is made durable in the journal (fsynced) before
        the writer moves on, and its future answers None (journaled: it commits later). A journaled record being
        retried fails its future instead, so the journal task knows to try again."""
        request_id = _request_id(command)
        try:
            (result,) = await self._apply([command])
        except Exception as exc:
            if command.hold_id in self.journal:
                if not future.done():
                    future.set_exception(exc)
                return
            await self._journal_append(command, exc)
            if not future.done():
                future.set_result(None)
            return
        self._committed((command,))
        if not future.done():
            future.set_result(result)
        log.debug("settlement of hold %s committed", command.hold_id, extra={"request_id": request_id})

    def _committed(self, commands: Iterable[MoneyCommand]) -> None:
        """A batch committed: the settlements and releases in it no longer need their journal records."""
        journal = self.journal
        if journal.ahead:
            for command in commands:
                if isinstance(command, Settlement | Release):
                    journal.settled(command.hold_id)
        if journal.size >= COMPACT_BYTES:
            self._compact()
        elif journal.size and self._idle_compaction is None:
            self._idle_compaction = asyncio.get_running_loop().call_later(_IDLE_COMPACT_S, self._compact_when_idle)

    def _compact_when_idle(self) -> None:
        self._idle_compaction = None
        if not self.journal.ahead:
            self._compact(force=True)

    def _compact(self, force: bool = False) -> None:
        """On the loop, and never while a journal operation runs in a thread (they share the file)."""
        if self._journal_lock.locked():
            return
        try:
            self.journal.compact(force)
        except OSError:
            log.error("could not compact the settlement journal %s", self.journal.path, exc_info=True)

    async def _journal_append(self, command: Journaled, exc: Exception) -> None:
        request_id = _request_id(command)
        try:
            async with self._journal_lock:
                await asyncio.to_thread(self.journal.append, [command])
        except OSError:
            # The data directory refuses the write (full, read-only): keep retrying from memory all the same.
            log.error(
                "settlement of hold %s could not be committed (%s) nor journaled in %s; retried from memory",
                command.hold_id,
                exc,
                self.journal.directory,
                exc_info=True,
                extra={"request_id": request_id},
            )
            self.journal.entries[command.hold_id] = command
        else:
            log.warning(
                "settlement of hold %s could not be committed (%s); journaled in %s and retried until it commits",
                command.hold_id,
                exc,
                self.journal.path,
                extra={"request_id": request_id},
            )
        self._journal_wake.set()

    async def _replay(self) -> None:
        """Retry the journaled settlements (with backoff) until each commits; adopt orphaned journals."""
        loop = asyncio.get_running_loop()
        next_scan = loop.time()
        delay = _REPLAY_FIRST_S
        while True:
            if loop.time() >= next_scan:
                await self._adopt_orphans()
                next_scan = loop.time() + _ADOPT_EVERY_S
            if not self.journal.entries:
                delay = _REPLAY_FIRST_S
                self._journal_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._journal_wake.wait(), max(0.0, next_scan - loop.time()))
                continue
            await asyncio.sleep(delay)
            delay = _REPLAY_FIRST_S if await self._replay_pass(delay) else min(delay * 2, _REPLAY_MAX_S)

    async def _adopt_orphans(self) -> None:
        try:
            async with self._journal_lock:
                adopted = await asyncio.to_thread(self.journal.adopt_orphans)
        except OSError:
            log.error("could not read the settlement journals in %s", self.journal.directory, exc_info=True)
            return
        for owner in adopted:
            log.warning("adopted the settlement journal of instance %s, which is gone", owner)

    async def _replay_pass(self, delay: float) -> bool:
        """Submit every journaled settlement (they share batches); True when none is left."""
        entries = list(self.journal.entries.values())
        for settlement in entries:
            log.info(
                "retrying the journaled settlement of hold %s",
                settlement.hold_id,
                extra={"request_id": _request_id(settlement)},
            )
        # Not ``submit``: the journal has these records already.
        outcomes = await asyncio.gather(*(self._enqueue(s) for s in entries), return_exceptions=True)
        done: list[str] = []
        for settlement, outcome in zip(entries, outcomes, strict=True):
            request_id = _request_id(settlement)
            if isinstance(outcome, BaseException):
                log.warning(
                    "journaled settlement of hold %s still not committed (%s); next try in %.1f s",
                    settlement.hold_id,
                    outcome,
                    min(delay * 2, _REPLAY_MAX_S),
                    extra={"request_id": request_id},
                )
                continue
            done.append(settlement.hold_id)
            if outcome:
                log.warning(
                    "journaled settlement of hold %s committed", settlement.hold_id, extra={"request_id": request_id}
                )
            else:
                log.warning(
                    "journaled settlement of hold %s was already applied (or its hold is unknown); nothing charged",
                    settlement.hold_id,
                    extra={"request_id": request_id},
                )
        if done:
            self.journal.remove(done)
            self._compact(force=True)
            for settlement in entries:
                if settlement.hold_id in done:
                    request_id = _request_id(settlement)
                    log.info("journal entry of hold %s removed", settlement.hold_id, extra={"request_id": request_id})
        return not self.journal.entries

    async def _apply(self, commands: list[MoneyCommand]) -> list[Result]:
        now = self._clock()
        if self._sqlite is not None:
            return await self._sqlite.apply(commands, now, self._sql)
        assert self.postgres is not None
        return await self.postgres.apply(commands, now, self._sql)


class HoldNotRecorded(Exception):
    """The batch that placed a hold (already answered) failed to commit: the hold does not exist."""


def _answer(batch: list[tuple[MoneyCommand, asyncio.Future[Result]]], results: list[Result]) -> None:
    for (_, future), result in zip(batch, results, strict=True):
        if not future.done():
            future.set_result(result)


def _request_id(record: Journaled) -> str:
    return record.record.request_id if isinstance(record, Settlement) else record.request_id


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
