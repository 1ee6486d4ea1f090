"""The in-process rate-limit backend (SPEC §10): exact sliding windows per end user, the embedded default and the
local fallback of the Redis backend.

As that fallback it is also the instance's ledger of its own admissions: the failover ``record``s each admission
Redis made here, so the windows hold everything this instance admitted, each entry marked whether Redis holds it
(``shared``); while Redis is away the local share is charged with all of them, and ``unshared`` lists what to write
back before returning. A recorded admission costs what a local one does: one small object, a deque append, a dict
slot, all dropped when it leaves the window.

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
    OwnAdmissions,
    Reservation,
    TokenDemand,
    WriteBack,
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
    __slots__ = ("id", "shared", "stamp", "tokens", "window")

    def __init__(self, entry_id: str, stamp: int, tokens: int, window: _Window, shared: bool) -> None:
        self.id = entry_id
        self.stamp = stamp
        self.tokens = tokens
        self.window = window
        self.shared = shared  # the shared backend (Redis) holds it too


class _Window:
    """One end user's admissions in the last 60 s and its count for the current UTC day (``unshared_today``: how
    many of those the shared backend does not hold; ``keep_day``: whether the count outlives an empty window)."""

    __slots__ = ("day", "entries", "keep_day", "today", "tokens", "unshared_today")

    def __init__(self) -> None:
        self.entries: deque[_Entry] = deque()
        self.tokens = 0
        self.day = -1
        self.today = 0
        self.unshared_today = 0
        self.keep_day = True

    def roll(self, day: int) -> None:
        if self.day != day:
            self.day, self.today, self.unshared_today = day, 0, 0


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
        window = self._window(key, now)
        window.keep_day = True  # what this backend decides counts for the whole day, as the embedded mode always did
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
        entry = self._append(window, str(next(self._ids)), now, verdict.reserved_tokens, shared=False)
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

    # -- the failover's ledger (domain.ports.ratelimit.AdmissionLedger) -----------------------------------------

    def record(self, key: str, limits: RateLimits, entry_id: str, tokens: int) -> None:
        """Without an RPD limit the day count of a recorded end user is dropped with its last window entry, so the
        ledger holds only the last minute of end users who have none: memory follows traffic, not the day's users."""
        now = self._clock_ms()
        window = self._window(key, now)
        if not window.entries:
            window.keep_day = limits.rpd is not None
        elif limits.rpd is not None:
            window.keep_day = True
        self._append(window, entry_id, now, tokens, shared=True)

    def relabel(self, entry_id: str, shared_id: str, tokens: int) -> None:
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return
        window = entry.window
        window.tokens += tokens - entry.tokens
        if not entry.shared and window.day == day_of(entry.stamp):
            window.unshared_today -= 1
        entry.id, entry.tokens, entry.shared = shared_id, tokens, True
        self._entries[shared_id] = entry

    def forget(self, entry_id: str) -> None:
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return
        window = entry.window
        if window.entries and window.entries[-1] is entry:
            window.entries.pop()  # the usual case: the admission just made
        else:
            window.entries.remove(entry)
        window.tokens -= entry.tokens
        if window.day == day_of(entry.stamp):
            window.today -= 1
            if not entry.shared:
                window.unshared_today -= 1

    def unshared(self, everything: bool) -> WriteBack:
        now = self._clock_ms()
        day = day_of(now)
        users: list[OwnAdmissions] = []
        for key, window in self._windows.items():
            self._trim(window, now)
            entries = tuple((e.id, e.stamp, e.tokens) for e in window.entries if everything or not e.shared)
            local = window.unshared_today if window.day == day else 0
            requests = (window.today if window.day == day else 0) if everything else local
            if entries or requests:
                users.append(OwnAdmissions(key, entries, day, requests, local))
        return WriteBack(now, tuple(users))

    def mark_shared(self, write_back: WriteBack) -> None:
        for user in write_back.users:
            for entry_id, _, _ in user.entries:
                entry = self._entries.get(entry_id)
                if entry is not None:
                    entry.shared = True
            window = self._windows.get(user.key)
            if window is not None and window.day == user.day:
                window.unshared_today = max(0, window.unshared_today - user.local_requests)

    async def drain(self) -> None:
        """Corrections apply at once here."""

    async def close(self) -> None:
        self._windows.clear()
        self._entries.clear()

    # -- internals ----------------------------------------------------------------------------------------------

    def _window(self, key: str, now: int) -> _Window:
        if now >= self._next_sweep:
            self._sweep(now)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        self._trim(window, now)
        window.roll(day_of(now))
        return window

    def _append(self, window: _Window, entry_id: str, now: int, tokens: int, *, shared: bool) -> _Entry:
        entry = _Entry(entry_id, now, tokens, window, shared)
        window.entries.append(entry)
        window.tokens += tokens
        window.today += 1
        if not shared:
            window.unshared_today += 1
        self._entries[entry_id] = entry
        return entry

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
            if not window.entries and (window.day != day or window.today == 0 or not window.keep_day):
                del self._windows[key]
