"""Rate limiting as the pipeline uses it (SPEC §8 step 5, §10): resolve an end user's limits (cached ≤ 1 s), admit
through a backend (in-process, or Redis with local shares while it is unreachable), and raise 429 with Retry-After
and the ``x-ratelimit-*`` headers.

    RateLimiter ── RateLimitBackend ─┬─ InProcessRateLimitBackend          (embedded mode)
                                     └─ FailoverBackend ─┬─ RedisRateLimitBackend (shared, exact)
                                        (ratelimit_failover) └─ InProcessRateLimitBackend (⌊limit ÷ instances⌋,
                                                                 and the ledger of this instance's admissions)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from tollway.domain.ports.ratelimit import LimitSource, RateLimitBackend
from tollway.domain.ratelimit import (
    Decision,
    Dimension,
    EffectiveLimits,
    TokenDemand,
    rate_limit_headers,
    refusal_message,
    resolve_limits,
    retry_after_s,
)
from tollway.errors import RateLimited
from tollway.observability.metrics import Metrics
from tollway.services.ratelimit_failover import FailoverBackend

__all__ = ["CACHE_TTL_S", "UNLIMITED", "Admission", "FailoverBackend", "LimitCache", "RateLimiter"]

log = logging.getLogger("tollway.ratelimit")

CACHE_TTL_S: Final = 0.9  # < 1 s: an override or default change reaches every instance within 1 s of its commit
_CACHE_SWEEP_SIZE: Final = 4096
# Background reloads are gathered for this long and made in one query: with many end users in use, a query per end
# user and reload (two a second each) cost a large part of a busy instance's CPU on SQLite (issue 18).
RELOAD_GATHER_S: Final = 0.05
# An end user seen within this long is kept fresh by the gathered reloads themselves, request or not (as
# services/auth.py does for keys): with traffic spread over many end users and instances, requests for one end user
# come further apart than its entry lives, and each would otherwise wait for its own load.
KEEP_FRESH_S: Final = 10.0


# -- limits of an end user --------------------------------------------------------------------------------------


class LimitCache:
    """Effective limits per end user for at most ``ttl_s`` after the read began; concurrent misses share one
    query. Past half its life an entry is reloaded in the background while it is still served (as
    services/freshness.py does), so steady traffic never waits for the database; those reloads are gathered for
    ``gather_s`` and made in one query, so many end users cost a few queries a second, not two each.
    ``invalidate`` applies this instance's own writes at once."""

    def __init__(
        self,
        source: LimitSource,
        *,
        ttl_s: float = CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        gather_s: float = RELOAD_GATHER_S,
        keep_fresh_s: float = KEEP_FRESH_S,
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._gather_s = gather_s
        self._keep_fresh_s = keep_fresh_s
        self._used: dict[str, float] = {}  # end user -> when a request last read its limits
        self._kept: dict[str, str] = {}  # end user -> platform, queued again when ``_keep_timer`` fires
        self._keep_timer: asyncio.TimerHandle | None = None
        self._clock = clock
        self._entries: dict[str, tuple[float, EffectiveLimits]] = {}
        self._loading: dict[str, asyncio.Future[EffectiveLimits]] = {}
        self._due: dict[str, tuple[str, asyncio.Future[EffectiveLimits]]] = {}  # end user -> (platform, its load)
        self._reload_timer: asyncio.TimerHandle | None = None
        self._reloads: set[asyncio.Task[None]] = set()
        self._generation = 0

    async def get(self, platform_id: str, end_user_id: str) -> EffectiveLimits:
        now = self._clock()
        self._used[end_user_id] = now
        cached = self._entries.get(end_user_id)
        if cached is not None:
            remaining = cached[0] - now
            if remaining > 0:
                if remaining <= self._ttl_s / 2 and end_user_id not in self._loading:
                    self._queue_reload(platform_id, end_user_id)
                return cached[1]
        if end_user_id in self._due:
            self._start_reload()  # a request waits for it now: gather no longer
        future = self._loading.get(end_user_id) or self._start_load(platform_id, end_user_id)
        return await asyncio.shield(future)

    def _start_load(self, platform_id: str, end_user_id: str) -> asyncio.Future[EffectiveLimits]:
        task = asyncio.get_running_loop().create_task(self._load(platform_id, end_user_id))
        task.add_done_callback(_retrieve)
        self._loading[end_user_id] = task
        return task

    async def _load(self, platform_id: str, end_user_id: str) -> EffectiveLimits:
        started, generation = self._clock(), self._generation
        try:
            override, defaults = await self._source.limits_of(platform_id, end_user_id)
        finally:
            if self._loading.get(end_user_id) is asyncio.current_task():
                del self._loading[end_user_id]
        effective = resolve_limits(override, defaults)
        if generation == self._generation:
            self._store(end_user_id, started, effective)
            if self._keep_fresh_s > 0:  # kept fresh from now on while in use, even if requests come seconds apart
                self._keep({end_user_id: platform_id})
        return effective

    def _queue_reload(self, platform_id: str, end_user_id: str) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[EffectiveLimits] = loop.create_future()
        future.add_done_callback(_retrieve)
        self._loading[end_user_id] = future
        self._due[end_user_id] = (platform_id, future)
        if self._reload_timer is None:
            self._reload_timer = loop.call_later(self._gather_s, self._start_reload)

    def _start_reload(self) -> None:
        if self._reload_timer is not None:
            self._reload_timer.cancel()
            self._reload_timer = None
        due, self._due = self._due, {}
        task = asyncio.get_running_loop().create_task(self._reload(due))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self, due: dict[str, tuple[str, asyncio.Future[EffectiveLimits]]]) -> None:
        started, generation = self._clock(), self._generation
        try:
            found = await self._source.limits_of_many([(platform_id, user) for user, (platform_id, _f) in due.items()])
        except Exception as error:  # a request waiting for one of them gets the error (503), as from ``_load``
            for end_user_id, (_platform_id, future) in due.items():
                self._settle(end_user_id, future, error)
            return
        keep: dict[str, str] = {}
        for end_user_id, (platform_id, future) in due.items():
            effective = resolve_limits(*found[end_user_id])
            if generation == self._generation:
                self._store(end_user_id, started, effective)
            self._settle(end_user_id, future, effective)
            if started - self._used.get(end_user_id, float("-inf")) < self._keep_fresh_s:
                keep[end_user_id] = platform_id
            else:
                self._used.pop(end_user_id, None)
        if keep:
            self._keep(keep)

    def _keep(self, end_users: dict[str, str]) -> None:
        """Queue these end users (id -> platform) again once their entries near half their life; end users kept
        meanwhile join the same reload."""
        self._kept.update(end_users)
        if self._keep_timer is None:
            delay = max(0.0, self._ttl_s / 2 - self._gather_s)
            self._keep_timer = asyncio.get_running_loop().call_later(delay, self._requeue)

    def _requeue(self) -> None:
        self._keep_timer = None
        kept, self._kept = self._kept, {}
        for end_user_id, platform_id in kept.items():
            if end_user_id in self._entries and end_user_id not in self._loading:
                self._queue_reload(platform_id, end_user_id)

    def _settle(
        self, end_user_id: str, future: asyncio.Future[EffectiveLimits], outcome: EffectiveLimits | Exception
    ) -> None:
        if self._loading.get(end_user_id) is future:
            del self._loading[end_user_id]
        if future.done():
            return
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _store(self, end_user_id: str, started: float, effective: EffectiveLimits) -> None:
        if len(self._entries) >= _CACHE_SWEEP_SIZE:
            now = self._clock()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            self._used = {k: v for k, v in self._used.items() if now - v < self._keep_fresh_s}
        self._entries[end_user_id] = (started + self._ttl_s, effective)

    def invalidate(self, end_user_id: str | None = None) -> None:
        self._generation += 1
        if end_user_id is None:
            self._entries.clear()
            self._loading.clear()
        else:
            self._entries.pop(end_user_id, None)
            self._loading.pop(end_user_id, None)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # every waiter may have gone; the error is theirs, not the loop's


# -- admission --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admission:
    """Step 5's outcome for one request. ``decision`` is None when no limit applies (platform keys, end users
    without limits): then there are no headers and nothing to correct."""

    decision: Decision | None = None

    @property
    def clamped_output_limit(self) -> int | None:
        """Set when TPM admitted only a lower output limit per choice: send at most this upstream (§9.3)."""
        return None if self.decision is None else self.decision.clamped_output_limit

    @property
    def reserved_tokens(self) -> int:
        return 0 if self.decision is None else self.decision.reserved_tokens

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.decision is None else rate_limit_headers(self.decision)


UNLIMITED: Final = Admission()


class RateLimiter:
    def __init__(self, backend: RateLimitBackend, limits: LimitCache, metrics: Metrics | None = None) -> None:
        self._backend = backend
        self._limits = limits
        self._metrics = metrics
        self.rejections: dict[str, int] = {d.value: 0 for d in Dimension}  # tollway_ratelimit_rejections_total

    @property
    def degraded(self) -> bool:
        return isinstance(self._backend, FailoverBackend) and self._backend.degraded

    @property
    def local_decisions(self) -> int:
        return self._backend.local_decisions if isinstance(self._backend, FailoverBackend) else 0

    async def backend_status(self) -> str:
        """For ``/readyz``: ``disabled`` without Redis, else ``ok`` or ``degraded`` (probing at most once a second)."""
        if not isinstance(self._backend, FailoverBackend):
            return "disabled"
        return "ok" if await self._backend.probe() else "degraded"

    async def effective_limits(self, platform_id: str, end_user_id: str) -> EffectiveLimits:
        return await self._limits.get(platform_id, end_user_id)  # ServiceUnavailable without the database

    async def admit(self, platform_id: str, end_user_id: str | None, demand: TokenDemand) -> Admission:
        """Step 5: RPM, then RPD, then TPM, all or nothing. Raises ``RateLimited`` (429, Retry-After, headers)."""
        if end_user_id is None:
            return UNLIMITED  # platform keys are not limited (§10)
        effective = await self.effective_limits(platform_id, end_user_id)
        if not effective.limits.any_set:
            return UNLIMITED
        decision = await self._backend.admit(end_user_id, effective.limits, demand)
        if decision.refused:
            self.rejections[decision.refused[0].value] += 1
            if self._metrics is not None:
                self._metrics.ratelimit_rejection(decision.refused[0].value)
            raise RateLimited(
                refusal_message(decision, demand),
                retry_after_s(decision.retry_after_ms),
                headers=rate_limit_headers(decision),
            )
        return Admission(decision)

    def adjust(self, admission: Admission, actual_tokens: int) -> None:
        """After settlement: the TPM window counts the call's actual total tokens instead of the estimate."""
        decision = admission.decision
        if decision is not None and decision.reservation is not None:
            self._backend.adjust(decision.reservation, max(0, actual_tokens))

    def refund(self, admission: Admission) -> None:
        """A failure in steps 6-9 returns the TPM reservation; the RPM and RPD counts stay (§8)."""
        self.adjust(admission, 0)

    def invalidate(self, end_user_id: str | None = None) -> None:
        self._limits.invalidate(end_user_id)

    async def drain(self) -> None:
        await self._backend.drain()

    async def close(self) -> None:
        await self._backend.close()
