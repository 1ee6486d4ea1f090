"""The hold sweeper (SPEC §9.4, §13.3): every 30 s, on every instance, expired active holds are settled from
their streaming checkpoint or released. Each hold is handled once: the money writer re-checks its status under
the row lock, so two instances racing for one hold resolve it once."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from tollway.domain.clock import utcnow
from tollway.domain.holds import Expire
from tollway.domain.ports.money import MoneyLedger
from tollway.domain.ports.operations import ExpiredHolds
from tollway.observability.metrics import Metrics

log = logging.getLogger("tollway.sweeper")

INTERVAL_S = 30.0
_BATCH = 500


class HoldSweeper:
    def __init__(
        self, expired: ExpiredHolds, ledger: MoneyLedger, interval_s: float = INTERVAL_S, metrics: Metrics | None = None
    ) -> None:
        self._metrics = metrics
        self._expired = expired
        self._ledger = ledger
        self._interval_s = interval_s

    async def sweep_once(self, now: datetime | None = None) -> int:
        """Resolve every active hold expired at ``now``; returns how many this call resolved."""
        moment = now or utcnow()
        resolved = 0
        while True:
            ids = await self._expired.expired(moment, _BATCH)
            if not ids:
                return resolved
            results = await asyncio.gather(*(self._ledger.submit(Expire(hold_id)) for hold_id in ids))
            done = sum(1 for result in results if result)
            resolved += done
            if self._metrics is not None:
                self._metrics.holds_expired_resolved(done)  # tollway_holds_expired_total
            if done == 0:  # another instance holds them; it will finish
                return resolved

    async def run(self) -> None:
        while True:
            try:
                count = await self.sweep_once()
                if count:
                    log.warning("hold sweeper resolved %d expired holds", count)
            except Exception:
                log.exception("hold sweep failed; retrying at the next interval")
            await asyncio.sleep(self._interval_s)
