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
from collections.abc import Callable, Mapping
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
from tollway.services.gathered_refresh import GatheredRefresh
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
        self._clock = clock
        self._entries: dict[str, tuple[float, EffectiveLimits]] = {}  # end user -> (expiry, limits)
        self._loading: dict[str, asyncio.Future[EffectiveLimits]] = {}  # foreground loads, shared by their readers
        # An end user due for a reload carries its platform.
        self._reloads: GatheredRefresh[str, str, EffectiveLimits] = GatheredRefresh(
            self._reload,
            self._reloaded,
            lambda end_user_id: end_user_id in self._entries and end_user_id not in self._loading,
            refresh_after_s=ttl_s / 2,
            gather_s=gather_s,
            keep_fresh_s=keep_fresh_s,
            log=log,
            what="rate-limit reload",
            clock=clock,
        )
        self._reloading, self._used = self._reloads.pending, self._reloads.used  # read on every request

    async def get(self, platform_id: str, end_user_id: str) -> EffectiveLimits:
        now = self._clock()
        self._used[end_user_id] = now
        cached = self._entries.get(end_user_id)
        if cached is not None:
            remaining = cached[0] - now
            if remaining > 0:
                if (
                    remaining <= self._ttl_s / 2
                    and end_user_id not in self._loading
                    and end_user_id not in self._reloading
                ):
                    self._reloads.queue(end_user_id, platform_id)
                return cached[1]
        future = (
            self._loading.get(end_user_id)
            or self._reloads.waiter(end_user_id)  # its reload, started now if it is still gathering
            or self._start_load(platform_id, end_user_id)
        )
        return await asyncio.shield(future)

    def _start_load(self, platform_id: str, end_user_id: str) -> asyncio.Future[EffectiveLimits]:
        task = asyncio.get_running_loop().create_task(self._load(platform_id, end_user_id))
        task.add_done_callback(_retrieve)
        self._loading[end_user_id] = task
        return task

    async def _load(self, platform_id: str, end_user_id: str) -> EffectiveLimits:
        started, generation = self._clock(), self._reloads.generation
        try:
            override, defaults = await self._source.limits_of(platform_id, end_user_id)
        finally:
            if self._loading.get(end_user_id) is asyncio.current_task():
                del self._loading[end_user_id]
        effective = resolve_limits(override, defaults)
        if generation == self._reloads.generation:  # nothing invalidated since the load began
            self._store(end_user_id, started, effective)
            self._reloads.keep(end_user_id, platform_id)  # kept fresh from now on while in use
        return effective

    async def _reload(self, due: Mapping[str, str], started: float) -> dict[str, EffectiveLimits]:
        found = await self._source.limits_of_many([(platform_id, user) for user, platform_id in due.items()])
        return {end_user_id: resolve_limits(*found[end_user_id]) for end_user_id in due}

    def _reloaded(self, end_user_id: str, effective: EffectiveLimits, started: float) -> bool:
        self._store(end_user_id, started, effective)
        return True

    def _store(self, end_user_id: str, started: float, effective: EffectiveLimits) -> None:
        if len(self._entries) >= _CACHE_SWEEP_SIZE:
            now = self._clock()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            self._reloads.sweep(now)
        self._entries[end_user_id] = (started + self._ttl_s, effective)

    def invalidate(self, end_user_id: str | None = None) -> None:
        self._reloads.invalidate(end_user_id)
        if end_user_id is None:
            self._entries.clear()
            self._loading.clear()
        else:
            self._entries.pop(end_user_id, None)
            self._loading.pop(end_user_id, None)

    async def close(self) -> None:
        """At shutdown: no background reload left running."""
        await self._reloads.close()


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
        await self._limits.close()
        await self._backend.close()
