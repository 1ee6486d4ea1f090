"""The failover between the shared rate-limit backend (Redis) and local shares (SPEC §10), exact across both
transitions:

- Going down: the local backend is also the ledger of this instance's own admissions (every admission Redis made
  here is ``record``ed in it), so from the first local decision each end user's local window already holds what
  this instance admitted in the current windows, and the instance admits at most its share minus that.
- Coming back: a probe that reaches Redis writes back, atomically per end user and at their original times, what
  Redis does not hold (the admissions made while it was away; everything in the current windows when it lost them),
  and only then leaves degraded mode. A write-back that fails keeps the instance degraded.
- Settling: for one window (60 s) after returning, an admission must also fit the local share (counted before Redis
  is asked, withdrawn when Redis refuses). Other instances may still hold admissions they have not written back;
  with the share as a second limit, no instance admits more in that minute than it could while degraded. A degraded
  instance probes every second with or without traffic, so every instance is back well within that minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Final

from tollway.domain.platform_settings import RateLimits
from tollway.domain.ports.ratelimit import AdmissionLedger, SharedBackend
from tollway.domain.ratelimit import WINDOW_MS, Decision, Reservation, TokenDemand, WriteBack, shared_limits
from tollway.observability.metrics import Metrics

log = logging.getLogger("tollway.ratelimit")

PROBE_INTERVAL_S: Final = 1.0
SETTLE_S: Final = WINDOW_MS / 1000
_WRITE_BACK_ROUNDS: Final = 8  # admissions wait while a write-back runs, so a second round is rarely needed
# End users per restore batch: a batch must come back within the shared backend's reply timeout (0.25 s for Redis),
# and a batch that fails is the only one sent again.
WRITE_BACK_BATCH: Final = 256


class FailoverBackend:
    """The shared backend while it answers; while it does not, each instance enforces ⌊limit ÷ instances⌋ (at least
    1) locally, charged with its own admissions of the current windows, and probes the shared one at most every
    second to write back and return to it (SPEC §10). ``degraded`` and ``local_decisions`` feed
    ``tollway_ratelimit_degraded`` and ``tollway_ratelimit_local_decisions_total``."""

    origin = "failover"

    def __init__(
        self,
        shared: SharedBackend,
        local: AdmissionLedger,
        instances: int,
        *,
        probe_interval_s: float = PROBE_INTERVAL_S,
        settle_s: float = SETTLE_S,
        probe_when_idle: bool = True,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._shared = shared
        self._local = local
        self._instances = max(1, instances)
        self._probe_interval_s = probe_interval_s
        self._settle_s = settle_s
        self._clock = clock
        self._last_probe = -math.inf
        self._probe: asyncio.Task[None] | None = None
        self._probe_when_idle = probe_when_idle  # tests turn it off to hold an instance degraded
        self._watch: asyncio.Task[None] | None = None
        self._lost = False  # the shared backend lost its windows: write back everything, not only local admissions
        self._settling = False  # admissions also fit the local share until ``_settled_at``
        self._settled_at = -math.inf
        # Set while a write-back is on its way: admissions wait for its outcome instead of adding local admissions
        # it would have to write back too (under steady traffic it would never catch up).
        self._returning: asyncio.Future[None] | None = None
        self.degraded = False
        self.local_decisions = 0

    async def admit(self, key: str, limits: RateLimits, demand: TokenDemand) -> Decision:
        if self._returning is not None:
            await asyncio.shield(self._returning)  # then back on the shared backend, or still degraded
        if not self.degraded:
            if self._settling:
                if self._clock() < self._settled_at:
                    return await self._admit_settling(key, limits, demand)
                self._settling = False
            try:
                decision = await self._shared.admit(key, limits, demand)
            except Exception as exc:  # RateLimitBackendDown, or anything else the client raises: never a 500
                self._degrade(exc)
            else:
                if decision.reservation is not None:
                    self._local.record(key, limits, decision.reservation.id, decision.reserved_tokens)
                return decision
        else:
            self._start_probe()
        return await self._admit_locally(key, limits, demand)

    async def _admit_locally(self, key: str, limits: RateLimits, demand: TokenDemand) -> Decision:
        self.local_decisions += 1
        if self._metrics is not None:
            self._metrics.ratelimit_local_decision()
        return await self._local.admit(key, shared_limits(limits, self._instances), demand)

    async def _admit_settling(self, key: str, limits: RateLimits, demand: TokenDemand) -> Decision:
        """The local share first (it counts at once, so concurrent admissions cannot both slip under it), then the
        shared backend with what the share admitted (its clamp included)."""
        local = await self._local.admit(key, shared_limits(limits, self._instances), demand)
        if local.reservation is None:
            return local
        clamp = local.clamped_output_limit
        if clamp is not None:
            demand = dataclasses.replace(demand, output_limit=clamp, min_output=min(demand.min_output, clamp))
        try:
            decision = await self._shared.admit(key, limits, demand)
        except Exception as exc:
            self._degrade(exc)
            self.local_decisions += 1
            if self._metrics is not None:
                self._metrics.ratelimit_local_decision()
            return local  # counted locally already, to be written back
        if decision.reservation is None:
            self._local.forget(local.reservation.id)
            return decision
        self._local.relabel(local.reservation.id, decision.reservation.id, decision.reserved_tokens)
        if decision.clamped_output_limit is None:
            decision.clamped_output_limit = clamp
        return decision

    def adjust(self, reservation: Reservation, tokens: int) -> None:
        """The local ledger holds every admission of this instance, so it is always corrected; the shared backend
        too when it holds (or may hold, once written back) the admission."""
        try:
            self._local.adjust(reservation, tokens)
            if reservation.origin != self._local.origin or not self.degraded:
                self._shared.adjust(reservation, tokens)
        except Exception:  # adjust never raises by contract; this is the belt to those braces
            log.warning("could not correct a TPM reservation", exc_info=True)

    async def probe(self) -> bool:
        """For readiness checks: probe now if degraded and the last probe is over a second old; True when shared."""
        if self.degraded:
            self._start_probe()
            if self._probe is not None:
                await asyncio.shield(self._probe)
        return not self.degraded

    async def drain(self) -> None:
        await self._local.drain()
        await self._shared.drain()

    async def close(self) -> None:
        for task in (self._probe, self._watch):
            if task is not None:
                task.cancel()
        await self._local.close()
        await self._shared.close()

    def _degrade(self, exc: Exception) -> None:
        if not self.degraded:
            log.warning("rate limits degraded to local shares: %s", exc)
            if self._metrics is not None:
                self._metrics.set_ratelimit_degraded(True)
        self.degraded = True
        self._last_probe = self._clock()
        if self._probe_when_idle and self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._probe_while_degraded())

    async def _probe_while_degraded(self) -> None:
        """Admissions and readiness checks start probes too; this one also returns an idle instance, whose local
        admissions would otherwise wait for its next request to be written back."""
        try:
            while self.degraded:
                await asyncio.sleep(self._probe_interval_s)
                self._start_probe()
        finally:
            self._watch = None

    def _start_probe(self) -> None:
        if self._probe is not None or self._clock() - self._last_probe < self._probe_interval_s:
            return
        self._last_probe = self._clock()
        self._probe = asyncio.get_running_loop().create_task(self._run_probe())

    async def _run_probe(self) -> None:
        try:
            if await self._shared.ping():
                self._lost = True
            self._returning = asyncio.get_running_loop().create_future()
            await self._write_back()
        except Exception as exc:
            log.debug("rate-limit backend still down: %s", exc)
        else:
            # No await since the write-back found nothing left: no local admission can have slipped in between.
            if self.degraded:
                log.warning("rate limits back on the shared backend")
                if self._metrics is not None:
                    self._metrics.set_ratelimit_degraded(False)
                self._settling, self._settled_at = True, self._clock() + self._settle_s
            self.degraded = False
        finally:
            returning, self._returning = self._returning, None
            if returning is not None:
                returning.set_result(None)
            self._probe = None

    async def _write_back(self) -> None:
        """Until the shared backend holds every admission of this instance in the current windows (everything, when
        it lost them): each round returns with nothing awaited after its check, or raises."""
        for _ in range(_WRITE_BACK_ROUNDS):
            write_back = self._local.unshared(self._lost)
            if not write_back.users:
                return
            users = write_back.users
            for start in range(0, len(users), WRITE_BACK_BATCH):
                batch = WriteBack(write_back.as_of_ms, users[start : start + WRITE_BACK_BATCH])
                await self._shared.restore(batch)
                self._local.mark_shared(batch)
            self._lost = False
        raise RuntimeError("local admissions kept coming during the write-back; trying again at the next probe")
