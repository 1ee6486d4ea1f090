"""Refresh-ahead for the short caches of the hot path (keys, candidate lists): an entry is served for at most
``max_age_s`` (the ≤ 1 s propagation guarantee of SPEC §2.2 and §13.3), and once it is older than
``refresh_after_s`` the next read starts one background reload while it keeps serving the current value. Under
steady traffic no request waits for the database, which keeps those reloads out of the tail latency."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("tollway.cache")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class RefreshAhead(Generic[K, V]):
    def __init__(
        self,
        load: Callable[[K], Awaitable[V]],
        *,
        max_age_s: float,
        refresh_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._max_age_s = max_age_s
        self._refresh_after_s = refresh_after_s
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._reloading: dict[K, asyncio.Task[None]] = {}
        self._generation = 0  # bumped by invalidate(): a reload begun before it must not write back

    def invalidate(self) -> None:
        self._entries.clear()
        self._generation += 1

    async def get(self, key: K) -> V:
        now = self._clock()
        hit = self._entries.get(key)
        if hit is not None:
            age = now - hit[0]
            if age < self._max_age_s:
                if age >= self._refresh_after_s and key not in self._reloading:
                    self._reloading[key] = asyncio.get_running_loop().create_task(self._reload(key))
                return hit[1]
        value = await self._load(key)
        self._entries[key] = (now, value)
        return value

    async def _reload(self, key: K) -> None:
        generation, started = self._generation, self._clock()
        try:
            value = await self._load(key)
        except Exception:  # the next read past max_age loads in the foreground and reports the failure
            log.warning("background cache reload failed", exc_info=True)
        else:
            if generation == self._generation:
                self._entries[key] = (started, value)
        finally:
            self._reloading.pop(key, None)
