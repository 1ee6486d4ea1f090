"""The money writer's own SQLite connections (embedded mode).

A batch is a handful of statements that SQLite runs in tens of microseconds, far less than a thread hop and the
GIL hand-off it causes, so it runs right on the event loop with a zero busy timeout. If another writer holds the
database lock at that moment, the batch goes to a thread that waits for it instead, so the loop never blocks on
a lock.

A batch that places holds runs in two steps (``begin``, then ``finish``): its decisions are final once taken under
the write lock, so the callers learn them at once and send their upstream requests while the rows are written and
committed (``MoneyWriter`` holds their answers back until the commit succeeded).

Checkpoints of the write-ahead log run in a thread of their own, never inside a commit on the loop, every
``CHECKPOINT_EVERY_S``. They keep the log short and, above all, make SQLite start it over. A PASSIVE checkpoint never
stalls writers but only copies the frames that existed when it began, so under steady writes the log was never
fully copied, never started over, and grew until something truncated it: every commit appended to an ever longer
file, and each checkpoint's fsync flushed tens of megabytes of newly allocated blocks, the stall of up to 40 ms that
one call in a hundred saw on a disk-backed database (issue 18). So a checkpoint now runs short PASSIVE passes, each
copying what arrived during the previous one, until a pass finds nothing new; then a RESTART copies the last few
frames under the write lock and starts the log over. The RESTART never waits under that lock: with a busy timeout
of 0, a reader still on the old log (the caches read often) or a commit under way makes it give up at once, and it
is tried again a millisecond later, in the checkpoints' own thread, so a batch waiting for the lock never queues
behind it. The next commit then writes from the log's beginning, into blocks the file already has; the log holds a
quarter second of writes, and ``journal_size_limit`` trims the file after a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from tollway.domain.holds import MoneyCommand
from tollway.settings import Settings
from tollway.storage.money.batch import Batch, Result, prepare_batch
from tollway.storage.money.driver_sql import DriverSQL
from tollway.storage.money.rows import RowCache

CHECKPOINT_EVERY_S = 0.25
# PASSIVE passes of one checkpoint at most: each copies what arrived during the previous one, so they shrink fast.
# A pass that finds nothing new (or the last pass) ends them, and a RESTART copies what little is left under the write
# lock and starts the log over. (A commit would start it over by itself once everything is copied, but only if no
# reader is on the log at that moment; the caches' reads often are.)
CATCH_UP_PASSES = 6
# The RESTART never waits under the write lock (busy timeout 0: a reader still on the old log, or a commit under
# way, makes it give up at once); it is tried again after ``RESTART_RETRY_S``, up to ``RESTART_TRIES`` times, and
# after that at the next checkpoint.
RESTART_TRIES = 20
RESTART_RETRY_S = 0.001
# The log file is trimmed to this by the first commit after a restart, however long readers kept the log from
# restarting before.
WAL_KEEP_BYTES = 16 * 1024 * 1024


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring
    conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
    return conn


def _begin(
    conn: sqlite3.Connection,
    commands: list[MoneyCommand],
    now: datetime,
    sql: DriverSQL,
    cache: RowCache | None = None,
) -> tuple[Batch, list[Result]]:
    """Open the write transaction and decide the batch (nothing written yet). With ``cache``: read under the write
    lock, ``data_version`` tells whether any other connection committed since this one last did; if so the cached
    rows are dropped."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if cache is not None:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != cache.version:
                cache.clear()
                cache.version = version
        return prepare_batch(conn, commands, now, sql, cache)
    except BaseException:
        _abort(conn, cache)
        raise


def _finish(conn: sqlite3.Connection, batch: Batch, cache: RowCache | None = None) -> None:
    """Write the decided batch and commit; the cache absorbs it."""
    try:
        batch.flush()
        conn.execute("COMMIT")
    except BaseException:
        _abort(conn, cache)
        raise
    if cache is not None:
        cache.committed()


def _abort(conn: sqlite3.Connection, cache: RowCache | None) -> None:
    """Any failure (a busy COMMIT included) rolls back, so the connection is never left inside a transaction."""
    if cache is not None:
        cache.clear()
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _run(conn: sqlite3.Connection, commands: list[MoneyCommand], now: datetime, sql: DriverSQL) -> list[Result]:
    """One whole transaction (the waiting connection, in the thread)."""
    batch, results = _begin(conn, commands, now, sql)
    _finish(conn, batch)
    return results


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class SqliteMoneyConnection:
    def __init__(self, settings: Settings) -> None:
        path = settings.database_url.removeprefix("sqlite:///")
        self._inline = _connect(path, 0)
        self._cache = RowCache()  # rows as the inline connection last committed them
        self._waiting = _connect(path, 30_000)
        self._checkpointer = _connect(path, 0)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="money-sqlite")
        # Checkpoints have a thread of their own: a batch waiting for the lock never queues behind one.
        self._checkpoint_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="money-checkpoint")
        self._checkpoint_task: asyncio.Task[None] | None = None

    def begin(self, commands: list[MoneyCommand], now: datetime, sql: DriverSQL) -> tuple[Batch, list[Result]] | None:
        """Decide the batch inside a write transaction on the inline connection, which stays open until
        ``finish``. None when another writer holds the lock (then ``apply_waiting``)."""
        if self._checkpoint_task is None:
            self._checkpoint_task = asyncio.create_task(self._checkpoints())
        try:
            return _begin(self._inline, commands, now, sql, self._cache)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            return None

    def finish(self, batch: Batch) -> None:
        """Write and commit what ``begin`` decided; on failure nothing of it stays."""
        _finish(self._inline, batch, self._cache)

    def abort(self) -> None:
        """Roll back what ``begin`` decided, if still open (``finish`` rolls back on its own failures)."""
        _abort(self._inline, self._cache)

    async def apply(self, commands: list[MoneyCommand], now: datetime, sql: DriverSQL) -> list[Result]:
        """Decide, write and commit in one go."""
        begun = self.begin(commands, now, sql)
        if begun is None:
            return await self.apply_waiting(commands, now, sql)
        batch, results = begun
        self.finish(batch)
        return results

    async def apply_waiting(self, commands: list[MoneyCommand], now: datetime, sql: DriverSQL) -> list[Result]:
        """Another writer holds the lock: wait for it off the loop (nothing of the inline attempt was kept; the
        cache, cleared by the failure, refills once the inline connection commits again)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, _run, self._waiting, commands, now, sql)

    async def _checkpoints(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            with contextlib.suppress(sqlite3.Error):
                await loop.run_in_executor(self._checkpoint_thread, self._checkpoint)

    def _checkpoint(self) -> None:
        """One checkpoint (in its thread): PASSIVE passes until one finds nothing new, then a RESTART for the last
        frames, tried until no reader or commit is in its way (see the module docstring)."""
        seen = 0
        for _ in range(CATCH_UP_PASSES):
            _busy, log, copied = self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if log <= 0:
                return  # nothing written since the log restarted
            if copied < log:  # a reader still needs frames the pass could not copy: give it a moment
                time.sleep(RESTART_RETRY_S)
                continue
            if log == seen:
                break  # nothing arrived during the previous pass
            seen = log
        for _ in range(RESTART_TRIES):
            busy, _log, _copied = self._checkpointer.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            if not busy:
                return
            time.sleep(RESTART_RETRY_S)

    def close(self) -> None:
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
        self._thread.shutdown(wait=True)
        self._checkpoint_thread.shutdown(wait=True)
        self._inline.close()
        self._waiting.close()
        self._checkpointer.close()
