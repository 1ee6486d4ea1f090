"""The in-process rate-limit backend (SPEC §10): exact sliding windows per end user, the embedded default and the
local fallback of the Redis backend.

Each end user has a deque of its admissions in the last 60 s (timestamp, tokens) and a running token sum; an
admission trims expired entries from the left, decides with ``domain.ratelimit.decide`` and appends. Every entry is
appended and popped once, so an admission is O(1) amortised. ``admit`` never awaits: on one event loop it is atomic
without a lock.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterator

from tollway.domain.platform_settings import RateLimits
from tollway.domain.ratelimit import (
    WINDOW_MS,
    Decision,
    Dimension,
    Reservation,
    TokenDemand,
    day_of,
    decide,
    ms_until_midnight,
    requests_wait_ms,
    tokens_wait_ms,
)

ORIGIN = "memory"
_SWEEP_EVERY_MS = WINDOW_MS


def wall_clock_ms() -> int:
    """UTC milliseconds since the epoch: RPD resets at midnight UTC, so the windows run on wall time."""
    return time.time_ns() // 1_000_000


class _Entry:
    __slots__ = ("id", "stamp", "tokens", "window")

    def __init__(self, entry_id: str, stamp: int, tokens: int, window: _Window) -> None:
        self.id = entry_id
        self.stamp = stamp
        self.tokens = tokens
        self.window = window


class _Window:
    """One end user's admissions in the last 60 s and its count for the current UTC day."""

    __slots__ = ("day", "entries", "today", "tokens")

    def __init__(self) -> None:
        self.entries: deque[_Entry] = deque()
        self.tokens = 0
        self.day = -1
        self.today = 0


class InProcessRateLimitBackend:
    origin = ORIGIN

    def __init__(self, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self._clock_ms = clock_ms
        self._windows: dict[str, _Window] = {}
        self._entries: dict[str, _Entry] = {}  # reservation id -> live entry, for adjust()
        self._ids = itertools.count(1)
        self._next_sweep = 0

    def _trim(self, window: _Window, now: int) -> None:
        cutoff = now - WINDOW_MS
        entries = window.entries
        while entries and entries[0].stamp <= cutoff:
            gone = entries.popleft()
            window.tokens -= gone.tokens
            del self._entries[gone.id]

    async def admit(self, key: str, limits: RateLimits, demand: TokenDemand) -> Decision:
        now = self._clock_ms()
        if now >= self._next_sweep:
            self._sweep(now)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        self._trim(window, now)
        day = day_of(now)
        if window.day != day:
            window.day, window.today = day, 0
        verdict = decide(limits, demand, len(window.entries), window.today, window.tokens)
        if verdict.refused:
            return Decision(
                limits,
                verdict.refused,
                self._wait_ms(window, limits, demand, verdict.refused, now),
                len(window.entries),
                window.today,
                window.tokens,
                *self._resets(window, now),
            )
        entry = _Entry(str(next(self._ids)), now, verdict.reserved_tokens, window)
        window.entries.append(entry)
        window.tokens += entry.tokens
        window.today += 1
        self._entries[entry.id] = entry
        return Decision(
            limits,
            (),
            0,
            len(window.entries),
            window.today,
            window.tokens,
            *self._resets(window, now),
            reserved_tokens=entry.tokens,
            clamped_output_limit=verdict.clamped_output_limit,
            reservation=Reservation(key, entry.id, ORIGIN),
        )

    def adjust(self, reservation: Reservation, tokens: int) -> None:
        """Correct an admission's tokens (the actual total, or 0 for a refund); a no-op once it left the window."""
        entry = self._entries.get(reservation.id)
        if entry is not None:
            entry.window.tokens += tokens - entry.tokens
            entry.tokens = tokens

    async def drain(self) -> None:
        """Corrections apply at once here."""

    async def close(self) -> None:
        self._windows.clear()
        self._entries.clear()

    # -- internals ----------------------------------------------------------------------------------------------

    @staticmethod
    def _resets(window: _Window, now: int) -> tuple[int, int, int]:
        last = window.entries[-1].stamp + WINDOW_MS - now if window.entries else 0
        return last, last if window.tokens > 0 else 0, ms_until_midnight(now)

    @staticmethod
    def _wait_ms(
        window: _Window, limits: RateLimits, demand: TokenDemand, refused: tuple[Dimension, ...], now: int
    ) -> int:
        """Until every refusing dimension would admit the request (the windows only drain while we wait)."""
        wait = 0
        if Dimension.RPM in refused and limits.rpm is not None:
            entries_at = window.entries
            wait = max(wait, requests_wait_ms(len(entries_at), limits.rpm, lambda i: entries_at[i].stamp, now))
        if Dimension.RPD in refused:
            wait = max(wait, ms_until_midnight(now))
        if Dimension.TPM in refused and limits.tpm is not None:
            entries: Iterator[tuple[int, int]] = ((e.stamp, e.tokens) for e in window.entries)
            wait = max(wait, tokens_wait_ms(entries, window.tokens, limits.tpm, demand.minimum, now))
        return wait

    def _sweep(self, now: int) -> None:
        """Forget end users with an empty window whose day count is over (at most once a minute)."""
        self._next_sweep = now + _SWEEP_EVERY_MS
        day = day_of(now)
        for key in list(self._windows):
            window = self._windows[key]
            self._trim(window, now)
            if not window.entries and (window.day != day or window.today == 0):
                del self._windows[key]
