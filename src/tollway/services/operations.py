"""Operations use cases (SPEC §9.6, §13.4): the readiness checks of ``/readyz``, the store-wide gauges ``/metrics``
refreshes at scrape time, and the reconciliation report. Built once by ``app.py`` over the operations ports."""

from __future__ import annotations

import asyncio
import logging

from tollway.domain.ports.operations import DatabaseProbe, LimiterProbe, MoneyAudit
from tollway.domain.reconciliation import ReconcileReport
from tollway.errors import ServiceUnavailable
from tollway.observability.metrics import Metrics

log = logging.getLogger("tollway.health")

STORE_GAUGES_TIMEOUT_S = 2.0


class Operations:
    def __init__(self, database: DatabaseProbe, limiter: LimiterProbe, audit: MoneyAudit, metrics: Metrics) -> None:
        self._database = database
        self._limiter = limiter
        self._audit = audit
        self._metrics = metrics

    async def readiness(self) -> dict[str, str]:
        """The checks of a ready instance; raises ``ServiceUnavailable`` when the database is unreachable or a
        migration is pending. Draining is the HTTP layer's own check, made before this one."""
        try:
            await self._database.ping()
            at_head = await self._database.migrations_at_head()
        except Exception as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
        if not at_head:
            raise ServiceUnavailable("Database migrations are pending.")
        return {"database": "ok", "redis": await self._limiter.backend_status()}

    async def refresh_store_gauges(self) -> None:
        """Read the store-wide totals into the metrics; when the database is down, the scrape goes on without them."""
        store = self._metrics.store
        try:
            async with asyncio.timeout(STORE_GAUGES_TIMEOUT_S):
                totals = await self._audit.store_totals()
        except Exception:
            log.warning("could not read holds and uncollected totals for /metrics", exc_info=True)
            store.holds_active = store.uncollected_nanos = None
            return
        store.holds_active, store.uncollected_nanos = totals.holds_active, totals.uncollected_nanos

    async def reconcile(self) -> ReconcileReport:
        """SPEC §9.6 invariants 1, 2 and 6 over one snapshot of the store."""
        try:
            return await self._audit.reconcile()
        except OSError as exc:
            raise ServiceUnavailable("The database is unreachable.") from exc
