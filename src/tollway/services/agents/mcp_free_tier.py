"""The free tier's slots (SPEC §16.1) with a per-instance memory of a month that is used up, so that on a platform
whose tier is gone an MCP call no longer takes a write transaction just to learn that no slot is left.

Exactness is the store's (``McpFreeCalls``: a conditional UPDATE, exact across instances); this gate only skips asking
it. When a take finds no slot, the instance remembers "(platform, month) exhausted at limit L" for ``EXHAUSTED_TTL_S``
and answers "no slot" without the database until then. Never more free calls than the limit: a free call still needs
the store's slot. What it gives up: a slot given back (by a call that ended unbilled) on *another* instance may go
unused by this one until its memory expires, so a call here may be billed while a slot is free; the instance that
gave the slot back forgets its own memory at once and hands it to its next call, and a new month or a changed limit
is a different key, asked at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tollway.domain.ports.mcp import McpFreeCalls

EXHAUSTED_TTL_S = 10.0
_MAX_REMEMBERED = 10_000  # platforms whose tier is used up, per instance; forgotten all at once past this


class FreeTierGate:
    """Implements ``McpFreeCalls`` over the store."""

    def __init__(
        self, store: McpFreeCalls, *, ttl_s: float = EXHAUSTED_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._exhausted: dict[tuple[str, str], tuple[int, float]] = {}  # (platform, month) -> (limit, until)

    async def take(self, platform_id: str, month: str, limit: int) -> bool:
        key = (platform_id, month)
        known = self._exhausted.get(key)
        if known is not None and known[0] == limit and known[1] > self._clock():
            return False
        if await self._store.take(platform_id, month, limit):
            return True
        if len(self._exhausted) >= _MAX_REMEMBERED:
            self._exhausted.clear()
        self._exhausted[key] = (limit, self._clock() + self._ttl_s)
        return False

    async def give_back(self, platform_id: str, month: str) -> None:
        self._exhausted.pop((platform_id, month), None)
        await self._store.give_back(platform_id, month)
