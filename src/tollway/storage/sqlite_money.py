"""The money writer's own SQLite connections (embedded mode).

A batch is a handful of statements that SQLite runs in tens of microseconds, far less than a thread hop and the
GIL hand-off it causes, so it runs right on the event loop with a zero busy timeout. If another writer holds the
database lock at that moment, the batch goes to a thread that waits for it instead, so the loop never blocks on
a lock. Checkpoints of the write-ahead log run in a thread too, never inside a commit on the loop, and keep the
log bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from tollway.domain.holds import MoneyCommand
from tollway.settings import Settings
from tollway.storage.driver_sql import DriverSQL
from tollway.storage.money_batch import Result, RowCache, apply_batch

CHECKPOINT_EVERY_S = 1.0
WAL_TRUNCATE_BYTES = 64 * 1024 * 1024


def _connect(path: str, busy_timeout_ms: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # see the module docstring
    return conn


def _run(
    conn: sqlite3.Connection,
    commands: list[MoneyCommand],
    now: datetime,
    sql: DriverSQL,
    cache: RowCache | None = None,
) -> list[Result]:
    """One transaction; any failure (a busy COMMIT included) rolls back, so the connection is never left inside
    a transaction. With ``cache``: read under the write lock, ``data_version`` tells whether any other connection
    committed since this one last did; if so the cached rows are dropped."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if cache is not None:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if version != cache.version:
                cache.clear()
                cache.version = version
        results = apply_batch(conn, commands, now, sql, cache)
        conn.execute("COMMIT")
    except BaseException:
        if cache is not None:
            cache.clear()
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if cache is not None:
        cache.committed()
    return results


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


class SqliteMoneyConnection:
    def __init__(self, settings: Settings) -> None:
        path = settings.database_url.removeprefix("sqlite:///")
        self._path = path
        self._inline = _connect(path, 0)
        self._cache = RowCache()  # rows as the inline connection last committed them
        self._waiting = _connect(path, 30_000)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="money-sqlite")
        self._checkpoint_task: asyncio.Task[None] | None = None

    async def apply(self, commands: list[MoneyCommand], now: datetime, sql: DriverSQL) -> list[Result]:
        if self._checkpoint_task is None:
            self._checkpoint_task = asyncio.create_task(self._checkpoints())
        try:
            return _run(self._inline, commands, now, sql, self._cache)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        # Another writer holds the lock: wait for it off the loop (nothing of the attempt was kept; the cache,
        # cleared by the failure, refills once the inline connection commits again).
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, _run, self._waiting, commands, now, sql)

    async def _checkpoints(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            with contextlib.suppress(sqlite3.Error):
                await loop.run_in_executor(self._thread, self._checkpoint)

    def _checkpoint(self) -> None:
        """PASSIVE never stalls writers but cannot restart a log that grows under constant writes; once the log
        passes ``WAL_TRUNCATE_BYTES`` a TRUNCATE checkpoint resets it (a short stall, rare)."""
        try:
            size = os.path.getsize(self._path + "-wal")
        except OSError:
            return
        mode = "TRUNCATE" if size > WAL_TRUNCATE_BYTES else "PASSIVE"
        self._waiting.execute(f"PRAGMA wal_checkpoint({mode})")

    def close(self) -> None:
        if self._checkpoint_task is not None:
            self._checkpoint_task.cancel()
        self._thread.shutdown(wait=True)
        self._inline.close()
        self._waiting.close()
