"""Gathered refresh-ahead for caches with many keys in use (API keys, end users' limits; issue 18): reloads that come
due within ``gather_s`` share one query, and keys read within ``keep_fresh_s`` are queued again for when their new
entries reach the refresh point, so whatever is in use stays fresh with one query per tick, requests or not.

The cache that owns the entries decides when a key is due (``queue``) and stores what a reload found (``store``);
this class gathers, loads, keeps in use, and lets a request that cannot wait share a reload (``waiter``). Why it
exists: docs/performance.md, "Why SQLite's throughput fell with 50 end users, and what changed"."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Container, Hashable, Mapping
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
D = TypeVar("D")  # what a due key carries to the load (the key cache: operator-shaped or not; limits: the platform)
V = TypeVar("V")  # what the load found for a key


class _Batch(Generic[K, D, V]):
    """The keys of one gathered query, and the futures of requests that wait for it."""

    __slots__ = ("due", "waiters")

    def __init__(self) -> None:
        self.due: dict[K, D] = {}
        self.waiters: dict[K, asyncio.Future[V]] = {}


class GatheredRefresh(Generic[K, D, V]):
    """``load(due, started)`` answers every due key in one query begun at ``started``; ``store(key, value,
    started)`` writes a key's new entry back (only when nothing was invalidated since the load began) and says
    whether the key is still there to keep fresh; ``held(key)`` says at the refresh point whether its owner still
    has an entry that nothing else is loading. A failed load is logged; the keys are not kept, so the next read past
    the refresh point queues them again and a read past the entry's life loads in the foreground and reports it."""

    def __init__(
        self,
        load: Callable[[Mapping[K, D], float], Awaitable[Mapping[K, V]]],
        store: Callable[[K, V, float], bool],
        held: Callable[[K], bool],
        *,
        refresh_after_s: float,
        gather_s: float,
        keep_fresh_s: float,
        log: logging.Logger,
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._store = store
        self._held = held
        self._gather_s = gather_s
        self._keep_after_s = max(0.0, refresh_after_s - gather_s)  # queued this early, due at the refresh point
        self._keep_fresh_s = keep_fresh_s
        self._log = log
        self._what = what
        self._clock = clock
        self._gathering: _Batch[K, D, V] | None = None
        self._gather_timer: asyncio.TimerHandle | None = None
        self._pending: dict[K, _Batch[K, D, V]] = {}  # key -> the batch that reloads it (gathering or in flight)
        # For the owner's reads, which check and write these themselves, a dict operation each (no call per read):
        # ``pending``: the keys due or being reloaded (``queue`` would do nothing for them); ``used``: when a request
        # last read each key's entry (a key read within ``keep_fresh_s`` of a reload's start is kept fresh). Both
        # stay the same objects for the owner's life.
        self.pending: Container[K] = self._pending
        self.used: dict[K, float] = {}
        self._kept: dict[K, D] = {}  # queued again when ``_keep_timer`` fires
        self._keep_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._generation = 0  # bumped by invalidate(): a load begun before it must not write back
        self._closed = False

    def queue(self, key: K, data: D) -> None:
        """Reload ``key`` in the next gathered query, unless it is due or being reloaded already."""
        if key in self._pending:
            return
        batch = self._gathering
        if batch is None:
            if self._closed:
                return
            batch = self._gathering = _Batch()
            self._gather_timer = asyncio.get_running_loop().call_later(self._gather_s, self._start)
        batch.due[key] = data
        self._pending[key] = batch

    def keep(self, key: K, data: D) -> None:
        """After a foreground load: queue ``key`` again at its refresh point; keys kept meanwhile share the query."""
        if self._keep_fresh_s <= 0 or self._closed:
            return
        self._kept[key] = data
        if self._keep_timer is None:
            self._keep_timer = asyncio.get_running_loop().call_later(self._keep_after_s, self._requeue)

    def waiter(self, key: K) -> asyncio.Future[V] | None:
        """A request needs ``key``'s new value now: the outcome of its reload (started at once if it is still
        gathering), or None when no reload of ``key`` is due or running."""
        batch = self._pending.get(key)
        if batch is None:
            return None
        if batch is self._gathering:
            self._start()  # a request waits for it: gather no longer
        future = batch.waiters.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            batch.waiters[key] = future
        return future

    def invalidate(self, key: K | None = None) -> None:
        """No load begun before now writes back; a later ``waiter`` for ``key`` (None: every key) does not share
        one of them. Requests already waiting still get what they began waiting for."""
        self._generation += 1
        gathering = self._gathering
        if key is None:
            for stale in [k for k, batch in self._pending.items() if batch is not gathering]:
                del self._pending[stale]
        elif key in self._pending and self._pending[key] is not gathering:
            del self._pending[key]

    @property
    def generation(self) -> int:
        """Bumped by every ``invalidate``: the owner's own foreground loads compare it before writing back."""
        return self._generation

    def sweep(self, now: float) -> None:
        """Forget the reads older than the keep window (the owner bounds its memory)."""
        for key in [k for k, t in self.used.items() if now - t >= self._keep_fresh_s]:
            del self.used[key]

    async def close(self) -> None:
        """At shutdown: no more timers, and the loads in flight are cancelled and awaited."""
        self._closed = True
        for timer in (self._gather_timer, self._keep_timer):
            if timer is not None:
                timer.cancel()
        self._gather_timer = self._keep_timer = None
        self._gathering = None
        self._pending.clear()
        self._kept.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self) -> None:
        if self._gather_timer is not None:
            self._gather_timer.cancel()
            self._gather_timer = None
        batch, self._gathering = self._gathering, None
        if batch is None:
            return
        task = asyncio.get_running_loop().create_task(self._reload(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _requeue(self) -> None:
        self._keep_timer = None
        kept, self._kept = self._kept, {}
        for key, data in kept.items():
            if self._held(key):
                self.queue(key, data)

    async def _reload(self, batch: _Batch[K, D, V]) -> None:
        started, generation = self._clock(), self._generation
        try:
            found = await self._load(batch.due, started)
            values = [(key, data, found[key]) for key, data in batch.due.items()]
        except Exception as error:  # the next read past the entry's life loads in the foreground and reports it
            if not self._closed:  # (a loader may turn a cancellation by ``close`` into an error of its own)
                self._log.warning("background %s failed", self._what, exc_info=True)
            self._finish(batch)
            _fail(batch.waiters, error)
            return
        except BaseException:  # cancelled (shutdown): so are its waiters
            self._finish(batch)
            _fail(batch.waiters, None)
            raise
        self._finish(batch)
        current = generation == self._generation
        for key, data, value in values:
            if current:
                used = started - self.used.get(key, float("-inf")) < self._keep_fresh_s
                if self._store(key, value, started) and used:
                    self.keep(key, data)
                else:
                    self.used.pop(key, None)
            waiting = batch.waiters.get(key)
            if waiting is not None and not waiting.done():
                waiting.set_result(value)

    def _finish(self, batch: _Batch[K, D, V]) -> None:
        """Its keys are no longer being reloaded: the next ``queue`` of one of them starts another reload."""
        for key in batch.due:
            if self._pending.get(key) is batch:
                del self._pending[key]


def _fail(waiters: Mapping[Any, asyncio.Future[Any]], error: Exception | None) -> None:
    """The waiters of a failed load get its error (None: it was cancelled, and so are they)."""
    for waiting in waiters.values():
        if waiting.done():
            continue
        if error is None:
            waiting.cancel()
        else:
            waiting.set_exception(error)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # every waiter may have gone; the error is theirs, not the loop's
